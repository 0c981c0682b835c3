//! The store on a real SQLite file: the merge into the inverter's `readings`, the trigger that
//! serves rows other programs insert, BMS-only rows, staleness, and history downsampling and
//! retention with injected time.

use crate::common;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Local};
use jkmon::battery::soc::{estimator, SocSource, VoltageCurve};
use jkmon::battery::Snapshot;
use jkmon::protocol::CellInfo;
use jkmon::store::{history, Battery, Bucket, ReadingsAction, Store, StoreConfig, Update};
use rusqlite::Connection;
use serde_json::{json, Map, Value};

/// 16 cells from `base_mv` upwards (delta 15 mV), this current, T1 = 21.5 °C.
fn snapshot(current_ma: i32, base_mv: u32) -> Snapshot {
    let mut c = CellInfo::example();
    c.cell_voltages_uv = (0..16).map(|i| (base_mv + i) * 1000).collect();
    c.cell_resistances_uohm = vec![60_000; 16];
    c.total_voltage_mv = (0..16).map(|i| base_mv + i).sum();
    c.current_ma = Some(current_ma);
    c.temperatures.sensors_dc = [Some(215), None, None, None, None];
    c.soc_pct = Some(77);
    Snapshot::new(
        c,
        None,
        None,
        estimator(SocSource::Bms, &VoltageCurve::default()).as_ref(),
    )
}

fn batteries(n: usize) -> Vec<Battery> {
    (1..=n)
        .map(|p| Battery {
            position: p,
            name: format!("Pack {p}"),
            address: Some(format!("C8:47:80:00:00:0{p}")),
        })
        .collect()
}

fn open(path: &Path, n: usize) -> Store {
    let mut store = Store::open(path, StoreConfig::default()).unwrap();
    store.register(&batteries(n), 0).unwrap();
    store
}

/// Commits one snapshot per battery (battery p gets `snapshots[p-1]`), taken at `taken_at`.
fn commit(store: &mut Store, snapshots: &[Snapshot], taken_at: DateTime<Local>) -> ReadingsAction {
    let buckets: Vec<Bucket> = snapshots
        .iter()
        .map(|s| {
            let mut b = Bucket::default();
            b.add(s);
            b
        })
        .collect();
    let updates: Vec<Update> = snapshots
        .iter()
        .zip(&buckets)
        .enumerate()
        .map(|(i, (s, b))| Update {
            position: i + 1,
            snapshot: s,
            taken_at,
            bucket: b,
            fresh: true,
            energy: &jkmon::store::energy::NO_ENERGY,
        })
        .collect();
    store.commit(&updates, Local::now()).unwrap()
}

/// An inverter row as the Python poller writes it.
fn inverter_payload(grid_v: f64) -> Map<String, Value> {
    json!({
        "grid_voltage": format!("{grid_v:.1}"), "grid_power": "412", "grid_current": "1.79",
        "ac_output_voltage": "230.1", "ac_output_freq": "50.00", "ac_output_power": "398",
        "ac_output_current": "1.7", "battery_voltage": "52.1", "battery_current": "-3.0",
        "battery_power": "-156", "battery_soc": "64", "battery_charge_power": "14",
        "pv_input_voltage": "0.0", "pv_input_power": "0", "pv_input_current": "0.0",
        "temperature": "31", "status_text": "LINE",
    })
    .as_object()
    .unwrap()
    .clone()
}

fn insert_inverter_row(conn: &Connection, payload: &Map<String, Value>) -> i64 {
    conn.execute(
        "INSERT INTO readings (created_at, payload) VALUES (?1, ?2)",
        rusqlite::params![
            Local::now().to_rfc3339(),
            Value::Object(payload.clone()).to_string()
        ],
    )
    .unwrap();
    conn.last_insert_rowid()
}

fn payload(conn: &Connection, id: i64) -> Map<String, Value> {
    let text: String = conn
        .query_row("SELECT payload FROM readings WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn assert_inverter_keys_kept(original: &Map<String, Value>, merged: &Map<String, Value>) {
    let lost = common::lost_inverter_keys(original, merged);
    assert!(
        lost.is_empty(),
        "inverter values lost: {lost:?} in {merged:?}"
    );
}

#[test]
fn the_merge_keeps_every_inverter_key_and_adds_the_bms_keys_to_the_latest_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let mut store = open(&path, 2);
    let inverter = Connection::open(&path).unwrap();
    let older = insert_inverter_row(&inverter, &inverter_payload(229.0));
    let original = inverter_payload(231.4);
    let latest = insert_inverter_row(&inverter, &original);

    let action = commit(
        &mut store,
        &[snapshot(5_250, 3_280), snapshot(-12_340, 3_300)],
        Local::now(),
    );
    assert_eq!(action, ReadingsAction::Updated(latest));
    assert_eq!(
        count(&inverter, "SELECT COUNT(*) FROM readings"),
        2,
        "no row inserted"
    );

    let p = payload(&inverter, latest);
    assert_inverter_keys_kept(&original, &p);
    // battery 1, unprefixed: 16 cells 3.280..3.295 V = 52.600 V, +5.25 A
    assert_eq!(p["battery_voltage"], "52.6");
    assert_eq!(p["battery_current"], "5.2");
    assert_eq!(p["battery_power"], format!("{:.0}", 52.6 * 5.25));
    assert_eq!(p["battery_soc"], "77");
    assert_eq!(p["temperature"], "22"); // 21.5 → "22" like Python's "%.0f" (ties to even)
    assert_eq!(p["bms_cell_count"], 16);
    assert_eq!(p["bms_cell_min_v"], "3.280");
    assert_eq!(p["bms_cell_max_v"], "3.295");
    assert_eq!(p["bms_cell_delta_v"], "0.015");
    assert_eq!(p["bms_name"], "Pack 1");
    assert_eq!(p["bms_address"], "C8:47:80:00:00:01");
    // battery 2, prefixed
    assert_eq!(p["battery2_battery_voltage"], "52.9"); // 16 × 3.300 V + 0.120 V
    assert_eq!(p["battery2_battery_current"], "-12.3");
    assert_eq!(p["battery2_bms_name"], "Pack 2");
    // the older row is history: untouched
    assert_eq!(payload(&inverter, older), inverter_payload(229.0));

    // a second merge with fresher values replaces them, and keeps the inverter's values
    commit(
        &mut store,
        &[snapshot(1_000, 3_290), snapshot(0, 3_300)],
        Local::now(),
    );
    let p = payload(&inverter, latest);
    assert_eq!(p["battery_voltage"], "52.8");
    assert_eq!(p["battery_current"], "1.0");
    assert_inverter_keys_kept(&original, &p);
}

#[test]
fn rows_another_connection_inserts_later_carry_the_fresh_bms_keys_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let mut store = open(&path, 1);
    let inverter = Connection::open(&path).unwrap();
    insert_inverter_row(&inverter, &inverter_payload(230.0));
    commit(&mut store, &[snapshot(2_000, 3_300)], Local::now());

    // the inverter poller inserts new rows; nobody calls jkmon in between
    for i in 0..5 {
        let original = inverter_payload(230.0 + f64::from(i));
        let id = insert_inverter_row(&inverter, &original);
        let p = payload(&inverter, id);
        assert_eq!(
            p["battery_voltage"], "52.9",
            "row {id} got the BMS keys at insert"
        );
        assert_eq!(p["bms_cell_count"], 16);
        assert_inverter_keys_kept(&original, &p);
    }
    // an error row stays an error row: no payload invented, no key added
    inverter
        .execute(
            "INSERT INTO readings (created_at, payload, error) VALUES (?1, NULL, 'timeout')",
            [Local::now().to_rfc3339()],
        )
        .unwrap();
    let (payload_null, error): (bool, String) = inverter
        .query_row(
            "SELECT payload IS NULL, error FROM readings ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(payload_null);
    assert_eq!(error, "timeout");
    // and jkmon leaves the error row alone rather than inserting a battery-only row
    let action = commit(&mut store, &[snapshot(2_000, 3_300)], Local::now());
    assert!(
        matches!(action, ReadingsAction::LeftErrorRow(_)),
        "{action:?}"
    );
    assert_eq!(count(&inverter, "SELECT COUNT(*) FROM readings"), 7);
    // a payload that is not JSON is stored as the inverter wrote it
    inverter
        .execute(
            "INSERT INTO readings (created_at, payload) VALUES ('x', 'not json')",
            [],
        )
        .unwrap();
    let text: String = inverter
        .query_row(
            "SELECT payload FROM readings ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(text, "not json");
}

#[test]
fn a_python_inverter_poller_gets_the_bms_keys_through_the_trigger() {
    if !common::have_program("/usr/bin/python3", &["-c", "import sqlite3, json"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let mut store = open(&path, 1);
    commit(&mut store, &[snapshot(-4_000, 3_310)], Local::now());
    // as the Python poller does it: a new connection, one INSERT, close
    let script = r#"
import json, sqlite3, sys
from datetime import datetime, timezone, timedelta
c = sqlite3.connect(sys.argv[1])
payload = {"grid_voltage": "231.4", "battery_voltage": "52.1", "status_text": "LINE"}
c.execute("INSERT INTO readings (created_at, payload) VALUES (?, ?)",
          (datetime.now(timezone(timedelta(hours=2))).isoformat(), json.dumps(payload)))
c.commit()
row = c.execute("SELECT payload FROM readings ORDER BY id DESC LIMIT 1").fetchone()
print(row[0])
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script, path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["grid_voltage"], "231.4");
    assert_eq!(p["inverter_battery_voltage"], "52.1");
    assert_eq!(p["battery_voltage"], "53.1");
    assert_eq!(p["battery_current"], "-4.0");
    assert_eq!(p["status_text"], "LINE");
}

#[test]
fn stale_bms_data_is_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let mut store = open(&path, 2);
    let inverter = Connection::open(&path).unwrap();
    let original = inverter_payload(230.0);
    let id = insert_inverter_row(&inverter, &original);

    // battery 1's snapshot is older than the freshness window (60 s): not merged anywhere
    let old = Local::now() - chrono::Duration::seconds(120);
    let action = commit(&mut store, &[snapshot(9_000, 3_350)], old);
    assert_eq!(action, ReadingsAction::NothingFresh);
    assert_eq!(payload(&inverter, id), original);
    let later = insert_inverter_row(&inverter, &original);
    assert_eq!(
        payload(&inverter, later),
        original,
        "the trigger adds nothing stale"
    );

    // fresh, then the BMS goes offline: new rows no longer get its keys
    commit(&mut store, &[snapshot(9_000, 3_350)], Local::now());
    let with = insert_inverter_row(&inverter, &original);
    assert_eq!(payload(&inverter, with)["battery_current"], "9.0");
    store.mark_stale(1).unwrap();
    let without = insert_inverter_row(&inverter, &original);
    assert_eq!(payload(&inverter, without), original);
}

#[test]
fn with_no_inverter_jkmon_writes_its_own_rows_without_inverter_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bms-only.db");
    let mut store = open(&path, 2);
    let mut ids = Vec::new();
    for _ in 0..3 {
        match commit(
            &mut store,
            &[snapshot(1_500, 3_300), snapshot(-500, 3_290)],
            Local::now(),
        ) {
            ReadingsAction::Inserted(id) => ids.push(id),
            other => panic!("expected an own row, got {other:?}"),
        }
    }
    let conn = store.connection();
    assert_eq!(count(conn, "SELECT COUNT(*) FROM readings"), 3);
    let p = payload(conn, ids[2]);
    assert_eq!(p["source"], "jkmon");
    assert_eq!(p["battery_current"], "1.5");
    assert_eq!(p["battery2_battery_current"], "-0.5");
    for key in [
        "grid_voltage",
        "grid_power",
        "status_text",
        "ac_output_power",
    ] {
        assert!(!p.contains_key(key), "{key} must not be invented");
    }
    assert!(!p.keys().any(|k| k.starts_with("inverter_")));
    // created_at: naive UTC to the second, as the Python poller writes it on a new table
    let created: String = conn
        .query_row(
            "SELECT created_at FROM readings WHERE id = ?1",
            [ids[0]],
            |r| r.get(0),
        )
        .unwrap();
    let t = chrono::NaiveDateTime::parse_from_str(&created, "%Y-%m-%dT%H:%M:%S")
        .unwrap_or_else(|e| panic!("{created}: {e}"))
        .and_utc();
    assert!(
        (chrono::Utc::now() - t).num_seconds().abs() < 5,
        "{created}"
    );
}

#[test]
fn an_inverter_that_stopped_writing_long_ago_is_neither_updated_nor_followed_by_own_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let mut store = open(&path, 1);
    let conn = Connection::open(&path).unwrap();
    let original = inverter_payload(230.0);
    conn.execute(
        "INSERT INTO readings (created_at, payload) VALUES ('2025-01-01T10:00:00+02:00', ?1)",
        [Value::Object(original.clone()).to_string()],
    )
    .unwrap();
    let action = commit(&mut store, &[snapshot(1_000, 3_300)], Local::now());
    assert!(matches!(action, ReadingsAction::Quiet(_)), "{action:?}");
    assert_eq!(payload(&conn, 1), original, "old history is not rewritten");
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM readings"),
        1,
        "no battery-only row beside an inverter: it would read as a grid outage"
    );
    assert!(!store.inserts_own_rows());
}

#[test]
fn devices_latest_snapshot_and_state_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let mut store = open(&path, 1);
    store
        .set_state(1, jkmon::session::State::Streaming, "", 5)
        .unwrap();
    commit(&mut store, &[snapshot(1_000, 3_300)], Local::now());
    let conn = store.connection();
    let (name, state, cells, variant): (String, String, i64, String) = conn
        .query_row(
            "SELECT name, state, cell_count, variant FROM bms_devices WHERE device_key = 'C8:47:80:00:00:01'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (name.as_str(), state.as_str(), cells, variant.as_str()),
        ("Pack 1", "streaming", 16, "jk02_32s")
    );
    let latest: String = conn
        .query_row("SELECT snapshot FROM bms_latest", [], |r| r.get(0))
        .unwrap();
    let latest: Value = serde_json::from_str(&latest).unwrap();
    assert_eq!(latest["snapshot"]["cell_count"], 16);
    assert_eq!(latest["snapshot"]["current_a"], 1.0);
    assert_eq!(
        count(conn, "SELECT COUNT(*) FROM bms_history WHERE bucket_s = 0"),
        1
    );
}

#[test]
fn an_existing_anchor_database_is_migrated_without_touching_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    {
        // the Python monitor's table, with a row in it
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT,
                 created_at TEXT NOT NULL, payload TEXT, error TEXT);
             INSERT INTO readings (created_at, payload) VALUES ('2026-01-16T21:32:00+02:00', '{\"grid_voltage\": \"231.4\"}');
             INSERT INTO readings (created_at, error) VALUES ('2026-01-16T21:32:10+02:00', 'timeout');",
        )
        .unwrap();
    }
    let store = open(&path, 1);
    let conn = store.connection();
    let rows: Vec<(i64, Option<String>, Option<String>)> = conn
        .prepare("SELECT id, payload, error FROM readings ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (1, Some("{\"grid_voltage\": \"231.4\"}".into()), None),
            (2, None, Some("timeout".into()))
        ]
    );
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let index: i64 = count(
        conn,
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'readings' AND sql LIKE '%created_at%'",
    );
    assert_eq!(index, 1);
}

#[test]
fn a_missing_database_directory_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/inverter.db");
    let e = Store::open(&path, StoreConfig::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("no/such/dir") && e.contains("mkdir -p"), "{e}");
    assert!(!dir.path().join("no").exists(), "nothing was created");
}

/// A day starting at midnight UTC, in ms.
const DAY0_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MIN_MS: i64 = 60_000;

#[test]
fn downsampling_keeps_averages_and_extremes_and_retention_keeps_what_it_promises() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let mut store = open(&path, 1);
    let device: i64 = store
        .connection()
        .query_row("SELECT id FROM bms_devices", [], |r| r.get(0))
        .unwrap();
    // 10 days of interval rows every 30 s; the current sweeps -20 A … +20 A each hour, and one
    // 150 A spike at day 5, 10:07:30.
    let spike_ms = DAY0_MS + 5 * 86_400_000 + 10 * 3_600_000 + 7 * MIN_MS + 30_000;
    {
        let tx = store.connection().unchecked_transaction().unwrap();
        let mut ts = DAY0_MS;
        while ts < DAY0_MS + 10 * 86_400_000 {
            let minute = (ts - DAY0_MS) / MIN_MS % 60;
            let ma = if ts == spike_ms {
                150_000
            } else {
                (minute as i32 - 30) * 666
            };
            let mut b = Bucket::default();
            b.add(&snapshot(ma, 3_300));
            b.to_row(device, 0, ts).insert(&tx).unwrap();
            ts += 30_000;
        }
        tx.commit().unwrap();
    }
    let now = DAY0_MS + 10 * 86_400_000;
    let m = store.maintain(now).unwrap();
    assert_eq!(
        m.rows_made,
        10 * 288 + 10 * 24,
        "every complete bucket made once"
    );
    let conn = store.connection();
    // raw rows: only the last 7 days
    let oldest_raw = count(
        conn,
        "SELECT MIN(ts_ms) FROM bms_history WHERE bucket_s = 0",
    );
    assert!(oldest_raw >= now - 7 * 86_400_000, "raw kept 7 days");
    assert_eq!(
        count(conn, "SELECT COUNT(*) FROM bms_history WHERE bucket_s = 0"),
        7 * 2_880
    );
    // the 5-minute bucket holding the spike: 10 samples, the spike as its max
    let spike_bucket = spike_ms / 300_000 * 300_000;
    let rows = history::rows(conn, device, 300, spike_bucket, spike_bucket + 1).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].samples, 10);
    assert_eq!(rows[0].current_max_ma, Some(150_000));
    // its average is the average of its samples: minutes 5..9 → (m-30)*666, the spike replacing one
    let expected: i64 = (0..10)
        .map(|i| {
            let ts = spike_bucket + i * 30_000;
            if ts == spike_ms {
                150_000
            } else {
                (((ts - DAY0_MS) / MIN_MS % 60) - 30) * 666
            }
        })
        .sum::<i64>();
    assert_eq!(
        rows[0].current_ma,
        Some((expected as f64 / 10.0).round() as i64)
    );
    assert_eq!(rows[0].cells_uv.len(), 16);
    assert_eq!(rows[0].cells_uv[15], 3_315_000);
    // the hour: 120 samples, the spike survives as the hour's maximum, the sweep's minimum too
    let hour = spike_ms / 3_600_000 * 3_600_000;
    let rows = history::rows(conn, device, 3_600, hour, hour + 1).unwrap();
    assert_eq!(rows[0].samples, 120);
    assert_eq!(rows[0].current_max_ma, Some(150_000));
    assert_eq!(rows[0].current_min_ma, Some(-30 * 666));
    assert_eq!(rows[0].cell_delta_max_uv, Some(15_000));

    // running it again makes nothing twice
    assert_eq!(store.maintain(now).unwrap().rows_made, 0);

    // 100 days later: 5-minute rows older than 90 days are gone, hourly rows stay
    let later = now + 100 * 86_400_000;
    store.maintain(later).unwrap();
    let conn = store.connection();
    assert_eq!(
        count(conn, "SELECT COUNT(*) FROM bms_history WHERE bucket_s = 0"),
        0
    );
    assert_eq!(
        count(
            conn,
            "SELECT COUNT(*) FROM bms_history WHERE bucket_s = 300"
        ),
        0
    );
    assert_eq!(
        count(
            conn,
            "SELECT COUNT(*) FROM bms_history WHERE bucket_s = 3600"
        ),
        240
    );
}

#[test]
fn the_inverters_rows_are_aggregated_for_charts_in_chunks_and_read_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let mut store = open(&path, 1);
    // 8 days of rows every 10 s, in the Python monitor's format (offset +02:00), grid power
    // = the minute of the hour; every 7th value "N/A"; an error row every 100
    let tz = chrono::FixedOffset::east_opt(2 * 3_600).unwrap();
    {
        let tx = store.connection().unchecked_transaction().unwrap();
        for i in 0..(8 * 8_640i64) {
            let t = DateTime::from_timestamp_millis(DAY0_MS + i * 10_000)
                .unwrap()
                .with_timezone(&tz);
            let created = t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
            if i % 100 == 99 {
                tx.execute(
                    "INSERT INTO readings (created_at, error) VALUES (?1, 'timeout')",
                    [&created],
                )
                .unwrap();
                continue;
            }
            let grid = if i % 7 == 0 {
                "N/A".to_string()
            } else {
                ((i * 10 / 60) % 60).to_string()
            };
            let payload =
                json!({"grid_power": grid, "ac_output_power": "300", "pv_input_power": "0"});
            tx.execute(
                "INSERT INTO readings (created_at, payload) VALUES (?1, ?2)",
                rusqlite::params![created, payload.to_string()],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let now = DAY0_MS + 8 * 86_400_000 + 120_000;
    // a week per run: two runs to catch up
    let first = store.maintain(now).unwrap();
    assert!(first.more, "{first:?}");
    let second = store.maintain(now).unwrap();
    assert!(!second.more, "{second:?}");
    let conn = store.connection();
    assert_eq!(
        count(
            conn,
            "SELECT COUNT(*) FROM inverter_history WHERE bucket_s = 300"
        ),
        8 * 288
    );
    assert_eq!(
        count(
            conn,
            "SELECT COUNT(*) FROM inverter_history WHERE bucket_s = 3600"
        ),
        8 * 24
    );
    // a 5-minute bucket: 30 rows minus error rows, "N/A" left out of the grid average
    let (rows, grid_avg, load_avg): (i64, f64, f64) = conn
        .query_row(
            "SELECT rows, grid_power_w, load_power_w FROM inverter_history WHERE bucket_s = 300 AND ts_ms = ?1",
            [DAY0_MS + 3_600_000],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let members: Vec<i64> = (360..390).filter(|i| i % 100 != 99).collect();
    assert_eq!(rows as usize, members.len());
    let grids: Vec<f64> = members
        .iter()
        .filter(|i| *i % 7 != 0)
        .map(|i| ((i * 10 / 60) % 60) as f64)
        .collect();
    assert!((grid_avg - grids.iter().sum::<f64>() / grids.len() as f64).abs() < 1e-9);
    assert_eq!(load_avg, 300.0);

    // the chart of the last 7 days by hour: from the hourly tier, equal to the raw rows
    let config = jkmon::store::read::ReadConfig {
        batteries: batteries(1),
        liveness: jkmon::session::Liveness {
            freshness: std::time::Duration::from_secs(60),
            mode: jkmon::session::ConnectMode::Persistent,
        },
        retention: jkmon::store::Retention::default(),
        inverter_max_gap: Duration::from_secs(30),
    };
    let to = DateTime::from_timestamp_millis(now).unwrap();
    let from = to - chrono::Duration::days(7);
    let view = jkmon::store::read::history(
        conn,
        &config,
        &[],
        from,
        to,
        3_600,
        DateTime::from_timestamp_millis(now).unwrap(),
    )
    .unwrap();
    let total: u32 = view.inverter.iter().map(|p| p.rows).sum();
    let from = view.from; // moved back to the start of its hour
    assert_eq!(from.timestamp() % 3_600, 0);
    let expected = count(
        conn,
        &format!(
            "SELECT COUNT(*) FROM readings WHERE error IS NULL AND CAST(strftime('%s', created_at) AS INTEGER) >= {} AND CAST(strftime('%s', created_at) AS INTEGER) < {}",
            from.timestamp(),
            to.timestamp()
        ),
    );
    assert_eq!(i64::from(total), expected);
    let max = view
        .inverter
        .iter()
        .filter_map(|p| p.grid_power_w.map(|r| r.max))
        .fold(f64::MIN, f64::max);
    assert_eq!(max, 59.0);
}

/// A new database at `path` holding the Python poller's table with 30 days of the inverter's
/// rows every 10 s (259,200), as the poller writes them (naive UTC `created_at`, every value a
/// string), ending `end_s`.
fn thirty_days_of_rows(path: &Path, end_s: i64) {
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT,
             created_at TEXT NOT NULL, payload TEXT, error TEXT);",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO readings (created_at, payload) VALUES (?1, ?2)")
            .unwrap();
        let mut p = inverter_payload(230.0);
        for i in 0..259_200i64 {
            let t = end_s - (259_200 - i) * 10;
            let created = DateTime::from_timestamp(t, 0)
                .unwrap()
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string();
            p.insert("grid_power".into(), Value::String((i % 900).to_string()));
            p.insert(
                "ac_output_power".into(),
                Value::String((i % 700).to_string()),
            );
            insert
                .execute(rusqlite::params![
                    created,
                    Value::Object(p.clone()).to_string()
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

#[test]
fn catching_up_on_a_month_of_inverter_rows_never_holds_the_write_lock_for_long() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let now_s = chrono::Utc::now().timestamp();
    thirty_days_of_rows(&path, now_s);
    let mut store = open(&path, 1);
    // the Python poller beside it: an INSERT on a new connection every 20 ms with its 5 s busy
    // timeout; how long each waited for the lock
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut waits = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && waits.len() < 100_000 {
                let started = std::time::Instant::now();
                let c = Connection::open(&path).unwrap();
                c.busy_timeout(Duration::from_secs(5)).unwrap();
                c.execute(
                    "INSERT INTO readings (created_at, payload) VALUES (datetime('now'), '{}')",
                    [],
                )
                .expect("the poller's insert gave up");
                waits.push(started.elapsed());
                std::thread::sleep(Duration::from_millis(20));
            }
            waits
        })
    };
    let mut chunks = 0;
    while store.maintain(now_s * 1000).unwrap().more {
        chunks += 1;
        assert!(chunks < 100, "the catch-up never ends");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let waits = poller.join().unwrap();
    let worst = waits.iter().max().copied().unwrap_or_default();
    // the design holds the lock for milliseconds; 1 s is the bound in the Python poller's
    // terms (it gives up at 5 s) with room for a slow machine
    assert!(
        worst < Duration::from_secs(1),
        "the poller waited {worst:?} for the write lock ({} inserts during {chunks} chunk(s))",
        waits.len()
    );
    assert!(waits.len() > 5, "the poller ran during the catch-up");
    let conn = store.connection();
    let hours = count(
        conn,
        "SELECT COUNT(*) FROM inverter_history WHERE bucket_s = 3600",
    );
    assert!((719..=721).contains(&hours), "{hours} hourly buckets");
}

/// The newest `bms_latest.taken_ms` of battery 1 once it differs from `before`, polling the
/// file from another connection for at most 10 s (the writer is another thread; the file is
/// what every reader sees).
fn latest_taken_ms_after(path: &Path, before: Option<i64>) -> Option<i64> {
    let conn = Connection::open(path).unwrap();
    for _ in 0..1_000 {
        let now: Option<i64> = conn
            .query_row("SELECT MAX(taken_ms) FROM bms_latest", [], |r| r.get(0))
            .unwrap();
        if now.is_some() && now != before {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[tokio::test]
async fn the_writer_commits_a_battery_at_once_when_it_arrives_and_when_it_comes_back() {
    use jkmon::store::writer::{Message, Writer};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let config = StoreConfig {
        interval: Duration::from_secs(3_600),
        ..StoreConfig::default()
    };
    let store = Store::open(&path, config).unwrap();
    let writer = Writer::start(store, batteries(1), None).unwrap();
    let t0 = Local::now() - chrono::Duration::seconds(5);
    writer.send(Message::Snapshot {
        position: 1,
        snapshot: std::sync::Arc::new(snapshot(1_000, 3_300)),
        taken_at: t0,
    });
    let first = tokio::task::spawn_blocking({
        let path = path.clone();
        move || latest_taken_ms_after(&path, None)
    })
    .await
    .unwrap();
    assert_eq!(
        first,
        Some(t0.timestamp_millis()),
        "the first snapshot is committed at once, not an hour later"
    );
    // the BMS goes away and comes back: its first snapshot is committed at once again
    writer.send(Message::State {
        position: 1,
        state: jkmon::session::State::Disconnected,
        detail: "link lost".into(),
        offline: true,
    });
    let t1 = Local::now();
    writer.send(Message::Snapshot {
        position: 1,
        snapshot: std::sync::Arc::new(snapshot(2_000, 3_300)),
        taken_at: t1,
    });
    let again = tokio::task::spawn_blocking({
        let path = path.clone();
        move || latest_taken_ms_after(&path, first)
    })
    .await
    .unwrap();
    assert_eq!(again, Some(t1.timestamp_millis()));
    writer.stop().await.unwrap();
    // stopped: the battery is out of the merge
    let conn = Connection::open(&path).unwrap();
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM bms_merge"), 0);
}

#[test]
fn an_odd_newest_row_passes_through_untouched_and_storage_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let mut store = open(&path, 1);
    let other = Connection::open(&path).unwrap();
    let deep_array = format!("{}{}", "[".repeat(1_100), "]".repeat(1_100));
    let deep_object = format!(
        "{{\"a\":{}1{}}}",
        "{\"b\":".repeat(1_100),
        "}".repeat(1_100)
    );
    let odd: Vec<rusqlite::types::Value> = vec![
        rusqlite::types::Value::Text(String::new()),
        rusqlite::types::Value::Text("plain text".into()),
        rusqlite::types::Value::Blob(vec![0, 0xff, 0xfe, 0x7b]),
        // latin-1 bytes (not UTF-8), as a careless writer might store them
        rusqlite::types::Value::Blob(b"{\"grid_voltage\": \"caf\xe9\"}".to_vec()),
        rusqlite::types::Value::Text(deep_array),
        rusqlite::types::Value::Text(deep_object),
        rusqlite::types::Value::Text("[1, 2, 3]".into()),
    ];
    // jkmon is merging when the odd rows arrive
    insert_inverter_row(&other, &inverter_payload(230.0));
    assert!(matches!(
        commit(&mut store, &[snapshot(1_000, 3_300)], Local::now()),
        ReadingsAction::Updated(_)
    ));
    for value in odd {
        // the other program's INSERT goes through the trigger without an error
        other
            .execute(
                "INSERT INTO readings (created_at, payload) VALUES (?1, ?2)",
                rusqlite::params![Local::now().to_rfc3339(), value],
            )
            .unwrap_or_else(|e| panic!("the inverter's insert of {value:?} failed: {e}"));
        let id = other.last_insert_rowid();
        let action = commit(&mut store, &[snapshot(1_500, 3_300)], Local::now());
        assert_eq!(action, ReadingsAction::LeftErrorRow(id), "{value:?}");
        let stored: rusqlite::types::Value = other
            .query_row("SELECT payload FROM readings WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, value, "passed through untouched");
        // jkmon's own tables go on, and the views read the row as "no inverter data"
        let latest: i64 = count(&other, "SELECT COUNT(*) FROM bms_latest");
        assert_eq!(latest, 1);
        let view = jkmon::store::read::latest_reading(
            &other,
            chrono::Utc::now(),
            std::time::Duration::from_secs(30),
        )
        .unwrap()
        .unwrap();
        assert_eq!((view.id, view.has_inverter_data), (id, false), "{value:?}");
    }
    // and the next good row gets the battery again
    let good = insert_inverter_row(&other, &inverter_payload(231.0));
    assert_eq!(payload(&other, good)["battery_current"], "1.5");
    assert_eq!(
        commit(&mut store, &[snapshot(2_000, 3_300)], Local::now()),
        ReadingsAction::Updated(good)
    );
}

#[test]
fn a_month_chart_before_aggregation_reads_a_sample_and_agrees_with_the_aggregated_one() {
    use jkmon::store::inverter;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let now_s = chrono::Utc::now().timestamp() / 3_600 * 3_600;
    thirty_days_of_rows(&path, now_s);
    let mut store = open(&path, 1);
    let (from, to) = (
        DateTime::from_timestamp(now_s - 30 * 86_400, 0).unwrap(),
        DateTime::from_timestamp(now_s, 0).unwrap(),
    );
    let retention = jkmon::store::Retention::default();
    let now_ms = now_s * 1000 + 120_000;
    let before = inverter::points(store.connection(), from, to, 3_600, now_ms, &retention).unwrap();
    assert!(before.iter().all(|p| p.sampled), "said to be a sample");
    while store.maintain(now_ms).unwrap().more {}
    let after = inverter::points(store.connection(), from, to, 3_600, now_ms, &retention).unwrap();
    assert!(after.iter().all(|p| !p.sampled));
    assert_eq!(before.len(), after.len());
    assert!((719..=721).contains(&after.len()), "{}", after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.t, a.t);
        let (b, a) = (b.grid_power_w.unwrap().avg, a.grid_power_w.unwrap().avg);
        // grid power runs 0…899 W in a sawtooth: a sample of one row in 21 averages close
        assert!((b - a).abs() < 60.0, "{b} vs {a}");
    }
}
