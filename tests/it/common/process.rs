//! A running jkmon process whose stdout and stderr lines are read as they arrive, so tests wait
//! on events (a line) rather than on sleeps.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

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

    /// A stderr line containing `needle`, whether it was read already (by a wait for another
    /// line that came after it) or comes within `limit`: for lines whose order against the
    /// others is not fixed (two parts starting at once).
    pub fn wait_for_log_ever(&mut self, limit: Duration, needle: &str) -> String {
        if let Some(line) = self.stderr_seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        self.wait_for_log(limit, needle)
    }

    /// The next stderr (log) line containing `needle`, waiting at most `limit`.
    pub fn wait_for_log(&mut self, limit: Duration, needle: &str) -> String {
        let deadline = Instant::now() + limit;
        loop {
            match self
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "waited {limit:?} for a log line with {needle:?}; jkmon's stderr:\n{}",
                    self.stderr_seen.join("\n")
                ),
            }
        }
    }

    /// The `host:port` the web server of this jkmon listens on, from its log line.
    pub fn web_address(&mut self, limit: Duration) -> String {
        let line = self.wait_for_log(limit, "web: listening on http://");
        line.rsplit("http://").next().unwrap().trim().to_string()
    }

    /// Sends `signal` (`TERM`, `KILL`, …) to the process.
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -{signal} failed");
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

/// A plain HTTP/1.1 GET on loopback: (status code, body). The body is read by its
/// Content-Length (Chromium's DevTools keeps the connection open).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http(addr, "GET", path, &[], "")
}

/// `method path` on loopback with `headers` and `body`: (status code, body). A write waits
/// for the BMS's confirmation, so the answer may take seconds.
#[allow(dead_code)]
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let code = status.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (code, String::from_utf8(body).unwrap())
}

/// The jkmon binary under test in `dir` (where it looks for `.env`), with the variables a
/// developer's shell might carry removed, INFO logs from jkmon, output piped.
pub fn jkmon(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jkmon"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("JK_BMS_ADDRESS")
        .env_remove("JK_BMS_NAMES")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("MQTT_URL")
        .env("RUST_LOG", "warn,jkmon=info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `binary fill-demo --days <days>` into `dir/demo.db`, then `binary run --demo` on that file
/// with `env` and its web server on a free port: the process and `http://<address>`.
pub fn demo_after_fill(
    binary: &std::path::Path,
    dir: &std::path::Path,
    days: u32,
    env: &[(&str, &str)],
) -> (Running, String) {
    let db = dir.join("demo.db");
    let fill = Command::new(binary)
        .args(["fill-demo", "--days", &days.to_string()])
        .current_dir(dir)
        .env_remove("JK_BMS_ADDRESS")
        .env_remove("JK_BMS_NAMES")
        .env("DB_PATH", &db)
        .output()
        .expect("the binary runs");
    assert!(
        fill.status.success(),
        "{}",
        String::from_utf8_lossy(&fill.stderr)
    );
    let mut cmd = Command::new(binary);
    cmd.args(["run", "--demo"])
        .current_dir(dir)
        .env_remove("JK_BMS_ADDRESS")
        .env_remove("JK_BMS_NAMES")
        .env("DB_PATH", &db)
        .env("WEB_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn,jkmon=info")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut run = Running::spawn(cmd);
    let base = format!("http://{}", run.web_address(Duration::from_secs(60)));
    (run, base)
}
