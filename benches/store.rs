//! Store benchmark: merge latency (snapshot in hand → committed) and database growth per day
//! at the default settings, on a real SQLite file in the temp directory.
//!
//! `cargo bench --bench store` prints:
//! - p50/p99 of `Store::commit` for 1 and 4 batteries beside a live inverter, against the
//!   baseline measured in the same run: one inverter-poller INSERT on the same file (which runs
//!   jkmon's trigger);
//! - bytes per simulated day: the inverter alone (baseline), the inverter with jkmon, jkmon
//!   alone; and the steady size of a year of history at the default retention.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{Local, TimeZone};
use jkmon::battery::soc::{estimator, SocSource, VoltageCurve};
use jkmon::battery::Snapshot;
use jkmon::protocol::CellInfo;
use jkmon::store::{Battery, Bucket, Retention, Store, StoreConfig, Update};
use rusqlite::Connection;

const ITERATIONS: usize = 2_000;
const DAY_S: i64 = 86_400;
/// The defaults: the inverter polls every 10 s, jkmon commits every 30 s.
const INVERTER_EVERY_S: i64 = 10;
const COMMIT_EVERY_S: i64 = 30;

fn snapshot(i: usize) -> Snapshot {
    let mut c = CellInfo::example();
    c.cell_voltages_uv = (0..16)
        .map(|k| 3_280_000 + (k * 1_000 + i % 7) as u32)
        .collect();
    c.cell_resistances_uohm = vec![60_000; 16];
    c.total_voltage_mv = c.cell_voltages_uv.iter().sum::<u32>() / 1000;
    c.current_ma = Some((i as i32 % 400) * 100 - 20_000);
    Snapshot::new(
        c,
        None,
        None,
        estimator(SocSource::Curve, &VoltageCurve::default()).as_ref(),
    )
}

const INVERTER_ROW: &str = r#"{"grid_voltage": "231.4", "grid_power": "412", "grid_current": "1.78", "ac_output_voltage": "230.1", "ac_output_freq": "50.00", "ac_output_power": "398", "ac_output_current": "1.7", "battery_voltage": "52.1", "battery_current": "-3.0", "battery_power": "-156", "battery_soc": "64", "battery_charge_power": "14", "pv_input_voltage": "0.0", "pv_input_power": "0", "pv_input_current": "0.0", "temperature": "31", "status_text": "LINE"}"#;

fn insert_inverter_row(conn: &Connection) {
    conn.execute(
        "INSERT INTO readings (created_at, payload) VALUES (?1, ?2)",
        rusqlite::params![Local::now().to_rfc3339(), INVERTER_ROW],
    )
    .unwrap();
}

/// The inverter poller's connection, with the same durability setting as jkmon's (WAL +
/// `synchronous=NORMAL`), so the two are compared like for like.
fn inverter_connection(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch("PRAGMA synchronous = NORMAL").unwrap();
    conn
}

fn store(path: &Path, batteries: usize) -> Store {
    let mut s = Store::open(path, StoreConfig::default()).unwrap();
    let list: Vec<Battery> = (1..=batteries)
        .map(|p| Battery {
            position: p,
            name: format!("Pack {p}"),
            address: Some(format!("C8:47:80:00:00:{p:02}")),
        })
        .collect();
    s.register(&list, 0).unwrap();
    s
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn size(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
        .unwrap();
    conn.query_row(
        "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Latency of `commit` with `batteries` batteries, one inverter row inserted every third
/// commit; also the inverter's own INSERT latency in the same run.
fn latency(batteries: usize, iterations: usize) -> (Vec<Duration>, Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let mut s = store(&path, batteries);
    let inverter = inverter_connection(&path);
    insert_inverter_row(&inverter);
    let mut merges = Vec::with_capacity(iterations);
    let mut inserts = Vec::with_capacity(iterations / 3);
    for i in 0..iterations {
        let snaps: Vec<Snapshot> = (0..batteries).map(|b| snapshot(i + b)).collect();
        let buckets: Vec<Bucket> = snaps
            .iter()
            .map(|s| {
                let mut b = Bucket::default();
                for _ in 0..60 {
                    b.add(s); // 30 s of frames at 2 per second
                }
                b
            })
            .collect();
        let start = Instant::now();
        let updates: Vec<Update> = snaps
            .iter()
            .zip(&buckets)
            .enumerate()
            .map(|(k, (snapshot, bucket))| Update {
                position: k + 1,
                snapshot,
                taken_at: Local::now(),
                bucket,
                fresh: true,
                energy: &jkmon::store::energy::NO_ENERGY,
            })
            .collect();
        s.commit(&updates, Local::now()).unwrap();
        merges.push(start.elapsed());
        if i % 3 == 0 {
            let start = Instant::now();
            insert_inverter_row(&inverter);
            inserts.push(start.elapsed());
        }
    }
    merges.sort();
    inserts.sort();
    (merges, inserts)
}

/// Bytes one simulated day adds: `inverter` rows every 10 s, `jkmon` commits every 30 s
/// (history time injected; the snapshots are fresh, so the merge runs as in production).
fn day(inverter: bool, jkmon: bool) -> i64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("day.db");
    let mut s = store(&path, 1);
    let before = size(&path);
    let conn = inverter_connection(&path);
    let day0 = Local.timestamp_opt(1_767_225_600, 0).unwrap();
    for t in (0..DAY_S).step_by(INVERTER_EVERY_S as usize) {
        if inverter {
            insert_inverter_row(&conn);
        }
        if jkmon && t % COMMIT_EVERY_S == 0 {
            let snap = snapshot(t as usize);
            let mut bucket = Bucket::default();
            for _ in 0..60 {
                bucket.add(&snap);
            }
            s.commit(
                &[Update {
                    position: 1,
                    snapshot: &snap,
                    taken_at: Local::now(),
                    bucket: &bucket,
                    fresh: true,
                    energy: &jkmon::store::energy::NO_ENERGY,
                }],
                day0 + chrono::Duration::seconds(t),
            )
            .unwrap();
        }
    }
    s.maintain((day0 + chrono::Duration::seconds(DAY_S)).timestamp_millis())
        .unwrap();
    drop(s);
    drop(conn);
    size(&path) - before
}

/// Bytes of one history row of each tier, from 5,000 rows of 16 cells.
fn history_row_bytes() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.db");
    let s = store(&path, 1);
    let before = size(&path);
    let device: i64 = s
        .connection()
        .query_row("SELECT id FROM bms_devices", [], |r| r.get(0))
        .unwrap();
    let tx = s.connection().unchecked_transaction().unwrap();
    for i in 0..5_000 {
        let mut b = Bucket::default();
        for k in 0..60 {
            b.add(&snapshot(i + k));
        }
        b.to_row(device, 0, i as i64 * 30_000).insert(&tx).unwrap();
    }
    tx.commit().unwrap();
    drop(s);
    (size(&path) - before) as f64 / 5_000.0
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and
    // then a short smoke run is enough.
    if !std::env::args().any(|a| a == "--bench") {
        let (merges, _) = latency(1, 20);
        assert_eq!(merges.len(), 20);
        return;
    }
    println!("== merge latency: snapshot in hand → committed ({ITERATIONS} commits) ==");
    let (one, inserts) = latency(1, ITERATIONS);
    let (four, _) = latency(4, ITERATIONS);
    let base = percentile(&inserts, 0.5);
    println!(
        "baseline: one inverter INSERT (with jkmon's trigger): p50 {:?}, p99 {:?}",
        base,
        percentile(&inserts, 0.99)
    );
    for (label, v) in [("1 battery", &one), ("4 batteries", &four)] {
        let (p50, p99) = (percentile(v, 0.5), percentile(v, 0.99));
        println!(
            "{label}: p50 {p50:?} ({:.1}× baseline), p99 {p99:?} ({:.1}× baseline)",
            p50.as_secs_f64() / base.as_secs_f64(),
            p99.as_secs_f64() / base.as_secs_f64()
        );
    }

    println!(
        "\n== database growth per day at the defaults (inverter every 10 s, jkmon every 30 s) =="
    );
    let inverter_only = day(true, false);
    let both = day(true, true);
    let jkmon_only = day(false, true);
    let kb = |b: i64| b as f64 / 1024.0;
    println!(
        "baseline: the inverter alone: {:.0} KiB/day",
        kb(inverter_only)
    );
    println!(
        "inverter + jkmon (1 battery): {:.0} KiB/day ({:.2}× baseline; jkmon adds {:.0} KiB)",
        kb(both),
        both as f64 / inverter_only as f64,
        kb(both - inverter_only)
    );
    println!(
        "jkmon alone (BMS-only rows + history): {:.0} KiB/day",
        kb(jkmon_only)
    );

    let row = history_row_bytes();
    let r = Retention::default();
    let per_day = (DAY_S / COMMIT_EVERY_S) as f64;
    let rows = f64::from(r.raw_days) * per_day + f64::from(r.five_min_days) * 288.0 + 365.0 * 24.0;
    println!(
        "\n== a year of history per battery at the default retention ({} d raw, {} d 5-min, hourly kept) ==",
        r.raw_days, r.five_min_days
    );
    println!(
        "{row:.0} bytes per history row → {:.0} rows → {:.1} MiB (+{:.2} MiB per further year of hourly rows)",
        rows,
        rows * row / 1_048_576.0,
        365.0 * 24.0 * row / 1_048_576.0
    );
}
