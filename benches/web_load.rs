//! The web server under load, against a baseline measured in the same run: `jkmon run --demo`
//! with 100 event streams (`/api/v1/events`, as 100 open dashboards) held open, then `/`,
//! `/api/v1/status` and `/api/v1/health` each against the static file `/static/app.css` (the
//! cheapest answer the same server gives) at 50 and 200 concurrent keep-alive clients. The
//! clients are spread over ten loopback addresses (127.0.0.2 …), as the server admits 64
//! connections per address. Then the process's memory and descriptors: idle before, right
//! after the load, and 60 s later.
//!
//!   cargo bench --bench web_load
//!
//! `cargo test --all-targets` (no `--bench`) runs a smoke version: 10 streams, 10 clients, half
//! a second per route, no 60 s wait; it checks that every answer is a 200.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;

struct Plan {
    streams: usize,
    clients: &'static [usize],
    per_route: Duration,
    settle: Duration,
}

/// Ten loopback source addresses, client `i` on the `i % 10`-th.
fn source(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 10) as u8)), 0)
}

async fn connect(i: usize, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(source(i))?;
    s.connect(to).await
}

/// One keep-alive client asking for `path` until `until`: its latencies, and the answers that
/// were not 200.
async fn client(i: usize, to: SocketAddr, path: &str, until: Instant) -> (Vec<Duration>, usize) {
    let mut times = Vec::new();
    let mut bad = 0;
    let Ok(stream) = connect(i, to).await else {
        return (times, 1);
    };
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
    while Instant::now() < until {
        let t = Instant::now();
        if w.write_all(request.as_bytes()).await.is_err() {
            bad += 1;
            break;
        }
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            bad += 1;
            break;
        }
        let ok = line.starts_with("HTTP/1.1 200");
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                break;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if r.read_exact(&mut body).await.is_err() {
            bad += 1;
            break;
        }
        times.push(t.elapsed());
        if !ok {
            bad += 1;
        }
    }
    (times, bad)
}

/// An event stream held open and read, as a dashboard does.
async fn stream(i: usize, to: SocketAddr) {
    let Ok(mut s) = connect(i, to).await else {
        return;
    };
    let _ = s
        .write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: bench\r\n\r\n")
        .await;
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

#[derive(Clone, Copy)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    bad: usize,
}

async fn load(to: SocketAddr, path: &'static str, clients: usize, per_route: Duration) -> Figures {
    let until = Instant::now() + per_route;
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(i, to, path, until)))
        .collect();
    let mut all = Vec::new();
    let mut bad = 0;
    for t in tasks {
        let (times, b) = t.await.unwrap();
        all.extend(times);
        bad += b;
    }
    all.sort();
    let at = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Figures {
        rps: all.len() as f64 / per_route.as_secs_f64(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        bad,
    }
}

/// `(RSS kB, open descriptors)` of `pid`.
fn footprint(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss, fds)
}

fn start(dir: &std::path::Path) -> (Child, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_jkmon"))
        .args(["run", "--demo"])
        .current_dir(dir)
        .env("WEB_BIND", format!("127.0.0.1:{port}"))
        .env("DB_PATH", dir.join("demo.db"))
        .env("RUST_LOG", "warn")
        .env_remove("MQTT_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(to).is_err() {
        assert!(Instant::now() < deadline, "jkmon did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, to)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let plan = if bench {
        Plan {
            streams: 100,
            clients: &[50, 200],
            per_route: Duration::from_secs(5),
            settle: Duration::from_secs(60),
        }
    } else {
        Plan {
            streams: 10,
            clients: &[10],
            per_route: Duration::from_millis(500),
            settle: Duration::ZERO,
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut child, to) = start(dir.path());
    let pid = child.id();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // a moment for the demo to have a status
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = footprint(pid);
        let streams: Vec<_> = (0..plan.streams)
            .map(|i| tokio::spawn(stream(i, to)))
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!(
            "jkmon run --demo, {} event streams open, clients over 10 loopback addresses",
            plan.streams
        );
        println!(
            "{:>8} {:<20} {:>10} {:>8} {:>8} {:>11} {:>6}",
            "clients", "route", "req/s", "p50 ms", "p99 ms", "p99 vs base", "not200"
        );
        let mut failures = 0;
        for &clients in plan.clients {
            let base = load(to, "/static/app.css", clients, plan.per_route).await;
            for (path, f) in [
                ("/static/app.css", None),
                ("/", Some(())),
                ("/api/v1/status", Some(())),
                ("/api/v1/health", Some(())),
            ] {
                let r = match f {
                    None => base,
                    Some(()) => load(to, path, clients, plan.per_route).await,
                };
                failures += r.bad;
                println!(
                    "{clients:>8} {path:<20} {:>10.0} {:>8.2} {:>8.2} {:>10.2}x {:>6}",
                    r.rps,
                    r.p50_ms,
                    r.p99_ms,
                    r.p99_ms / base.p99_ms.max(0.001),
                    r.bad
                );
            }
        }
        let after = footprint(pid);
        tokio::time::sleep(plan.settle).await;
        let settled = footprint(pid);
        println!(
            "RSS / descriptors: idle {} kB / {}, right after the load {} kB / {}, {} s later {} kB / {}",
            idle.0,
            idle.1,
            after.0,
            after.1,
            plan.settle.as_secs(),
            settled.0,
            settled.1
        );
        for s in streams {
            s.abort();
        }
        assert_eq!(failures, 0, "answers that were not 200");
    });
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = child.wait();
}
