//! Energy on a real SQLite file: a battery driven through a known profile in simulated time by
//! the real writer (restarted halfway), and the inverter's daily energy from `readings` rows
//! with gaps, error rows and rows without inverter data.

use crate::common;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Local, NaiveDate};
use jkmon::battery::soc::{estimator, SocSource, VoltageCurve};
use jkmon::battery::Snapshot;
use jkmon::protocol::CellInfo;
use jkmon::store::energy::{inverter_days, InverterEnergy};
use jkmon::store::live::Live;
use jkmon::store::writer::{Message, Writer};
use jkmon::store::{Battery, Store, StoreConfig};
use rusqlite::Connection;

fn snapshot(voltage_mv: u32, current_ma: i32) -> Arc<Snapshot> {
    let mut c = CellInfo::example();
    c.total_voltage_mv = voltage_mv;
    c.current_ma = Some(current_ma);
    Arc::new(Snapshot::new(
        c,
        None,
        None,
        estimator(SocSource::Bms, &VoltageCurve::default()).as_ref(),
    ))
}

fn battery() -> Vec<Battery> {
    vec![Battery {
        position: 1,
        name: "Pack".into(),
        address: Some("C8:47:80:00:00:01".into()),
    }]
}

/// The writer commits only when a battery first arrives and when it stops: the interval is an
/// hour of real time, so what the test reads is what the counters and the stop wrote.
fn config() -> StoreConfig {
    StoreConfig {
        interval: Duration::from_secs(3_600),
        freshness: Duration::from_secs(60),
        ..StoreConfig::default()
    }
}

/// Sends one snapshot every `step_s` of simulated time from `from` (inclusive) to `to`
/// (inclusive), at `voltage_mv` and `current_ma`.
fn drive(
    writer: &Writer,
    start: DateTime<Local>,
    (from, to, step_s): (i64, i64, i64),
    voltage_mv: u32,
    current_ma: i32,
) {
    let snap = snapshot(voltage_mv, current_ma);
    for s in (from..=to).step_by(step_s as usize) {
        writer.send(Message::Snapshot {
            position: 1,
            snapshot: Arc::clone(&snap),
            taken_at: start + chrono::Duration::seconds(s),
        });
    }
}

/// `(day, charged_wh, discharged_wh)`.
type Day = (String, f64, f64);

/// `(charged_wh, discharged_wh)` of the battery's counters, and of each stored day.
fn stored(path: &std::path::Path) -> ((f64, f64), Vec<Day>) {
    let conn = Connection::open(path).unwrap();
    let total = conn
        .query_row(
            "SELECT charged_wh, discharged_wh FROM bms_energy",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or((0.0, 0.0));
    let mut stmt = conn
        .prepare("SELECT day, charged_wh, discharged_wh FROM bms_energy_daily ORDER BY day")
        .unwrap();
    let days = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (total, days)
}

fn within(got: f64, exact: f64, pct: f64) -> bool {
    (got - exact).abs() <= exact.abs() * pct / 100.0
}

#[tokio::test]
async fn a_known_profile_is_counted_within_half_a_percent_across_a_restart_and_midnight() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    // simulated time: from 23:30 yesterday, so the profile crosses local midnight
    let today = Local::now().date_naive();
    let start = at(today, 0) - chrono::Duration::minutes(30);

    // 10 A at 52 V for an hour (520 Wh), then -20 A for a quarter of an hour
    let writer = Writer::start(Store::open(&path, config()).unwrap(), battery(), None).unwrap();
    drive(&writer, start, (0, 3_600, 2), 52_000, 10_000);
    drive(&writer, start, (3_602, 4_500, 2), 52_000, -20_000);
    writer.stop().await.unwrap();
    let ((charged_before, discharged_before), _) = stored(&path);
    assert!(within(charged_before, 520.0, 0.5), "{charged_before}");
    assert!(within(discharged_before, 260.0, 0.5), "{discharged_before}");

    // jkmon restarts: 4 s without snapshots, then -20 A for another quarter of an hour
    let live = Live::default();
    let writer = Writer::start(
        Store::open(&path, config()).unwrap(),
        battery(),
        Some(live.clone()),
    )
    .unwrap();
    let resumed = live
        .energy(1)
        .expect("the counters as stored reach the views");
    assert_eq!(
        (resumed.total.charged_wh, resumed.total.discharged_wh),
        (charged_before, discharged_before),
        "the counters go on from the database"
    );
    drive(&writer, start, (4_504, 5_400, 2), 52_000, -20_000);
    writer.stop().await.unwrap();

    let ((charged, discharged), days) = stored(&path);
    assert!(charged >= charged_before && discharged >= discharged_before);
    // exact: 520 Wh in; 1040 W out for 1 800 s = 520 Wh, less the 4 s jkmon was down
    assert!(within(charged, 520.0, 0.5), "charged {charged} Wh");
    assert!(within(discharged, 520.0, 0.5), "discharged {discharged} Wh");
    assert!(
        discharged < 520.0,
        "the seconds jkmon was down are not guessed"
    );
    let newest = live.energy(1).unwrap();
    assert!(
        (newest.total.discharged_wh - discharged).abs() < 1e-6,
        "the views saw every step"
    );

    // the days split at local midnight: 30 min of charging yesterday, the rest today
    let yesterday = today.pred_opt().unwrap().to_string();
    assert_eq!(days.len(), 2, "{days:?}");
    assert_eq!(days[0].0, yesterday);
    assert!(within(days[0].1, 260.0, 0.5), "{days:?}");
    assert_eq!(days[0].2, 0.0);
    assert_eq!(days[1].0, today.to_string());
    assert!(within(days[1].1, 260.0, 0.5), "{days:?}");
    assert!(
        (days[0].1 + days[1].1 - charged).abs() < 1e-6,
        "days add up to the counter"
    );
    assert!((days[1].2 - discharged).abs() < 1e-6);
    let live_today = newest.today_on(today);
    assert!(
        (live_today.charged_wh - days[1].1).abs() < 1e-6,
        "{live_today:?}"
    );
    assert!((live_today.discharged_wh - days[1].2).abs() < 1e-6);
}

#[tokio::test]
async fn a_battery_offline_longer_than_its_freshness_adds_nothing_for_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let start = Local::now() - chrono::Duration::hours(2);
    let writer = Writer::start(Store::open(&path, config()).unwrap(), battery(), None).unwrap();
    drive(&writer, start, (0, 600, 2), 50_000, 20_000);
    // ten minutes without a snapshot (freshness 60 s): not counted at the last power
    drive(&writer, start, (1_200, 1_800, 2), 50_000, 20_000);
    writer.stop().await.unwrap();
    let ((charged, _), _) = stored(&path);
    assert!(
        within(charged, 1_000.0 * 1_200.0 / 3_600.0, 0.1),
        "{charged}"
    );
}

// --- the inverter

/// A local time `s` seconds after the start of `day`.
fn at(day: NaiveDate, s: i64) -> DateTime<Local> {
    jkmon::battery::energy::start_of(day).unwrap() + chrono::Duration::seconds(s)
}

fn insert(conn: &Connection, t: DateTime<Local>, payload: &str, error: Option<&str>) {
    conn.execute(
        "INSERT INTO readings (created_at, payload, error) VALUES (?1, ?2, ?3)",
        rusqlite::params![t.to_rfc3339(), payload, error],
    )
    .unwrap();
}

fn row(grid: &str, load: &str, pv: &str) -> String {
    format!(
        "{{\"grid_voltage\": \"230.1\", \"grid_power\": \"{grid}\", \"ac_output_power\": \"{load}\", \"pv_input_power\": \"{pv}\"}}"
    )
}

/// Three days of the inverter's rows, every 10 s around midnights:
/// - day 1, 23:00–24:00: PV 1 000 W, load 500 W, grid 200 W (import);
/// - day 2, 00:00–01:00 the same, except a 5-minute hole (the poller was down), an error
///   row and a jkmon row without inverter data (both bridged: 20 s < 3 × 10 s), and "N/A" PV
///   for ten minutes (no PV data, the other values go on); then 01:00–02:00 the grid exports
///   300 W;
/// - day 3: nothing.
fn inverter_rows(conn: &Connection, day1: NaiveDate) {
    let day2 = day1.succ_opt().unwrap();
    for s in (82_800..86_400).step_by(10) {
        insert(conn, at(day1, s), &row("200", "500", "1000"), None);
    }
    for s in (0..=3_600).step_by(10) {
        let t = at(day2, s);
        if (600..900).contains(&s) {
            continue; // the hole: 300 s without rows
        }
        if s == 1_200 {
            insert(conn, t, "", Some("timeout"));
        } else if s == 1_500 {
            insert(
                conn,
                t,
                "{\"source\": \"jkmon\", \"battery_voltage\": \"52.1\"}",
                None,
            );
        } else if (1_800..2_400).contains(&s) {
            insert(conn, t, &row("200", "500", "N/A"), None);
        } else {
            insert(conn, t, &row("200", "500", "1000"), None);
        }
    }
    for s in (3_610..=7_200).step_by(10) {
        insert(conn, at(day2, s), &row("-300", "500", "1000"), None);
    }
}

fn close(got: Option<f64>, exact: f64) -> bool {
    got.is_some_and(|g| (g - exact).abs() < 1e-6)
}

fn check_days(days: &std::collections::BTreeMap<NaiveDate, InverterEnergy>, day1: NaiveDate) {
    let day2 = day1.succ_opt().unwrap();
    let d1 = days.get(&day1).expect("day 1");
    // 23:00:00 to the row at midnight
    assert!(close(d1.pv_wh, 1_000.0), "{d1:?}");
    assert!(close(d1.load_wh, 500.0), "{d1:?}");
    assert!(close(d1.grid_import_wh, 200.0), "{d1:?}");
    assert!(close(d1.grid_export_wh, 0.0), "{d1:?}");
    let d2 = days.get(&day2).expect("day 2");
    // 00:00–01:00 less the 310 s hole between the rows at 590 s and 900 s; PV also less
    // the "N/A" stretch from 1 790 s to 2 400 s
    let hour = 3_600.0 - 310.0;
    assert!(
        close(d2.load_wh, 500.0 * (hour + 3_600.0) / 3_600.0),
        "{d2:?}"
    );
    assert!(
        close(d2.pv_wh, 1_000.0 * (hour - 610.0 + 3_600.0) / 3_600.0),
        "{d2:?}"
    );
    // the grid goes from +200 W at 3 600 s to -300 W at 3 610 s: split at zero (4 s in)
    assert!(
        close(
            d2.grid_import_wh,
            (200.0 * hour + 200.0 * 4.0 / 2.0) / 3_600.0
        ),
        "{d2:?}"
    );
    assert!(
        close(
            d2.grid_export_wh,
            (300.0 * 6.0 / 2.0 + 300.0 * 3_590.0) / 3_600.0
        ),
        "{d2:?}"
    );
    assert!(
        !days.contains_key(&day2.succ_opt().unwrap()),
        "no rows, no day"
    );
}

#[test]
fn the_inverters_daily_energy_skips_holes_error_rows_and_rows_without_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let mut store = Store::open(&path, StoreConfig::default()).unwrap();
    let day1 = Local::now().date_naive() - chrono::Days::new(5);
    inverter_rows(store.connection(), day1);
    let now_ms = Local::now().timestamp_millis();
    let gap = StoreConfig::default().inverter_max_gap();

    // counted by a reader straight from the rows (nothing stored yet)
    let read = inverter_days(store.connection(), day1, now_ms, gap).unwrap();
    check_days(&read, day1);

    // counted by the writer's maintenance, a chunk at a time, then read back: the same
    for _ in 0..10 {
        if !store.maintain(now_ms).unwrap().more {
            break;
        }
    }
    let stored: i64 = store
        .connection()
        .query_row("SELECT COUNT(*) FROM inverter_energy_daily", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, 2, "both days are stored");
    let after = inverter_days(store.connection(), day1, now_ms, gap).unwrap();
    assert_eq!(after, read);
    // counted again: nothing is added twice
    store.maintain(now_ms + 3_600_000).unwrap();
    assert_eq!(
        inverter_days(store.connection(), day1, now_ms, gap).unwrap(),
        read
    );
}

#[test]
fn battery_days_are_kept_as_long_as_the_hourly_history_even_without_inverter_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let config = StoreConfig {
        retention: jkmon::store::Retention {
            hourly_days: 30,
            ..jkmon::store::Retention::default()
        },
        ..StoreConfig::default()
    };
    let mut store = Store::open(&path, config).unwrap();
    store.register(&battery(), 0).unwrap();
    let today = Local::now().date_naive();
    let mut pending = jkmon::store::energy::Pending::default();
    for ago in [0, 29, 31, 400] {
        pending.days.insert(
            today - chrono::Days::new(ago),
            jkmon::battery::energy::Energy {
                charged_wh: 100.0,
                discharged_wh: 50.0,
            },
        );
    }
    common::commit_with_energy(&mut store, 1, &snapshot(52_000, 1_000), &pending);
    store.maintain(Local::now().timestamp_millis()).unwrap();
    let (total, days) = stored(&path);
    assert_eq!(total, (400.0, 200.0), "the counters keep everything");
    let kept: Vec<String> = days.into_iter().map(|d| d.0).collect();
    assert_eq!(
        kept,
        vec![
            (today - chrono::Days::new(29)).to_string(),
            today.to_string()
        ]
    );
}
