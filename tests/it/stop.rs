//! Stopping while browsers are connected, as systemd and Docker do it: SIGTERM with 100
//! dashboards holding their live event stream and one client that stopped reading, and the
//! service's own exits (the watchdog, the database writer giving up) in the same situation. Each
//! must end within 5 s — Docker kills after 10 — with the last snapshot committed.

use crate::common;
use std::path::Path;
use std::time::{Duration, Instant};

use common::process::Running;
use rusqlite::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const LIMIT: Duration = Duration::from_secs(5);

fn jkmon(dir: &Path, env: &[(&str, &str)]) -> Running {
    let mut cmd = common::process::jkmon(dir, &["run"]);
    cmd.env("JK_BMS_TRANSPORT", "sim")
        .env("DB_PATH", dir.join("inverter.db"))
        .env("WEB_BIND", "127.0.0.1:0")
        .env("WEB_LIVE_SEC", "0.2")
        .envs(env.iter().copied());
    Running::spawn(cmd)
}

fn address(run: &mut Running) -> std::net::SocketAddr {
    run.web_address(Duration::from_secs(30)).parse().unwrap()
}

/// A connection from `source` (a loopback address) that asks for `path`.
async fn request(
    source: [u8; 4],
    server: std::net::SocketAddr,
    path: &str,
    recv_buffer: Option<u32>,
) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: jkmon\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream
}

/// Reads until `needle` has arrived (the first event of a stream).
async fn read_until(stream: &mut TcpStream, needle: &str) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(30), async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {needle:?}");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?}: {}", String::from_utf8_lossy(&seen)));
}

/// 100 live dashboards (from two loopback addresses, 50 each) with their first event read,
/// and one client that asked for the dashboard page and reads nothing.
async fn browsers(server: std::net::SocketAddr) -> (Vec<TcpStream>, TcpStream) {
    let mut streams = Vec::new();
    for i in 0..100u8 {
        let source = [127, 0, 0, 1 + i % 2];
        let mut s = request(source, server, "/api/v1/events", None).await;
        read_until(&mut s, "event: status").await;
        streams.push(s);
    }
    let stalled = request([127, 0, 0, 3], server, "/charts", Some(1024)).await;
    (streams, stalled)
}

/// Every stream ends (EOF or reset) soon after the stop.
async fn all_end(streams: Vec<TcpStream>) {
    for mut s in streams {
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "an event stream stayed open after the stop");
    }
}

fn latest_taken_ms(db: &Path) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row("SELECT MAX(taken_ms) FROM bms_latest", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_100_live_dashboards_and_a_stalled_client_exits_within_5_s() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = jkmon(
        dir.path(),
        &[
            ("JK_BMS_POLL_INTERVAL", "0.5"),
            ("JK_SIM_INTERVAL_MS", "50"),
        ],
    );
    let server = tokio::task::block_in_place(|| address(&mut run));
    let (streams, _stalled) = browsers(server).await;
    tokio::task::block_in_place(|| run.wait_for_log(Duration::from_secs(30), " cells (delta "));
    let asked = Instant::now();
    run.signal("TERM");
    let status = tokio::task::block_in_place(|| run.wait_exit(LIMIT));
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}: {:?}", run.stderr_seen);
    assert!(took < LIMIT, "took {took:?}");
    all_end(streams).await;
    // the writer's last commit holds the snapshots up to the stop
    let closed = run
        .stderr_seen
        .iter()
        .find(|l| l.contains("database closed after"))
        .unwrap_or_else(|| panic!("{:?}", run.stderr_seen));
    assert!(closed.contains("(0 failed)"), "{closed}");
    let last_ms = latest_taken_ms(&dir.path().join("inverter.db"));
    let stop_ms = chrono::Utc::now().timestamp_millis() - took.as_millis() as i64;
    assert!(
        stop_ms - last_ms < 1_000,
        "the last committed snapshot is {} ms older than the stop",
        stop_ms - last_ms
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_watchdog_exit_does_not_wait_for_the_dashboards() {
    let dir = tempfile::tempdir().unwrap();
    // one frame a minute: fresh at first, then silent past BMS_TIMEOUT_SEC
    let mut run = jkmon(
        dir.path(),
        &[
            ("JK_SIM_INTERVAL_MS", "60000"),
            ("JK_BMS_STALE_SEC", "120"),
            ("BMS_TIMEOUT_SEC", "4"),
        ],
    );
    let server = tokio::task::block_in_place(|| address(&mut run));
    let (streams, _stalled) = browsers(server).await;
    tokio::task::block_in_place(|| {
        run.wait_for_log(Duration::from_secs(30), "watchdog: no BMS delivered")
    });
    let tripped = Instant::now();
    let status = tokio::task::block_in_place(|| run.wait_exit(LIMIT));
    assert_eq!(status.code(), Some(3), "{:?}", run.stderr_seen);
    assert!(tripped.elapsed() < LIMIT, "took {:?}", tripped.elapsed());
    all_end(streams).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_writers_give_up_exit_does_not_wait_for_the_dashboards() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    let mut run = jkmon(
        dir.path(),
        &[
            ("JK_BMS_POLL_INTERVAL", "0.1"),
            ("JK_SIM_INTERVAL_MS", "50"),
            ("DB_BUSY_TIMEOUT_MS", "100"),
        ],
    );
    let server = tokio::task::block_in_place(|| address(&mut run));
    tokio::task::block_in_place(|| run.wait_for_log(Duration::from_secs(30), " cells (delta "));
    let (streams, _stalled) = browsers(server).await;
    // another program takes the write lock and keeps it: every commit fails
    let holder = Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    tokio::task::block_in_place(|| {
        run.wait_for_log(Duration::from_secs(60), "20 failure(s) in a row")
    });
    let gave_up = Instant::now();
    let status = tokio::task::block_in_place(|| run.wait_exit(LIMIT));
    assert_eq!(status.code(), Some(1), "{:?}", run.stderr_seen);
    assert!(gave_up.elapsed() < LIMIT, "took {:?}", gave_up.elapsed());
    all_end(streams).await;
    holder.execute_batch("ROLLBACK").unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_crowding_connections_are_closed_and_said_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = jkmon(dir.path(), &[("JK_SIM_INTERVAL_MS", "50")]);
    let server = tokio::task::block_in_place(|| address(&mut run));
    // one client opens 70 connections and sends nothing
    let mut crowd = Vec::new();
    for _ in 0..70 {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 9], 0)))
            .unwrap();
        crowd.push(socket.connect(server).await.unwrap());
    }
    tokio::task::block_in_place(|| {
        run.wait_for_log(
            Duration::from_secs(10),
            "127.0.0.9 holds 64 connections already",
        )
    });
    // the owner's health check still gets through
    let (code, _) = tokio::task::block_in_place(|| {
        common::process::http_get(&server.to_string(), "/api/v1/health")
    });
    assert!(code == 200 || code == 503, "health answered {code}");
    // the first 64 are closed when their request head does not come (10 s), the rest at once
    let mut closed = 0;
    for s in crowd.iter_mut() {
        let mut buf = [0u8; 16];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 70, "every idle connection is closed");
    tokio::task::block_in_place(|| {
        run.wait_for_log(
            Duration::from_secs(10),
            "closed a connection from 127.0.0.9 that sent no complete request",
        )
    });
}
