//! A fake BlueZ for the Bluetooth end-to-end tests: a private `dbus-daemon` and python-dbusmock
//! running `tests/support/fake_bluez.py`. The real jkmon binary runs against it with
//! `DBUS_SYSTEM_BUS_ADDRESS` pointing there (libdbus reads that variable once per process, so
//! every test gets its own bus and its own jkmon process).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

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
