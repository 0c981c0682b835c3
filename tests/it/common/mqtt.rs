//! A real mosquitto on a free loopback port, and `mosquitto_sub` as an independent subscriber.
//! Readiness is a TCP connection the broker accepts; messages are lines as they arrive.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// mosquitto lives in /usr/sbin on Debian, which is not on every user's PATH.
fn mosquitto() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("mosquitto"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/mosquitto")])
        .find(|p| p.is_file())
}

pub struct Broker {
    pub port: u16,
    /// More lines for mosquitto.conf (TLS files, a password file).
    extra: String,
    dir: PathBuf,
    program: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// `None` (a loud skip, or a failure in CI) when mosquitto or mosquitto_sub is missing.
    pub fn start(dir: &Path) -> Option<Broker> {
        Broker::start_with(dir, "allow_anonymous true\n")
    }

    /// A broker with `extra` lines in its configuration (which must say who may connect).
    pub fn start_with(dir: &Path, extra: &str) -> Option<Broker> {
        let program = mosquitto();
        let sub = Command::new("mosquitto_sub")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !super::require(
            program.is_some() && sub,
            "mosquitto and mosquitto_sub are not installed (apt-get install mosquitto mosquitto-clients)",
        ) {
            return None;
        }
        let port = super::free_port();
        let mut broker = Broker {
            port,
            extra: extra.to_string(),
            dir: dir.to_path_buf(),
            program: program.unwrap(),
            child: None,
        };
        broker.spawn();
        Some(broker)
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let conf = self.dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\npersistence false\n{}",
                self.port, self.extra
            ),
        )
        .unwrap();
        let mut child = Command::new(&self.program)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto starts");
        // ready when it says so: "mosquitto version … running" comes after the listener opened
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut said = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                said.push(line.clone());
                if line.ends_with(" running") {
                    let _ = tx.send(Ok(()));
                }
            }
            let _ = tx.send(Err(said.join("\n")));
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(said)) => panic!("mosquitto did not start on port {}:\n{said}", self.port),
            Err(_) => panic!("mosquitto did not say it was running within 10 s"),
        }
        self.child = Some(child);
    }

    /// Kills the broker (it forgets every retained message: no persistence) and starts a new
    /// one on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One message as `mosquitto_sub` printed it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub retained: bool,
    pub topic: String,
    pub payload: String,
}

impl Msg {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.topic, self.payload))
    }
}

/// `mosquitto_sub -t '#'` on the broker: every message, retained ones first.
pub struct Subscriber {
    child: Child,
    rx: mpsc::Receiver<Msg>,
    pub seen: Vec<Msg>,
}

impl Subscriber {
    pub fn start(broker: &Broker) -> Subscriber {
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args(["-t", "#", "-F", "%r\t%t\t%p"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub starts");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut parts = line.splitn(3, '\t');
                let msg = Msg {
                    retained: parts.next() == Some("1"),
                    topic: parts.next().unwrap_or_default().to_string(),
                    payload: parts.next().unwrap_or_default().to_string(),
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        Subscriber {
            child,
            rx,
            seen: Vec::new(),
        }
    }

    /// The next message satisfying `pred`, waiting at most `limit`.
    pub fn wait_for(&mut self, limit: Duration, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        let deadline = Instant::now() + limit;
        loop {
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(m) => {
                    self.seen.push(m.clone());
                    if pred(&m) {
                        return m;
                    }
                }
                Err(_) => {
                    let topics: Vec<String> = self
                        .seen
                        .iter()
                        .rev()
                        .take(30)
                        .map(|m| {
                            format!(
                                "{} {}",
                                m.topic,
                                m.payload.chars().take(60).collect::<String>()
                            )
                        })
                        .collect();
                    panic!(
                        "waited {limit:?} for {what}; the last messages:\n{}",
                        topics.join("\n")
                    )
                }
            }
        }
    }

    /// A message on `topic` with `payload`, seen already or the next one.
    pub fn seen_or_wait(&mut self, limit: Duration, topic: &str, payload: &str) -> Msg {
        if let Some(m) = self
            .seen
            .iter()
            .find(|m| m.topic == topic && m.payload == payload)
        {
            return m.clone();
        }
        self.wait_payload(limit, topic, payload)
    }

    /// The next message on `topic` with `payload` (those seen already do not count).
    pub fn wait_payload(&mut self, limit: Duration, topic: &str, payload: &str) -> Msg {
        self.wait_for(limit, &format!("{topic} = {payload}"), |m| {
            m.topic == topic && m.payload == payload
        })
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
