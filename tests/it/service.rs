//! The service as users run it: the real `jkmon` binary with the simulated BMS writing into a
//! real SQLite file, beside a separate writer process (Python's sqlite3, like the inverter
//! poller), stopped by SIGTERM, or killed with SIGKILL in the middle of its commits.

use crate::common;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::{http_get, Running};
use rusqlite::Connection;
use serde_json::Value;

/// `jkmon <args>` on the simulator in `dir`, writing `db`, logs on stderr.
fn jkmon(dir: &Path, db: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut cmd = common::process::jkmon(dir, args);
    cmd.env("JK_BMS_TRANSPORT", "sim")
        .env("DB_PATH", db)
        .env("JK_SIM_INTERVAL_MS", "50")
        .envs(env.iter().copied());
    Running::spawn(cmd)
}

/// `db` as `jkmon poll` on the simulator leaves it after a few commits and a clean stop.
fn written_by_a_poller(dir: &Path, db: &Path) {
    let mut poll = jkmon(dir, db, &["poll"], &[("JK_BMS_POLL_INTERVAL", "0.2")]);
    poll.wait_for_log(Duration::from_secs(20), " cells (delta ");
    poll.signal("TERM");
    assert!(poll.wait_exit(Duration::from_secs(10)).success());
}

fn integrity(db: &Path) -> String {
    let conn = Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

fn errors_in(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .collect()
}

/// `jkmon set <args>` on the simulator with `env`, through the service at `addr`.
fn set_through(
    dir: &Path,
    addr: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    let url = format!("http://{addr}");
    let mut all = vec!["set"];
    all.extend(args);
    all.extend(["--url", url.as_str()]);
    let mut cmd = common::process::jkmon(dir, &all);
    cmd.env("JK_BMS_TRANSPORT", "sim").envs(env.iter().copied());
    cmd.output().unwrap()
}

/// `jkmon run --demo` with `env` and its web server on a free port; the port's address.
fn demo_with_web(dir: &Path, db: &Path, env: &[(&str, &str)]) -> (Running, String) {
    let mut env = env.to_vec();
    env.push(("WEB_BIND", "127.0.0.1:0"));
    let mut run = jkmon(dir, db, &["run", "--demo"], &env);
    let addr = run.web_address(Duration::from_secs(20));
    (run, addr)
}

#[test]
fn run_demo_fills_the_database_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let (mut run, addr) = demo_with_web(
        dir.path(),
        &db,
        &[
            ("JK_BMS_POLL_INTERVAL", "0.2"),
            ("JK_SIM_INVERTER_SEC", "0.1"),
        ],
    );
    for _ in 0..5 {
        run.wait_for_log(Duration::from_secs(20), "merged into readings #");
    }
    // the web server of the same process answers from the same database
    let (code, body) = http_get(&addr, "/api/v1/status");
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["batteries"][0]["name"], "Simulated BMS");
    assert_eq!(status["batteries"][0]["online"], true);
    assert_eq!(status["batteries"][0]["snapshot"]["cell_count"], 16);
    assert_eq!(status["inverter"]["has_inverter_data"], true);
    let (code, _) = http_get(&addr, "/api/v1/health");
    assert_eq!(code, 200);
    // the demo shows control end to end: its simulated battery is switched from the command
    // line, through the service, with no token (nothing real is switched)
    let out = set_through(dir.path(), &addr, &[], &["1", "heater=on"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "heater=on on Simulated BMS: confirmed by the BMS"
    );
    run.signal("TERM");
    let status = run.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit {status:?}: {:?}", run.stderr_seen);
    assert!(
        run.stderr_seen
            .iter()
            .any(|l| l.contains("database closed after")),
        "{:?}",
        run.stderr_seen
    );
    assert!(
        errors_in(&run.stderr_seen).is_empty(),
        "{:?}",
        run.stderr_seen
    );
    assert_eq!(integrity(&db), "ok");
    assert!(
        !dir.path().join("demo.db-wal").exists()
            || std::fs::metadata(dir.path().join("demo.db-wal"))
                .unwrap()
                .len()
                == 0,
        "the WAL is folded back on a clean stop"
    );
    let conn = Connection::open(&db).unwrap();
    let rows: Vec<String> = conn
        .prepare("SELECT payload FROM readings ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(rows.len() >= 5, "the simulated inverter wrote rows");
    let last: Value = serde_json::from_str(rows.last().unwrap()).unwrap();
    assert!(last["grid_voltage"].is_string(), "an inverter row: {last}");
    assert_eq!(last["bms_name"], "Simulated BMS");
    assert!(last["inverter_battery_voltage"].is_string());
    assert!(
        last.get("source").is_none(),
        "no jkmon row beside a live inverter"
    );
    let history: i64 = conn
        .query_row("SELECT COUNT(*) FROM bms_history", [], |r| r.get(0))
        .unwrap();
    assert!(history >= 5);
    // the demo inverter writes created_at as the Python poller does: naive UTC to the second
    let created: Vec<String> = conn
        .prepare("SELECT created_at FROM readings ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for c in &created {
        chrono::NaiveDateTime::parse_from_str(c, "%Y-%m-%dT%H:%M:%S")
            .unwrap_or_else(|e| panic!("{c}: {e}"));
    }
}

/// A Python writer like the inverter poller: a new connection per row (default 5 s timeout),
/// one row every 50 ms for `seconds`; it prints `errors=<n>` and then every row it wrote.
const PYTHON_POLLER: &str = r#"
import json, sqlite3, sys, time
from datetime import datetime, timezone, timedelta
path, seconds = sys.argv[1], float(sys.argv[2])
errors, written = 0, []
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end and n < 2000:
    n += 1
    payload = {"grid_voltage": "%.1f" % (220 + n % 20), "grid_power": str(n), "status_text": "LINE",
               "battery_voltage": "52.%d" % (n % 10), "battery_current": "-1.0", "battery_soc": "64",
               "battery_power": "-52", "temperature": "30", "pv_input_power": "0", "seq": str(n)}
    try:
        c = sqlite3.connect(path)
        cur = c.execute("INSERT INTO readings (created_at, payload) VALUES (?, ?)",
                        (datetime.now(timezone(timedelta(hours=2))).isoformat(), json.dumps(payload)))
        c.commit()
        written.append((cur.lastrowid, payload))
        c.close()
    except Exception as e:
        errors += 1
        print("ERROR", repr(e), file=sys.stderr)
    time.sleep(0.05)
print("errors=%d" % errors)
print(json.dumps(written))
"#;

/// Inside `jkmon run` the views show each battery's newest snapshot (the BMS sends about two a
/// second), while the database keeps its pace: one commit at the start, the next a poll
/// interval later.
#[test]
fn run_shows_the_newest_snapshot_while_the_database_keeps_its_pace() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let (mut run, addr) = demo_with_web(
        dir.path(),
        &db,
        &[
            ("JK_BMS_POLL_INTERVAL", "120"),
            ("JK_SIM_INTERVAL_MS", "200"),
        ],
    );
    // the first snapshot is committed at once
    run.wait_for_log(Duration::from_secs(20), "writer: Simulated BMS: ");
    let committed = || -> i64 {
        Connection::open(&db)
            .unwrap()
            .query_row("SELECT taken_ms FROM bms_latest", [], |r| r.get(0))
            .unwrap()
    };
    let first_commit = committed();
    // sampled every 0.5 s for 4 s: every answer is at most 2 s old, and newer than the commit
    let mut newer = 0;
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        let (code, body) = http_get(&addr, "/api/v1/status");
        assert_eq!(code, 200, "{body}");
        let status: Value = serde_json::from_str(&body).unwrap();
        let b = &status["batteries"][0];
        let age = b["age_s"].as_f64().unwrap();
        assert!(age <= 2.0, "a snapshot {age} s old: {b}");
        assert_eq!(b["online"], true, "{b}");
        let taken = chrono::DateTime::parse_from_rfc3339(b["taken_at"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        if taken > first_commit {
            newer += 1;
        }
    }
    assert!(
        newer >= 7,
        "{newer} of 8 answers newer than the last commit"
    );
    assert_eq!(committed(), first_commit, "no commit before the interval");
    run.signal("TERM");
    assert!(run.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn a_python_writer_and_jkmon_share_the_database_for_30_s_without_losing_a_key() {
    if !common::have_program("/usr/bin/python3", &["-c", "import sqlite3"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    // an inverter monitor's database with a fresh row: the inverter is alive when jkmon starts
    Connection::open(&db)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL,
                 payload TEXT, error TEXT);
             INSERT INTO readings (created_at, payload) VALUES ('{}', '{{\"grid_voltage\": \"230.0\"}}');",
            chrono::Local::now().to_rfc3339()
        ))
        .unwrap();
    // jkmon merges five times a second
    let mut run = jkmon(
        dir.path(),
        &db,
        &["poll"],
        &[("JK_BMS_POLL_INTERVAL", "0.2")],
    );
    // the row that was there before the start is never changed; the writer's rows will be
    let line = run.wait_for_log(Duration::from_secs(20), "readings untouched");
    assert!(line.contains("#1 was there before jkmon started"), "{line}");
    let out = Command::new("/usr/bin/python3")
        .args(["-c", PYTHON_POLLER, db.to_str().unwrap(), "30"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run.signal("TERM");
    let status = run.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{:?}", run.stderr_seen);

    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("errors=0"),
        "the Python writer saw errors: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: Vec<(i64, serde_json::Map<String, Value>)> =
        serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(written.len() >= 400, "{} rows in 30 s", written.len());
    assert!(
        errors_in(&run.stderr_seen).is_empty(),
        "{:?}",
        run.stderr_seen
    );
    let merges = run
        .stderr_seen
        .iter()
        .filter(|l| l.contains("merged into readings #"))
        .count();
    assert!(merges >= 100, "jkmon merged {merges} times");

    let conn = Connection::open(&db).unwrap();
    let mut lost = Vec::new();
    let mut with_bms = 0;
    for (id, original) in &written {
        let text: String = conn
            .query_row("SELECT payload FROM readings WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        let stored: Value = serde_json::from_str(&text).unwrap();
        for l in common::lost_inverter_keys(original, stored.as_object().unwrap()) {
            lost.push(format!("row {id}: {l}"));
        }
        if stored["bms_name"] == "Simulated BMS" {
            with_bms += 1;
        }
    }
    assert!(
        lost.is_empty(),
        "{} inverter values lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(
        with_bms,
        written.len(),
        "every inverter row carries the BMS keys"
    );
    let total: i64 = conn
        .query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        total as usize,
        written.len() + 1,
        "jkmon inserted no row of its own"
    );
    assert_eq!(integrity(&db), "ok");
}

#[test]
fn kill_9_during_heavy_merging_leaves_a_whole_database_with_every_committed_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    let mut run = jkmon(
        dir.path(),
        &db,
        &["poll"],
        &[
            ("JK_BMS_POLL_INTERVAL", "0.1"),
            ("JK_SIM_INTERVAL_MS", "10"),
            ("RUST_LOG", "warn,jkmon::store=debug"),
        ],
    );
    let mut committed = BTreeSet::new();
    while committed.len() < 30 {
        let line = run.wait_for_log(Duration::from_secs(20), "committed battery=1");
        committed.insert(ts_of(&line));
    }
    run.signal("KILL");
    let status = run.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    // lines logged before the kill are commits too
    for line in &run.stderr_seen {
        if line.contains("committed battery=1") {
            committed.insert(ts_of(line));
        }
    }
    assert_eq!(integrity(&db), "ok");
    let conn = Connection::open(&db).unwrap();
    let stored: BTreeSet<i64> = conn
        .prepare("SELECT ts_ms FROM bms_history WHERE bucket_s = 0")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let missing: Vec<&i64> = committed.difference(&stored).collect();
    assert!(missing.is_empty(), "committed but gone: {missing:?}");
    // and jkmon starts again on it
    let mut again = jkmon(
        dir.path(),
        &db,
        &["poll"],
        &[("JK_BMS_POLL_INTERVAL", "0.1")],
    );
    again.wait_for_log(Duration::from_secs(20), "readings #");
}

fn ts_of(line: &str) -> i64 {
    line.split("history_ts_ms=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no history_ts_ms in {line}"))
}

#[test]
fn fill_demo_writes_days_of_history_and_never_touches_a_database_with_readings() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let run = |db: &Path| {
        Command::new(env!("CARGO_BIN_EXE_jkmon"))
            .args(["fill-demo", "--days", "2"])
            .current_dir(dir.path())
            .env_remove("JK_BMS_ADDRESS")
            .env_remove("JK_BMS_NAMES")
            .env("DB_PATH", db)
            .output()
            .unwrap()
    };
    let out = run(&db);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("day 2 of 2 written"),
        "progress is shown: {stderr}"
    );
    let conn = Connection::open(&db).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM readings"), 2 * 8_640);
    assert_eq!(
        count("SELECT COUNT(*) FROM readings WHERE json_extract(payload, '$.bms_cell_count') = 16"),
        2 * 8_640,
        "the battery keys are merged into every row"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM bms_history WHERE bucket_s = 0"),
        2 * 2_880
    );
    assert!(count("SELECT COUNT(*) FROM bms_history WHERE bucket_s = 3600") >= 47);
    assert!(count("SELECT COUNT(*) FROM inverter_history WHERE bucket_s = 300") >= 2 * 288 - 1);
    assert_eq!(integrity(&db), "ok");
    drop(conn);
    // a second run would mix invented rows into existing ones: refused, nothing written
    let again = run(&db);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already holds 17280 readings"), "{stderr}");
}

#[test]
fn a_deleted_database_directory_is_noticed_and_jkmon_stops_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("inverter.db");
    let mut run = jkmon(
        dir.path(),
        &db,
        &["run"],
        &[("JK_BMS_POLL_INTERVAL", "0.2"), ("WEB_BIND", "127.0.0.1:0")],
    );
    let addr = run.web_address(Duration::from_secs(20));
    run.wait_for_log(Duration::from_secs(20), " cells (delta ");
    assert_eq!(http_get(&addr, "/api/v1/health").0, 200);
    // an owner's cleanup script, a wrong volume mount: the directory goes
    std::fs::remove_dir_all(&data).unwrap();
    let said = run.wait_for_log(
        Duration::from_secs(20),
        "was deleted while jkmon was using it",
    );
    assert!(said.contains(db.to_str().unwrap()), "{said}");
    let status = run.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{:?}", run.stderr_seen);
    let commits_after = run
        .stderr_seen
        .iter()
        .skip_while(|l| !l.contains("was deleted"))
        .filter(|l| l.contains(" cells (delta "))
        .count();
    assert_eq!(
        commits_after, 0,
        "no commit into nothing: {:?}",
        run.stderr_seen
    );
}

#[test]
fn the_web_alone_says_unhealthy_when_its_database_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("inverter.db");
    written_by_a_poller(dir.path(), &db);
    let mut web = jkmon(
        dir.path(),
        &db,
        &["web"],
        &[("WEB_BIND", "127.0.0.1:0"), ("JK_BMS_STALE_SEC", "3600")],
    );
    let addr = web.web_address(Duration::from_secs(20));
    assert_eq!(http_get(&addr, "/api/v1/health").0, 200);
    std::fs::remove_dir_all(&data).unwrap();
    let (code, body) = http_get(&addr, "/api/v1/health");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("deleted"), "{body}");
}

/// `jkmon web` beside a `jkmon run` elsewhere needs no BMS of its own: it shows the batteries
/// the database holds, with their values.
#[test]
fn the_web_alone_with_no_bms_configured_shows_the_batteries_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    let mut poll = jkmon(
        dir.path(),
        &db,
        &["poll"],
        &[
            ("JK_BMS_POLL_INTERVAL", "0.2"),
            ("JK_BMS_ADDRESS", "C8:47:80:00:00:01,C8:47:80:00:00:02"),
            ("JK_BMS_NAMES", "Garage,Shed"),
        ],
    );
    for _ in 0..2 {
        poll.wait_for_log(Duration::from_secs(20), " cells (delta ");
    }
    poll.signal("TERM");
    assert!(poll.wait_exit(Duration::from_secs(10)).success());
    // Bluetooth with no address and no devices file: nothing configured
    let mut web = jkmon(
        dir.path(),
        &db,
        &["web"],
        &[
            ("WEB_BIND", "127.0.0.1:0"),
            ("JK_BMS_TRANSPORT", "ble"),
            ("JK_DEVICES_FILE", "none.yaml"),
            ("JK_BMS_STALE_SEC", "3600"),
        ],
    );
    let addr = web.web_address(Duration::from_secs(20));
    let (code, body) = http_get(&addr, "/api/v1/status");
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    let batteries = status["batteries"].as_array().unwrap();
    let names: Vec<&str> = batteries
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Garage", "Shed"]);
    for b in batteries {
        let volts = b["snapshot"]["total_voltage_v"].as_f64().unwrap_or(0.0);
        assert!(volts > 20.0, "{b}");
    }
    let (code, page) = http_get(&addr, "/");
    assert_eq!(code, 200);
    assert!(page.contains("Garage") && page.contains("Shed"), "{page}");
    let (code, history) = http_get(&addr, "/api/v1/history?battery=2");
    assert_eq!(code, 200, "{history}");
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history["batteries"][0]["name"], "Shed", "{history}");
    assert!(!history["batteries"][0]["points"]
        .as_array()
        .unwrap()
        .is_empty());
    web.signal("TERM");
    assert!(web.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn a_read_only_database_names_the_file_the_user_and_the_fix() {
    if !common::have_program("/usr/bin/setpriv", &["--version"]) {
        return;
    }
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !common::require(is_root, "root, to run jkmon as another user (setpriv)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    written_by_a_poller(dir.path(), &db);
    // the file belongs to root; jkmon now runs as nobody (a systemd User= that was changed)
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new("/usr/bin/setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_jkmon"))
        .arg("poll")
        .current_dir(dir.path())
        .env("JK_BMS_TRANSPORT", "sim")
        .env("JK_SIM_INTERVAL_MS", "50")
        .env("DB_PATH", &db)
        .env("RUST_LOG", "warn,jkmon=info")
        .env_remove("JK_BMS_ADDRESS")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut run = Running::spawn(cmd);
    let status = run.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    let all = run.stderr_seen.join("\n");
    assert!(
        all.contains(db.to_str().unwrap())
            && all.contains("nobody")
            && all.contains("chown")
            && all.contains("read-only"),
        "{all}"
    );
}

/// The energy a battery owner reads first, end to end on `run --demo`: the counters grow with
/// every snapshot in the views (not only at a commit), `/api/v1/energy` lists each day, a bad
/// `days` is refused by name, and after the stop the database holds at least what the views
/// showed, its days adding up to its counters.
#[test]
fn run_counts_energy_live_and_keeps_it_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let (mut run, addr) = demo_with_web(
        dir.path(),
        &db,
        &[
            ("JK_BMS_POLL_INTERVAL", "120"),
            ("JK_SIM_INTERVAL_MS", "200"),
            // a minute per charge/discharge cycle: tens of amps within seconds
            ("JK_SIM_PERIOD_SEC", "60"),
            ("JK_SIM_CAPACITY_AH", "280"),
        ],
    );
    let energy = || -> Value {
        let (code, body) = http_get(&addr, "/api/v1/status");
        assert_eq!(code, 200, "{body}");
        let status: Value = serde_json::from_str(&body).unwrap();
        status["batteries"][0]["energy"].clone()
    };
    let moved = |e: &Value| {
        e["charged_kwh"].as_f64().unwrap_or(0.0) + e["discharged_kwh"].as_f64().unwrap_or(0.0)
    };
    // bounded: 80 looks over at most 20 s, until a count grew past an earlier one
    let mut seen = Vec::new();
    for _ in 0..80 {
        seen.push(moved(&energy()));
        let first = seen.iter().copied().find(|v| *v > 0.0);
        if first.is_some_and(|f| seen[seen.len() - 1] > f) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let first = seen.iter().copied().find(|v| *v > 0.0).unwrap_or(0.0);
    let last = *seen.last().unwrap();
    assert!(
        first > 0.0 && last > first,
        "the counters grow between commits: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[1] >= w[0]),
        "never decreasing: {seen:?}"
    );
    let e = energy();
    assert!(e["average_power_w"].is_number(), "{e}");
    assert!(e["stored_kwh"].as_f64().unwrap() > 0.0, "{e}");

    let (code, body) = http_get(&addr, "/api/v1/energy?days=3");
    assert_eq!(code, 200, "{body}");
    let days: Value = serde_json::from_str(&body).unwrap();
    let days = days["days"].as_array().unwrap();
    assert_eq!(days.len(), 3, "{body}");
    let today = chrono::Local::now().date_naive().to_string();
    assert_eq!(days[2]["date"], today.as_str(), "oldest first: {body}");
    assert!(
        days[0]["charged_kwh"].is_null(),
        "no count is no data, not 0: {body}"
    );
    let today_moved =
        days[2]["charged_kwh"].as_f64().unwrap() + days[2]["discharged_kwh"].as_f64().unwrap();
    assert!(today_moved > 0.0, "{body}");
    assert_eq!(days[2]["batteries"][0]["position"], 1);
    // the demo inverter's rows: PV and load today
    assert!(days[2]["load_kwh"].is_number(), "{body}");
    let (code, body) = http_get(&addr, "/api/v1/energy?days=0");
    assert_eq!(code, 400);
    assert!(body.contains("days=\\\"0\\\""), "{body}");
    // the sum of the days: today's part only, the days without a count are no data
    let total: Value = serde_json::from_str::<Value>(&http_get(&addr, "/api/v1/energy?days=3").1)
        .unwrap()["total"]
        .clone();
    assert_eq!(
        (total["days"].as_u64(), total["days_with_data"].as_u64()),
        (Some(3), Some(1)),
        "{total}"
    );
    // by month: this month so far, with today's energy in it, and the eleven before as gaps
    let (code, body) = http_get(&addr, "/api/v1/energy?by=month");
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let months = answer["months"].as_array().unwrap();
    assert_eq!(months.len(), 12, "{body}");
    let this_month = chrono::Local::now().format("%Y-%m").to_string();
    assert_eq!(
        months[11]["month"],
        this_month.as_str(),
        "oldest first: {body}"
    );
    assert!(
        months[11]["charged_kwh"].as_f64().is_some_and(|k| k > 0.0),
        "{body}"
    );
    assert!(
        months[0]["charged_kwh"].is_null() && months[0]["days_with_data"] == 0,
        "a month without data is a gap: {body}"
    );
    for (query, named) in [
        ("by=week", "by=\\\"week\\\""),
        ("by=month&months=13", "months=\\\"13\\\""),
    ] {
        let (code, body) = http_get(&addr, &format!("/api/v1/energy?{query}"));
        assert_eq!(code, 400, "{query}: {body}");
        assert!(body.contains(named), "{query}: {body}");
    }

    run.signal("TERM");
    assert!(run.wait_exit(Duration::from_secs(20)).success());
    let conn = Connection::open(&db).unwrap();
    let (charged, discharged): (f64, f64) = conn
        .query_row(
            "SELECT charged_wh, discharged_wh FROM bms_energy",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        (charged + discharged) / 1000.0 >= last - 0.001,
        "the stop commits what the views showed: {charged} + {discharged} Wh vs {last} kWh"
    );
    let (day_charged, day_discharged): (f64, f64) = conn
        .query_row(
            "SELECT SUM(charged_wh), SUM(discharged_wh) FROM bms_energy_daily",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!((day_charged - charged).abs() < 1e-6 && (day_discharged - discharged).abs() < 1e-6);
}

/// Control end to end on the simulated BMS: `jkmon set` and the API switch it through the
/// running service's session; each write is confirmed by the BMS's own settings frame, shown
/// by the status as the BMS reports it, and recorded with who asked. Without WEB_AUTH_TOKEN,
/// or where JK_BMS_CONTROL leaves the battery off, every write is refused and nothing changes.
#[test]
fn switches_are_set_through_the_service_confirmed_by_the_bms_and_recorded() {
    use common::process::http;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("control.db");
    let token = "s3cret-token";
    let env = [
        ("WEB_BIND", "127.0.0.1:0"),
        ("WEB_AUTH_TOKEN", token),
        ("JK_BMS_CONTROL", "on"),
    ];
    let mut run = jkmon(dir.path(), &db, &["run"], &env);
    let addr = run.web_address(Duration::from_secs(20));
    assert!(
        run.stderr_seen
            .iter()
            .any(|l| l.contains("control: jkmon may switch Simulated BMS")),
        "the start says who may be switched"
    );
    let bearer = format!("Bearer {token}");
    let status = || -> Value {
        let (code, body) = http(
            &addr,
            "GET",
            "/api/v1/status",
            &[("Authorization", &bearer)],
            "",
        );
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    // bounded: 40 looks over at most 10 s, until the BMS reported its switches
    for _ in 0..40 {
        if status()["batteries"][0]["snapshot"]["switches"]["charging"] == true {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        status()["batteries"][0]["snapshot"]["switches"]["charging"],
        true
    );

    // the command line, through the service (its own .env: the same variables)
    let out = set_through(dir.path(), &addr, &env, &["simulated bms", "charging=off"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "charging=off on Simulated BMS: confirmed by the BMS"
    );
    // the first battery once `pred` holds for it (bounded: at most 5 s)
    let eventually = |pred: &dyn Fn(&Value) -> bool| -> Value {
        let mut b = Value::Null;
        for _ in 0..20 {
            b = status()["batteries"][0].clone();
            if pred(&b) {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        b
    };
    // what the BMS reports, not what was asked: its settings and its cell-info flag, in the
    // snapshots that follow the confirmation
    let b = eventually(&|b| {
        b["snapshot"]["switches"]["charging"] == false && b["switch_writes"][0].is_object()
    });
    assert_eq!(b["snapshot"]["switches"]["charging"], false, "{b}");
    assert_eq!(b["snapshot"]["charging_enabled"], false, "{b}");
    assert_eq!(b["switch_writes"][0]["source"], "cli", "{b}");
    assert_eq!(b["switch_writes"][0]["outcome"], "confirmed", "{b}");

    let post = |battery: &str, headers: &[(&str, &str)], body: &str| {
        let path = format!("/api/v1/batteries/{battery}/switches");
        http(&addr, "POST", &path, headers, body)
    };
    // the API with JSON
    let json = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (code, body) = post("1", &json, r#"{"switch": "discharging", "on": false}"#);
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["confirmed"], true, "{body}");
    let b = eventually(&|b| b["snapshot"]["switches"]["discharging"] == false);
    assert_eq!(b["snapshot"]["switches"]["discharging"], false, "{b}");
    // a switch this board has not, a battery there is not, a bad body: named, nothing sent
    let (code, body) = post("7", &json, r#"{"switch": "charging", "on": true}"#);
    assert_eq!(code, 404, "{body}");
    let (code, body) = post("1", &json, r#"{"switch": "fan", "on": true}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not a switch"), "{body}");
    // no token, a wrong one, a form without the page's anti-forgery token, another site
    let (code, _) = post(
        "1",
        &[("Content-Type", "application/json")],
        r#"{"switch": "charging", "on": true}"#,
    );
    assert_eq!(code, 401);
    let wrong = [
        ("Authorization", "Bearer not-the-token"),
        ("Content-Type", "application/json"),
    ];
    let (code, _) = post("1", &wrong, r#"{"switch": "charging", "on": true}"#);
    assert_eq!(code, 401);
    let cookie = format!("jkmon_token={token}");
    let form = [
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let (code, body) = post("1", &form, "switch=charging&on=on&csrf=guess");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("anti-forgery"), "{body}");
    let foreign = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
        ("Origin", "http://evil.example"),
    ];
    let (code, _) = post("1", &foreign, r#"{"switch": "charging", "on": true}"#);
    assert_eq!(code, 403);
    assert_eq!(
        status()["batteries"][0]["snapshot"]["switches"]["charging"],
        false,
        "nothing refused was sent"
    );

    run.signal("TERM");
    assert!(run.wait_exit(Duration::from_secs(20)).success());
    assert_eq!(
        common::switch_writes(&db),
        [
            "Simulated BMS: charging=off by cli: confirmed",
            "Simulated BMS: discharging=off by api: confirmed"
        ]
    );

    // control off (the default), and control on without WEB_AUTH_TOKEN: refused with the fix
    for (env, expect) in [
        (
            vec![("WEB_BIND", "127.0.0.1:0"), ("WEB_AUTH_TOKEN", token)],
            "JK_BMS_CONTROL",
        ),
        (
            vec![("WEB_BIND", "127.0.0.1:0"), ("JK_BMS_CONTROL", "on")],
            "needs WEB_AUTH_TOKEN",
        ),
    ] {
        let mut run = jkmon(dir.path(), &db, &["run"], &env);
        let addr = run.web_address(Duration::from_secs(20));
        // the command line hears the service's refusal, with the fix
        let out = set_through(dir.path(), &addr, &env, &["1", "charging=on"]);
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(expect), "{e}");
        let (code, body) = http(
            &addr,
            "POST",
            "/api/v1/batteries/1/switches",
            &json,
            r#"{"switch": "charging", "on": true}"#,
        );
        assert_eq!(code, 403, "{body}");
        assert!(body.contains(expect), "{body}");
        run.signal("TERM");
        assert!(run.wait_exit(Duration::from_secs(20)).success());
    }
}

/// The demo a newcomer judges jkmon by agrees with itself: at every status the battery's
/// power as its (simulated) BMS reports it is the inverter's PV − load − its own 40 W + grid,
/// within what changes between the BMS's reading and the inverter's poll; the inverter's
/// battery power says the same; today's energy balances the same way; and no counter — the
/// inverter's PV energy, the BMS's cycle capacity, jkmon's energy — goes back across a restart.
#[test]
fn the_demo_balances_and_its_counters_only_grow_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let env = [("JK_SIM_INVERTER_SEC", "1"), ("JK_BMS_POLL_INTERVAL", "1")];
    let (mut run, addr) = demo_with_web(dir.path(), &db, &env);
    let status_of = |addr: &str| -> Value {
        let (code, body) = http_get(addr, "/api/v1/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let number = |v: &Value| -> f64 {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or_else(|| panic!("not a number: {v}"))
    };
    // the demo's own loss (LOSS_W), and what may change between two readings 1 s apart (the
    // load moves at most 250 W a minute, the sun less)
    let loss_w = jkmon::transport::sim::plant::LOSS_W;
    let tolerance_w = 20.0;
    let mut checked = 0;
    for _ in 0..40 {
        run.wait_for_log(Duration::from_secs(20), "merged into readings #");
        let s = status_of(&addr);
        let (Some(p), Some(b)) = (
            s["inverter"]["payload"].as_object(),
            s["batteries"][0]["snapshot"].as_object(),
        ) else {
            continue;
        };
        let keys = [
            "pv_input_power",
            "ac_output_power",
            "grid_power",
            "inverter_battery_power",
        ];
        if keys.iter().any(|k| p.get(*k).is_none_or(|v| v == "N/A")) {
            continue; // a partial poll (the demo dongle drops a request now and then)
        }
        let (pv, load, grid) = (
            number(&p["pv_input_power"]),
            number(&p["ac_output_power"]),
            number(&p["grid_power"]),
        );
        let bms_w = number(&b["power_w"]);
        let flow_w = pv - load - loss_w + grid;
        assert!(
            (bms_w - flow_w).abs() <= tolerance_w,
            "PV {pv} − load {load} − {loss_w} + grid {grid} = {flow_w} W, the BMS says {bms_w} W"
        );
        assert!((number(&p["inverter_battery_power"]) - flow_w).abs() <= 1.0);
        checked += 1;
        if checked >= 5 {
            break;
        }
    }
    assert!(checked >= 5, "only {checked} whole polls");
    // today's energy: charged − discharged = PV − load − loss + import − export, to within
    // what two counts of rows a few seconds apart may differ by
    let (_, body) = http_get(&addr, "/api/v1/energy?days=1");
    let energy: Value = serde_json::from_str(&body).unwrap();
    let today = energy["days"].as_array().unwrap().last().unwrap().clone();
    let kwh = |k: &str| today[k].as_f64().unwrap_or(0.0);
    let battery = kwh("charged_kwh") - kwh("discharged_kwh");
    let inverter =
        kwh("pv_kwh") - kwh("load_kwh") + kwh("grid_import_kwh") - kwh("grid_export_kwh");
    assert!(
        battery <= inverter + 0.002 && battery >= inverter - 0.004,
        "battery {battery} kWh, inverter side {inverter} kWh: {today}"
    );
    // the counters before a restart, and after
    let counters = |s: &Value| -> [f64; 4] {
        let b = &s["batteries"][0];
        [
            number(&s["inverter_poller"]["values"]["pv_energy_total_kwh"]),
            number(&b["snapshot"]["cycle_capacity_ah"]),
            number(&b["energy"]["charged_kwh"]),
            number(&b["energy"]["discharged_kwh"]),
        ]
    };
    let before = counters(&status_of(&addr));
    run.signal("TERM");
    assert!(run.wait_exit(Duration::from_secs(20)).success());
    let (mut run, addr) = demo_with_web(dir.path(), &db, &env);
    run.wait_for_log(Duration::from_secs(20), "merged into readings #");
    run.wait_for_log(Duration::from_secs(20), "merged into readings #");
    let after = counters(&status_of(&addr));
    for (i, name) in ["PV energy total", "cycle capacity", "charged", "discharged"]
        .iter()
        .enumerate()
    {
        assert!(
            after[i] >= before[i],
            "{name}: {} then {}",
            before[i],
            after[i]
        );
    }
    run.signal("TERM");
    assert!(run.wait_exit(Duration::from_secs(20)).success());
}

/// The open sockets of process `pid`.
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Its resident memory, kB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Clients that ask for a long `/history` and then stop reading cannot stall the service:
/// at most a few streams hold a reader (the others are told to come back), health and status
/// keep answering at once, the readers hold no read transaction while they wait (the WAL
/// checkpoints past them), memory stays small, and the server closes the stalled connections.
/// Before, each held a blocking thread, a database connection and an open read transaction
/// until the client read on: 512 of them made 516 threads and 555 MB, and health timed out.
#[test]
fn clients_that_stop_reading_cannot_stall_the_service() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    // two days of rows: a /history?days=30 answer of about 20 MB
    let fill = common::process::jkmon(dir.path(), &["fill-demo", "--days", "2"])
        .env("DB_PATH", &db)
        .output()
        .unwrap();
    assert!(
        fill.status.success(),
        "{}",
        String::from_utf8_lossy(&fill.stderr)
    );
    let (mut run, addr) = demo_with_web(dir.path(), &db, &[("JK_BMS_POLL_INTERVAL", "1")]);
    let pid = run.pid();
    // (the demo's own dongle link is up by then)
    run.wait_for_log(Duration::from_secs(20), "merged into readings #");
    run.wait_for_log(Duration::from_secs(20), "merged into readings #");
    let idle_sockets = sockets_of(pid);
    // 20 clients ask, and never read
    let stalled: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /history?days=30 HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    // the service goes on: health and status answer, every time
    for _ in 0..20 {
        run.wait_for_log(Duration::from_secs(20), "merged into readings #");
        let (code, _) = http_get(&addr, "/api/v1/health");
        assert_eq!(code, 200);
        let (code, _) = http_get(&addr, "/api/v1/status");
        assert_eq!(code, 200);
    }
    // no reader holds a read transaction while its client does not read: a checkpoint goes
    // through the whole WAL
    let conn = Connection::open(&db).unwrap();
    let (busy, log, done): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((busy, done), (0, log), "the WAL could not be checkpointed");
    let rss = rss_kb(pid);
    assert!(rss < 60_000, "{rss} kB with 20 stalled clients");
    // the server closes them once a write has waited 20 s (WRITE_TIMEOUT)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sockets_of(pid) > idle_sockets {
        assert!(
            std::time::Instant::now() < deadline,
            "{} sockets open, {idle_sockets} before the clients",
            sockets_of(pid)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(stalled);
    run.signal("TERM");
    assert!(run.wait_exit(Duration::from_secs(20)).success());
}

/// A database file jkmon may not write, in a directory it may: jkmon says so at start with
/// the store's advice — the file, the user jkmon runs as, the `chown` that fixes it — not
/// SQLite's bare "attempt to write a readonly database". As root the file is not read-only,
/// so the test runs jkmon as `nobody` there (setpriv).
#[test]
fn a_read_only_database_at_start_is_named_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    written_by_a_poller(dir.path(), &db);
    for f in [
        db.clone(),
        dir.path().join("inverter.db-wal"),
        dir.path().join("inverter.db-shm"),
    ] {
        if f.exists() {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
    }
    // the directory stays writable (SQLite makes its -wal and -shm files there): only the file
    // itself is read-only, so opening it works and the first write fails
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_jkmon"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_jkmon"))
    };
    let out = cmd
        .args(["poll"])
        .current_dir(dir.path())
        .env("JK_BMS_TRANSPORT", "sim")
        .env("DB_PATH", &db)
        .env_remove("JK_BMS_ADDRESS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(db.to_str().unwrap()), "{err}");
    assert!(
        err.contains("is read-only for the user jkmon runs as"),
        "{err}"
    );
    assert!(err.contains("chown"), "{err}");
}
