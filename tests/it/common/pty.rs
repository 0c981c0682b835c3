//! A socat pty pair: jkmon opens one end as its serial port, a simulated BMS or bus the other.
//! Readiness is socat's own "starting data transfer loop" line, not a sleep.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct PtyPair {
    /// jkmon's end.
    pub a: PathBuf,
    /// The simulator's end.
    pub b: PathBuf,
    child: Option<Child>,
}

impl PtyPair {
    /// `None` (a loud skip, or a failure in CI) when socat is missing.
    pub fn open(dir: &Path) -> Option<PtyPair> {
        if !super::have_program("socat", &["-V"]) {
            return None;
        }
        let mut pair = PtyPair {
            a: dir.join("tty-jkmon"),
            b: dir.join("tty-bms"),
            child: None,
        };
        pair.start();
        Some(pair)
    }

    fn start(&mut self) {
        let mut child = Command::new("socat")
            .arg("-d")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", self.a.display()))
            .arg(format!("pty,raw,echo=0,link={}", self.b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("socat starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("starting data transfer loop") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("socat made the pty pair within 10 s");
        self.child = Some(child);
    }

    /// Closes both ends, as an unplugged adapter does (socat removes its links on SIGTERM).
    pub fn close(&mut self) {
        // the names go first: a reopen must not find a pty number another test got since
        let _ = std::fs::remove_file(&self.a);
        let _ = std::fs::remove_file(&self.b);
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// A new pair under the same names (the adapter plugged back in).
    pub fn reopen(&mut self) {
        self.close();
        self.start();
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        self.close();
    }
}

/// A BMS on a serial port: answers every `4E 57` read-all request with the next of `frames`
/// (round and round) while `answering` is set, and stays silent otherwise. Returns the task.
pub fn answer_serial(
    path: &Path,
    frames: Vec<Vec<u8>>,
    answering: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    use jkmon::transport::serial::{self, PortConfig};
    let port = PortConfig {
        path: path.to_path_buf(),
        baud: serial::DEFAULT_BAUD,
    };
    let mut bms = serial::peer_over(serial::open(&port).expect("the BMS end of the pty opens"));
    tokio::spawn(async move {
        let mut next = frames.iter().cycle();
        while let Some(request) = bms.commands.recv().await {
            assert_eq!(request, jkmon::protocol::serial::request_read_all());
            if !answering.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            let frame = next.next().expect("at least one frame");
            if bms.chunks.send(frame.clone()).await.is_err() {
                return;
            }
        }
    })
}
