//! A real InfluxDB 1.x (Debian's `influxdb` package) on a free loopback port with a data
//! directory of its own; ready when `/ping` answers 204. It can be stopped and started again
//! on the same port and data (an outage), and queried over its HTTP API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// influxd lives in /usr/bin on Debian; `None` (a loud skip, or a failure in CI) without it.
fn influxd() -> Option<PathBuf> {
    let found = Command::new("influxd")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    super::require(found, "influxd is not installed (apt-get install influxdb)")
        .then(|| PathBuf::from("influxd"))
}

pub struct Influxd {
    pub port: u16,
    dir: PathBuf,
    program: PathBuf,
    child: Option<Child>,
}

impl Influxd {
    /// A fresh server in `dir`, with `auth` turning on its user accounts.
    pub fn start(dir: &Path, auth: bool) -> Option<Influxd> {
        Influxd::start_on(dir, auth, super::free_port())
    }

    /// The same on `port`.
    pub fn start_on(dir: &Path, auth: bool, port: u16) -> Option<Influxd> {
        let program = influxd()?;
        let conf = dir.join("influxdb.conf");
        std::fs::write(
            &conf,
            format!(
                "reporting-disabled = true\n\
                 bind-address = \"127.0.0.1:{rpc}\"\n\
                 [meta]\n  dir = \"{d}/meta\"\n\
                 [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
                 [http]\n  enabled = true\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n  auth-enabled = {auth}\n\
                 [monitor]\n  store-enabled = false\n\
                 [continuous_queries]\n  enabled = false\n",
                rpc = super::free_port(),
                d = dir.display(),
            ),
        )
        .unwrap();
        let mut server = Influxd {
            port,
            dir: dir.to_path_buf(),
            program,
            child: None,
        };
        server.resume();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and data; returns once it answers `/ping`.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.join("influxd.log")).unwrap();
        let child = Command::new(&self.program)
            .arg("-config")
            .arg(self.dir.join("influxdb.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("influxd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(self.addr()).is_err()
            || request(&self.addr(), "GET", "/ping").0 != 204
        {
            assert!(
                Instant::now() < deadline,
                "influxd did not answer /ping within 30 s:\n{}",
                std::fs::read_to_string(self.dir.join("influxd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server (an outage: nothing answers on its port).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// An InfluxQL statement, as `user:password` where given; the JSON answer.
    pub fn query(&self, db: &str, q: &str, user: Option<(&str, &str)>) -> Value {
        let mut path = format!("/query?epoch=ms&db={db}&q={}", super::urlencode(q));
        if let Some((u, p)) = user {
            path.push_str(&format!(
                "&u={}&p={}",
                super::urlencode(u),
                super::urlencode(p)
            ));
        }
        let method = if q.starts_with("SELECT") || q.starts_with("SHOW") {
            "GET"
        } else {
            "POST"
        };
        let (code, body) = request(&self.addr(), method, &path);
        assert_eq!(code, 200, "{q}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The rows of a SELECT as (column name → value) maps, every series together.
    pub fn rows(&self, db: &str, q: &str) -> Vec<serde_json::Map<String, Value>> {
        let answer = self.query(db, q, None);
        let mut rows = Vec::new();
        for series in answer["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let columns: Vec<String> = series["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            for values in series["values"].as_array().unwrap() {
                let mut row = serde_json::Map::new();
                for (c, v) in columns.iter().zip(values.as_array().unwrap()) {
                    row.insert(c.clone(), v.clone());
                }
                if let Some(tags) = series["tags"].as_object() {
                    row.extend(tags.clone());
                }
                rows.push(row);
            }
        }
        rows
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP/1.0 request (so the answer is never chunked, and ends with the connection):
/// (status code, body).
fn request(addr: &str, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let sent = write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    );
    let mut answer = String::new();
    if sent.is_err() || stream.read_to_string(&mut answer).is_err() {
        return (0, String::new());
    }
    let code = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_string())
}
