//! A fake BlueZ for the Bluetooth end-to-end tests: a private `dbus-daemon` and python-dbusmock
//! running `tests/support/fake_bluez.py`. The real jkmon binary runs against it with
//! `DBUS_SYSTEM_BUS_ADDRESS` pointing there (libdbus reads that variable once per process, so
//! every test gets its own bus and its own jkmon process).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BUS_CONF: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#;

/// What the fake needs: dbus-daemon, gdbus, and python-dbusmock in Debian's python.
fn missing_programs() -> Vec<&'static str> {
    let mut missing = Vec::new();
    for (program, args) in [
        ("dbus-daemon", vec!["--version"]),
        ("gdbus", vec!["help"]),
        ("/usr/bin/python3", vec!["-c", "import dbusmock"]),
    ] {
        let ok = Command::new(program)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            missing.push(if program == "/usr/bin/python3" {
                "python3-dbusmock"
            } else {
                program
            });
        }
    }
    missing
}

pub struct FakeBluez {
    dir: tempfile::TempDir,
    daemon: Child,
    mock: Child,
    pub bus: String,
}

impl FakeBluez {
    /// Starts a bus and the fake with `params` (see `fake_bluez.py`). `None` when the programs
    /// are missing on a developer's machine (said loudly); in CI that is a failure.
    pub fn start(mut params: Value) -> Option<FakeBluez> {
        let missing = missing_programs();
        if !missing.is_empty() {
            let msg = format!(
                "SKIPPED: the fake BlueZ needs {} (scripts/test.sh installs them)",
                missing.join(", ")
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg} — in CI they must be installed");
            }
            eprintln!("\n*** {msg} ***\n");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("bus.conf");
        std::fs::write(&conf, BUS_CONF).unwrap();
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon starts");
        let mut bus = String::new();
        BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut bus)
            .unwrap();
        let bus = bus.trim().to_string();
        assert!(bus.starts_with("unix:"), "dbus-daemon printed {bus:?}");

        params["write_log"] = Value::from(dir.path().join("writes.log").to_str().unwrap());
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_bluez.py");
        let mock = Command::new("/usr/bin/python3")
            .args(["-m", "dbusmock", "--system", "-t"])
            .arg(&template)
            .arg("-p")
            .arg(params.to_string())
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
            .stdout(std::fs::File::create(dir.path().join("mock.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("mock.err")).unwrap())
            .spawn()
            .expect("python3 -m dbusmock starts");
        let fake = FakeBluez {
            dir,
            daemon,
            mock,
            bus,
        };
        // Event-driven: gdbus returns as soon as org.bluez has an owner.
        let ok = Command::new("gdbus")
            .args(["wait", "--system", "--timeout", "15", "org.bluez"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &fake.bus)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "the fake BlueZ did not come up: {}", fake.mock_errors());
        Some(fake)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn mock_errors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mock.err")).unwrap_or_default()
    }

    /// Every command a device received, in order: (address, bytes).
    pub fn writes(&self) -> Vec<(String, Vec<u8>)> {
        std::fs::read_to_string(self.dir.path().join("writes.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, h)| (a.to_string(), super::hex_bytes(h)))
            .collect()
    }

    /// Calls a control method of the fake (`Vanish`, `Appear`, `Configure`).
    pub fn control(&self, method: &str, args: &[&str]) {
        let out = Command::new("gdbus")
            .args([
                "call",
                "--system",
                "--dest",
                "org.bluez",
                "--object-path",
                "/org/bluez/hci0",
                "--method",
            ])
            .arg(format!("org.jkmon.FakeBluez.{method}"))
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The jkmon binary, wired to this bus, in a directory of its own (no stray `.env`).
    pub fn jkmon(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jkmon"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .env_remove("JK_BMS_ADDRESS")
            .env_remove("JK_BMS_NAMES")
            .env_remove("JK_BMS_VARIANT")
            .env_remove("JKMON_JSON")
            .env("JK_BMS_TRANSPORT", "ble")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

impl Drop for FakeBluez {
    fn drop(&mut self) {
        let _ = self.mock.kill();
        let _ = self.daemon.kill();
        let _ = self.mock.wait();
        let _ = self.daemon.wait();
    }
}

/// A running jkmon whose output lines are read as they come.
pub struct Running {
    pub child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    pub stderr_seen: Vec<String>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd.spawn().expect("jkmon starts");
        let pipe = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = pipe(Box::new(child.stdout.take().unwrap()));
        let stderr = pipe(Box::new(child.stderr.take().unwrap()));
        Running {
            child,
            stdout,
            stderr,
            stderr_seen: Vec::new(),
        }
    }

    /// The next JSON line on stdout that satisfies `pred`, waiting at most `limit`.
    pub fn wait_for(
        &mut self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => {
                    self.drain_stderr();
                    panic!(
                        "waited {limit:?} for {what}; jkmon's stderr:\n{}",
                        self.stderr_seen.join("\n")
                    );
                }
            }
        }
    }

    /// Every JSON line on stdout until `limit` passes (for counting attempts in a window).
    pub fn collect_for(&mut self, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        while let Ok(line) = self
            .stdout
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            out.push(serde_json::from_str(&line).expect("JSON line"));
        }
        out
    }

    pub fn drain_stderr(&mut self) {
        while let Ok(l) = self.stderr.try_recv() {
            self.stderr_seen.push(l);
        }
    }

    /// Waits for the process to exit by itself, at most `limit`: its stdout closing is the
    /// event.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            match self
                .stdout
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("jkmon did not exit within {limit:?}")
                }
            }
        }
        let status = self.child.wait().unwrap();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            self.stderr_seen.push(l);
        }
        status
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Hex fragments of a corpus entry (`fragments`, else the whole frame as one piece).
pub fn fragments(entry: &Value) -> Vec<String> {
    match entry["fragments"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect(),
        _ => vec![entry["hex"].as_str().unwrap().to_string()],
    }
}

/// A fresh path inside the fake's directory.
pub fn path_in(fake: &FakeBluez, name: &str) -> PathBuf {
    fake.dir().join(name)
}
