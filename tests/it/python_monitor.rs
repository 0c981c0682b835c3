//! What the Python inverter monitor's own programs see beside jkmon on one SQLite file: its
//! poller inserting rows with naive UTC `created_at`, its bot deciding the grid from the newest
//! row, its web's `/history` comparing `created_at` with SQLite's UTC clock — played by
//! `tests/support/python_monitor.py` exactly as they do it — next to the real `jkmon poll` on
//! the simulated BMS, in `TZ=Europe/Kyiv` (so a local offset would show).

use crate::common;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::Running;
use rusqlite::Connection;
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";
const LONG: Duration = Duration::from_secs(30);

fn python_available() -> bool {
    common::have_program(PYTHON, &["-c", "import sqlite3, json"])
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/python_monitor.py")
}

/// The Python monitor's table, as its data_store creates it.
fn python_table(db: &Path) {
    Connection::open(db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS readings (id INTEGER PRIMARY KEY AUTOINCREMENT,
                 created_at TEXT NOT NULL, payload TEXT, error TEXT);",
        )
        .unwrap();
}

fn python(args: &[&str]) -> Running {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(script())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Running::spawn(cmd)
}

/// The Python poller inserting a row every 0.2 s into `db` (its table made as its data_store
/// makes it), once its first row is in.
fn poller_running(db: &Path) -> Running {
    python_table(db);
    let mut poller = python(&["poller", db.to_str().unwrap(), "0.2"]);
    poller.wait_for(LONG, "the poller's first row", |v| v["id"].is_i64());
    poller
}

/// Stops the Python poller (its stop file) and waits for it to exit.
fn stop_poller(poller: &mut Running, db: &Path) {
    std::fs::write(format!("{}.stop-poller", db.display()), b"").unwrap();
    poller.wait_exit(LONG);
}

/// `jkmon poll` on the simulated BMS, in Kyiv's time zone.
fn jkmon_poll(dir: &Path, db: &Path, env: &[(&str, &str)]) -> Running {
    let mut cmd = common::process::jkmon(dir, &["poll"]);
    cmd.env("JK_BMS_TRANSPORT", "sim")
        .env("DB_PATH", db)
        .env("JK_SIM_INTERVAL_MS", "50")
        .env("TZ", "Europe/Kyiv")
        .envs(env.iter().copied());
    Running::spawn(cmd)
}

fn payload(db: &Path, id: i64) -> Value {
    let conn = Connection::open(db).unwrap();
    let text: String = conn
        .query_row("SELECT payload FROM readings WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn count(db: &Path, sql: &str) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

const OWN_ROWS: &str =
    "SELECT COUNT(*) FROM readings WHERE json_valid(payload) AND json_extract(payload, '$.source') = 'jkmon'";

/// Stops the Python bot and returns every grid state it announced.
fn bot_states(bot: &mut Running, db: &Path) -> Vec<Value> {
    std::fs::write(format!("{}.stop-bot", db.display()), b"").unwrap();
    let seen = RefCell::new(Vec::new());
    bot.wait_for(LONG, "the Python bot to stop", |v| {
        seen.borrow_mut().push(v.clone());
        v["stopped"] == true
    });
    seen.into_inner()
        .into_iter()
        .filter(|v| v.get("grid").is_some())
        .collect()
}

#[test]
fn a_quiet_inverter_is_never_reported_as_a_grid_outage_and_a_stopped_jkmon_merges_nothing() {
    if !python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    let db_s = db.to_str().unwrap();
    let mut poller = poller_running(&db);
    let mut bot = python(&["bot", db_s, "0.05"]);
    bot.wait_for(LONG, "the bot's first look", |v| v["grid"] == "up");

    let mut jkmon = jkmon_poll(
        dir.path(),
        &db,
        &[
            ("JK_BMS_POLL_INTERVAL", "0.5"),
            ("INVERTER_TIMEOUT_SEC", "1"),
        ],
    );
    let decided = jkmon.wait_for_log(LONG, "readings: ");
    assert!(
        decided.contains("the table holds inverter rows"),
        "{decided}"
    );
    jkmon.wait_for_log(LONG, "merged into readings #");

    // the inverter poller stops (maintenance, a crash loop, a container that is down)
    stop_poller(&mut poller, &db);
    jkmon.wait_for_log(LONG, "readings untouched: the inverter's newest row");
    for _ in 0..4 {
        jkmon.wait_for_log(LONG, "readings untouched");
    }
    assert_eq!(
        count(&db, OWN_ROWS),
        0,
        "no battery-only row beside an inverter"
    );

    // the poller comes back: its rows carry the battery again, from their first moment
    std::fs::remove_file(format!("{db_s}.stop-poller")).unwrap();
    let mut poller = python(&["poller", db_s, "0.2"]);
    let row = poller.wait_for(LONG, "a new row", |v| v["id"].is_i64());
    let id = row["id"].as_i64().unwrap();
    assert_eq!(payload(&db, id)["bms_name"], "Simulated BMS");

    // jkmon stops cleanly: the next row the poller inserts carries no battery keys
    jkmon.signal("TERM");
    assert!(jkmon.wait_exit(LONG).success(), "{:?}", jkmon.stderr_seen);
    // a row the poller reports now may have been inserted while jkmon was still stopping:
    // the first one after the newest row at jkmon's exit counts
    let last = count(&db, "SELECT MAX(id) FROM readings");
    let after = poller.wait_for(LONG, "a row after jkmon stopped", |v| {
        v["id"].as_i64().is_some_and(|id| id > last)
    });
    let after = payload(&db, after["id"].as_i64().unwrap());
    assert!(
        after.get("bms_name").is_none() && after.get("battery_soc") == Some(&"64".into()),
        "battery keys lingered after jkmon stopped: {after}"
    );
    stop_poller(&mut poller, &db);

    let states = bot_states(&mut bot, &db);
    assert!(
        states.iter().all(|s| s["grid"] == "up"),
        "the Python bot was told of an outage that never happened: {states:?}"
    );
}

#[test]
fn a_row_there_before_jkmon_started_is_never_rewritten() {
    if !python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    python_table(&db);
    let conn = Connection::open(&db).unwrap();
    // the poller's last rows before it stopped: naive UTC (23 min ago), and one a moment ago
    let old =
        "{\"grid_voltage\": \"231.4\", \"grid_power\": \"412\", \"battery_voltage\": \"52.1\"}";
    let fresh =
        "{\"grid_voltage\": \"230.0\", \"grid_power\": \"398\", \"battery_voltage\": \"52.0\"}";
    let naive = |ago_s: i64| {
        (chrono::Utc::now() - chrono::Duration::seconds(ago_s))
            .naive_utc()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    conn.execute(
        "INSERT INTO readings (created_at, payload) VALUES (?1, ?2)",
        [naive(23 * 60), old.into()],
    )
    .unwrap();
    let mut jkmon = jkmon_poll(
        dir.path(),
        &db,
        &[
            ("JK_BMS_POLL_INTERVAL", "0.5"),
            ("INVERTER_TIMEOUT_SEC", "60"),
        ],
    );
    let line = jkmon.wait_for_log(LONG, "readings untouched");
    assert!(line.contains("before jkmon started"), "{line}");
    // jkmon stops; the poller's last row comes a moment later; jkmon starts again: that fresh
    // row was there before the start, so it is never touched either
    jkmon.signal("TERM");
    assert!(jkmon.wait_exit(LONG).success());
    conn.execute(
        "INSERT INTO readings (created_at, payload) VALUES (?1, ?2)",
        [naive(2), fresh.into()],
    )
    .unwrap();
    let mut jkmon = jkmon_poll(
        dir.path(),
        &db,
        &[
            ("JK_BMS_POLL_INTERVAL", "0.5"),
            ("INVERTER_TIMEOUT_SEC", "60"),
        ],
    );
    for _ in 0..3 {
        let line = jkmon.wait_for_log(LONG, "readings untouched");
        assert!(line.contains("before jkmon started"), "{line}");
    }
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT id, payload FROM readings ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, vec![(1, old.to_string()), (2, fresh.to_string())]);
}

#[test]
fn the_first_snapshot_reaches_the_database_at_once_not_an_interval_later() {
    if !python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    let mut poller = poller_running(&db);
    // the default 30 s interval: the first snapshot must not wait for it
    let started = std::time::Instant::now();
    let mut jkmon = jkmon_poll(dir.path(), &db, &[("JK_BMS_POLL_INTERVAL", "30")]);
    jkmon.wait_for_log(Duration::from_secs(20), "Simulated BMS: ");
    let with_battery = poller.wait_for(
        Duration::from_secs(20),
        "a poller row with the battery merged in",
        |v| {
            payload(&db, v["id"].as_i64().unwrap())
                .get("bms_name")
                .is_some()
        },
    );
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(20),
        "the first snapshot took {waited:?}"
    );
    let p = payload(&db, with_battery["id"].as_i64().unwrap());
    assert_eq!(p["grid_voltage"].as_str().map(|s| s.len() > 2), Some(true));
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM bms_latest"),
        1,
        "the views' latest snapshot is there too"
    );
    stop_poller(&mut poller, &db);
}

#[test]
fn a_bms_only_table_gets_rows_in_the_python_format_that_its_history_query_reads_right() {
    if !python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    let db_s = db.to_str().unwrap();
    let mut jkmon = jkmon_poll(dir.path(), &db, &[("JK_BMS_POLL_INTERVAL", "0.3")]);
    let decided = jkmon.wait_for_log(LONG, "readings: ");
    assert!(decided.contains("never held an inverter row"), "{decided}");
    for _ in 0..3 {
        jkmon.wait_for_log(LONG, "inserted (no inverter data)");
    }
    let conn = Connection::open(&db).unwrap();
    let created: Vec<String> = conn
        .prepare("SELECT created_at FROM readings ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(created.len() >= 3);
    for c in &created {
        let t = chrono::NaiveDateTime::parse_from_str(c, "%Y-%m-%dT%H:%M:%S")
            .unwrap_or_else(|e| panic!("{c} is not naive UTC to the second: {e}"))
            .and_utc();
        assert!((chrono::Utc::now() - t).num_seconds().abs() < 30, "{c}");
    }
    // the Python web's /history?days=1 holds them; a day ahead of SQLite's UTC clock does not
    // (it compares text, so a row's date must be the UTC date)
    let recent = python(&["history", db_s, "-1 days"]).wait_for(LONG, "rows", |_| true);
    assert!(recent["rows"].as_array().unwrap().len() >= 3, "{recent}");
    let ahead = python(&["history", db_s, "+1 days"]).wait_for(LONG, "rows", |_| true);
    assert_eq!(ahead["rows"].as_array().unwrap().len(), 0, "{ahead}");
    jkmon.signal("TERM");
    assert!(jkmon.wait_exit(LONG).success());
}

#[test]
fn jkmon_doctor_says_whether_jkmon_will_insert_rows_of_its_own_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    let doctor = || {
        let out = common::process::jkmon(dir.path(), &["doctor"])
            .env("JK_BMS_TRANSPORT", "sim")
            .env("WEB_BIND", "127.0.0.1:0")
            .env("DB_PATH", &db)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .find(|l| l.contains("readings:"))
            .unwrap_or_else(|| panic!("no readings line in:\n{text}"))
            .to_string()
    };
    assert!(doctor().contains("until an inverter writes into it"));
    python_table(&db);
    assert!(doctor().contains("never held an inverter row"));
    Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO readings (created_at, payload) VALUES ('2026-11-27T04:27:04', '{\"grid_voltage\": \"230.0\"}')",
            [],
        )
        .unwrap();
    let line = doctor();
    assert!(
        line.contains("holds inverter rows") && line.contains("#1, 2026-11-27T04:27:04"),
        "{line}"
    );
}
