//! Energy in the database (`migrations/0007_energy.sql`).
//!
//! - Batteries: the writer integrates every snapshot ([`crate::battery::energy::Meter`]) and
//!   each commit adds what the interval brought to the battery's counters and to its days'
//!   totals, in the commit's transaction. Counters are only ever added to, so a restart
//!   continues them; what a crash loses is the interval not yet committed.
//! - The inverter: its rows in `readings` are integrated the same way, per value (PV, load,
//!   grid), a row gap longer than three of the inverter's poll intervals counting as no data.
//!   The writer's maintenance adds a chunk of rows at a time to `inverter_energy_daily`; a
//!   reader counts the rows after that point itself, so today is never an hour behind.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, Local, NaiveDate, TimeZone};
use rusqlite::{named_params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::jobs::{job_progress, set_job_progress, text_range};
use crate::battery::energy::{start_of, Energy, Meter, Outlook, Step};
use crate::report::json::SnapshotJson;

/// A battery's counters as the views show them: the totals, today's part and the recent
/// average power.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counters {
    pub total: Energy,
    pub day: Option<NaiveDate>,
    pub today: Energy,
    pub average_w: Option<f64>,
}

impl Counters {
    /// Adds one snapshot's step (today's part restarts on a new day).
    pub fn add(&mut self, step: &Step, average_w: Option<f64>) {
        for (day, e) in &step.days {
            self.total.add(*e);
            if self.day.is_none_or(|d| *day > d) {
                self.day = Some(*day);
                self.today = Energy::default();
            }
            if self.day == Some(*day) {
                self.today.add(*e);
            }
        }
        self.average_w = average_w;
    }

    /// Today's part on `today` (nothing yet when the last count was on an earlier day).
    pub fn today_on(&self, today: NaiveDate) -> Energy {
        if self.day == Some(today) {
            self.today
        } else {
            Energy::default()
        }
    }
}

/// What one battery's snapshots brought since the last commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pending {
    pub days: BTreeMap<NaiveDate, Energy>,
    pub average_w: Option<f64>,
}

impl Pending {
    pub fn add(&mut self, step: &Step, average_w: Option<f64>) {
        for (day, e) in &step.days {
            self.days.entry(*day).or_default().add(*e);
        }
        self.average_w = average_w;
    }
}

/// No energy: for an update built without a meter (tests, benchmarks).
pub static NO_ENERGY: Pending = Pending {
    days: BTreeMap::new(),
    average_w: None,
};

/// Adds `pending` to battery `device_id`'s counters and days (inside the commit).
pub(super) fn write(
    tx: &rusqlite::Transaction,
    device_id: i64,
    pending: &Pending,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let mut total = Energy::default();
    let mut day = tx.prepare_cached(
        "INSERT INTO bms_energy_daily (device_id, day, charged_wh, discharged_wh)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (device_id, day) DO UPDATE SET
             charged_wh = charged_wh + excluded.charged_wh,
             discharged_wh = discharged_wh + excluded.discharged_wh",
    )?;
    for (d, e) in &pending.days {
        total.add(*e);
        day.execute(rusqlite::params![
            device_id,
            d.to_string(),
            e.charged_wh,
            e.discharged_wh
        ])?;
    }
    tx.prepare_cached(
        "INSERT INTO bms_energy (device_id, charged_wh, discharged_wh, average_power_w, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (device_id) DO UPDATE SET
             charged_wh = charged_wh + excluded.charged_wh,
             discharged_wh = discharged_wh + excluded.discharged_wh,
             average_power_w = excluded.average_power_w,
             updated_ms = excluded.updated_ms",
    )?
    .execute(rusqlite::params![
        device_id,
        total.charged_wh,
        total.discharged_wh,
        pending.average_w,
        now_ms
    ])?;
    Ok(())
}

/// Drops the batteries' days older than `keep_days` (0: none) before `now_ms`, with the hourly
/// history (the writer's maintenance, whether or not an inverter writes rows).
pub(super) fn expire_battery_days(
    conn: &Connection,
    now_ms: i64,
    keep_days: u32,
) -> rusqlite::Result<usize> {
    match cutoff_day(now_ms, keep_days) {
        Some(day) => conn.execute("DELETE FROM bms_energy_daily WHERE day < ?1", [day]),
        None => Ok(0),
    }
}

/// The first local day kept when `keep_days` days before `now_ms` are kept (`None`: 0 keeps
/// every day).
fn cutoff_day(now_ms: i64, keep_days: u32) -> Option<String> {
    if keep_days == 0 {
        return None;
    }
    let t = DateTime::from_timestamp_millis(now_ms - i64::from(keep_days) * 86_400_000)?;
    Some(t.with_timezone(&Local).date_naive().to_string())
}

/// Battery `device_key`'s counters as the database holds them, today being `today`.
pub fn counters(
    conn: &Connection,
    device_key: &str,
    today: NaiveDate,
) -> rusqlite::Result<Counters> {
    let mut c = Counters::default();
    conn.query_row(
        "SELECT e.charged_wh, e.discharged_wh, e.average_power_w,
                t.charged_wh, t.discharged_wh
         FROM bms_devices AS d
         JOIN bms_energy AS e ON e.device_id = d.id
         LEFT JOIN bms_energy_daily AS t ON t.device_id = d.id AND t.day = ?2
         WHERE d.device_key = ?1",
        rusqlite::params![device_key, today.to_string()],
        |r| {
            c.total = Energy {
                charged_wh: r.get(0)?,
                discharged_wh: r.get(1)?,
            };
            c.average_w = r.get(2)?;
            c.day = Some(today);
            c.today = Energy {
                charged_wh: r.get::<_, Option<f64>>(3)?.unwrap_or(0.0),
                discharged_wh: r.get::<_, Option<f64>>(4)?.unwrap_or(0.0),
            };
            Ok(())
        },
    )
    .optional()?;
    Ok(c)
}

/// Battery `device_key`'s days from `from` on, oldest first.
pub fn battery_days(
    conn: &Connection,
    device_key: &str,
    from: NaiveDate,
) -> rusqlite::Result<Vec<(NaiveDate, Energy)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.day, e.charged_wh, e.discharged_wh
         FROM bms_energy_daily AS e JOIN bms_devices AS d ON d.id = e.device_id
         WHERE d.device_key = ?1 AND e.day >= ?2 ORDER BY e.day",
    )?;
    let rows = stmt.query_map(rusqlite::params![device_key, from.to_string()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Energy {
                charged_wh: r.get(1)?,
                discharged_wh: r.get(2)?,
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (day, e) = row?;
        if let Ok(day) = day.parse() {
            out.push((day, e));
        }
    }
    Ok(out)
}

/// The inverter's energy on one day, Wh; `None` where it wrote none of that value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct InverterEnergy {
    pub pv_wh: Option<f64>,
    pub load_wh: Option<f64>,
    pub grid_import_wh: Option<f64>,
    pub grid_export_wh: Option<f64>,
}

/// `a + b` where `b` is known; an unknown `a` counts as 0 then.
fn add_known(a: &mut Option<f64>, b: Option<f64>) {
    if let Some(b) = b {
        *a = Some(a.unwrap_or(0.0) + b);
    }
}

impl InverterEnergy {
    fn add(&mut self, other: &InverterEnergy) {
        add_known(&mut self.pv_wh, other.pv_wh);
        add_known(&mut self.load_wh, other.load_wh);
        add_known(&mut self.grid_import_wh, other.grid_import_wh);
        add_known(&mut self.grid_export_wh, other.grid_export_wh);
    }
}

/// The inverter's rows as points: `(unix s, grid W, load W, PV W)`, "N/A" and the like left
/// out, error rows and rows without those keys skipped, in time order.
const POINTS_SQL: &str = "
    SELECT t, CASE WHEN g GLOB '[0-9-]*' THEN CAST(g AS REAL) END,
              CASE WHEN l GLOB '[0-9-]*' THEN CAST(l AS REAL) END,
              CASE WHEN p GLOB '[0-9-]*' THEN CAST(p AS REAL) END
    FROM (SELECT CAST(strftime('%s', created_at) AS INTEGER) AS t,
                 json_extract(payload, '$.grid_power') AS g,
                 json_extract(payload, '$.ac_output_power') AS l,
                 json_extract(payload, '$.pv_input_power') AS p
          FROM readings
          WHERE created_at >= :lo AND created_at < :hi
            AND CASE WHEN typeof(payload) = 'text' AND error IS NULL AND json_valid(payload)
                THEN json_type(payload) = 'object' ELSE 0 END)
    WHERE t >= :from AND t < :to
    ORDER BY t";

/// The inverter's energy per local day from the rows of `[from_ms, to_ms)`: each interval
/// between two rows counts on the day it ends in (split at midnight), only where the later
/// row is at or after `count_from_ms` (the rows before only start the integration).
fn integrate(
    conn: &Connection,
    from_ms: i64,
    count_from_ms: i64,
    to_ms: i64,
    max_gap: Duration,
) -> rusqlite::Result<BTreeMap<NaiveDate, InverterEnergy>> {
    let (lo, hi) = text_range(from_ms, to_ms);
    let mut stmt = conn.prepare_cached(POINTS_SQL)?;
    let mut rows = stmt.query(named_params! {
        ":lo": lo, ":hi": hi,
        ":from": from_ms.div_euclid(1000), ":to": to_ms.div_euclid(1000),
    })?;
    let mut meters = [
        Meter::new(max_gap),
        Meter::new(max_gap),
        Meter::new(max_gap),
    ];
    let mut out: BTreeMap<NaiveDate, InverterEnergy> = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let t: i64 = row.get(0)?;
        let Some(at) = Local.timestamp_opt(t, 0).earliest() else {
            continue;
        };
        let counts = t * 1000 >= count_from_ms;
        for (i, meter) in meters.iter_mut().enumerate() {
            let Some(w) = row.get::<_, Option<f64>>(1 + i)? else {
                continue;
            };
            let step = meter.add(at, w);
            if !counts {
                continue;
            }
            // a value seen on a day makes it a day with data, even at 0 Wh
            let day = out.entry(at.date_naive()).or_default();
            match i {
                0 => {
                    day.grid_import_wh.get_or_insert(0.0);
                    day.grid_export_wh.get_or_insert(0.0);
                }
                1 => _ = day.load_wh.get_or_insert(0.0),
                _ => _ = day.pv_wh.get_or_insert(0.0),
            }
            for (d, e) in &step.days {
                let day = out.entry(*d).or_default();
                match i {
                    0 => {
                        *day.grid_import_wh.get_or_insert(0.0) += e.charged_wh;
                        *day.grid_export_wh.get_or_insert(0.0) += e.discharged_wh;
                    }
                    // load and PV are never negative; a negative value is no energy
                    1 => *day.load_wh.get_or_insert(0.0) += e.charged_wh,
                    _ => *day.pv_wh.get_or_insert(0.0) += e.charged_wh,
                }
            }
        }
    }
    Ok(out)
}

const JOB: &str = "inverter_energy";
/// At most this much of `readings` is counted in one maintenance run.
const CHUNK_MS: i64 = 7 * 86_400_000;
/// Rows this recent may still be arriving; they are counted by readers, not yet stored.
const GRACE_MS: i64 = 60_000;

fn progress(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    job_progress(conn, JOB)
}

/// Counts the next chunk of the inverter's rows into `inverter_energy_daily` (read with no
/// lock, written in one short transaction) and drops days older than `keep_days` (0: none).
/// `true` while more rows wait.
pub(super) fn aggregate_inverter(
    conn: &mut Connection,
    now_ms: i64,
    first_ms: i64,
    max_gap: Duration,
    keep_days: u32,
) -> rusqlite::Result<bool> {
    let oldest_kept = if keep_days == 0 {
        i64::MIN
    } else {
        now_ms - i64::from(keep_days) * 86_400_000
    };
    // whole seconds: a row's time is, and each row belongs to exactly one chunk
    let start = progress(conn)?.unwrap_or(first_ms.max(oldest_kept).div_euclid(1000) * 1000);
    let end = (now_ms - GRACE_MS).div_euclid(1000) * 1000;
    let chunk_end = end.min(start + CHUNK_MS);
    let days = if chunk_end > start {
        let gap_ms = i64::try_from(max_gap.as_millis()).unwrap_or(i64::MAX);
        integrate(
            conn,
            start.saturating_sub(gap_ms),
            start,
            chunk_end,
            max_gap,
        )?
    } else {
        BTreeMap::new()
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if chunk_end > start {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO inverter_energy_daily (day, pv_wh, load_wh, grid_import_wh, grid_export_wh)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (day) DO UPDATE SET
                 pv_wh = COALESCE(pv_wh + excluded.pv_wh, pv_wh, excluded.pv_wh),
                 load_wh = COALESCE(load_wh + excluded.load_wh, load_wh, excluded.load_wh),
                 grid_import_wh = COALESCE(grid_import_wh + excluded.grid_import_wh,
                                           grid_import_wh, excluded.grid_import_wh),
                 grid_export_wh = COALESCE(grid_export_wh + excluded.grid_export_wh,
                                           grid_export_wh, excluded.grid_export_wh)",
        )?;
        for (day, e) in &days {
            upsert.execute(rusqlite::params![
                day.to_string(),
                e.pv_wh,
                e.load_wh,
                e.grid_import_wh,
                e.grid_export_wh
            ])?;
        }
        drop(upsert);
        set_job_progress(&tx, JOB, chunk_end)?;
    }
    if let Some(day) = cutoff_day(now_ms, keep_days) {
        tx.execute("DELETE FROM inverter_energy_daily WHERE day < ?1", [day])?;
    }
    tx.commit()?;
    Ok(chunk_end < end)
}

/// The inverter's energy per day from `from` on, up to `now_ms`: the stored days, plus the
/// rows after the stored point counted here.
pub fn inverter_days(
    conn: &Connection,
    from: NaiveDate,
    now_ms: i64,
    max_gap: Duration,
) -> rusqlite::Result<BTreeMap<NaiveDate, InverterEnergy>> {
    let mut out: BTreeMap<NaiveDate, InverterEnergy> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT day, pv_wh, load_wh, grid_import_wh, grid_export_wh
         FROM inverter_energy_daily WHERE day >= ?1 ORDER BY day",
    )?;
    let rows = stmt.query_map([from.to_string()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            InverterEnergy {
                pv_wh: r.get(1)?,
                load_wh: r.get(2)?,
                grid_import_wh: r.get(3)?,
                grid_export_wh: r.get(4)?,
            },
        ))
    })?;
    for row in rows {
        let (day, e) = row?;
        if let Ok(day) = day.parse() {
            out.insert(day, e);
        }
    }
    // the rows not stored yet: since the stored point, or since `from`'s midnight where
    // nothing is stored (a reader beside no jkmon writer)
    let from_ms = start_of(from).map_or(0, |t| t.timestamp_millis());
    let stored = progress(conn)?.unwrap_or(i64::MIN).max(from_ms);
    if stored < now_ms {
        let gap_ms = i64::try_from(max_gap.as_millis()).unwrap_or(i64::MAX);
        let tail = integrate(
            conn,
            stored.saturating_sub(gap_ms),
            stored,
            now_ms + 1,
            max_gap,
        )?;
        for (day, e) in tail.into_iter().filter(|(d, _)| *d >= from) {
            out.entry(day).or_default().add(&e);
        }
    }
    Ok(out)
}

/// Watt-hours as kilowatt-hours to the watt-hour.
fn kwh(wh: f64) -> f64 {
    wh.round() / 1000.0
}

/// Kilowatt-hours to the watt-hour (a sum of rounded values, rounded again).
fn to_wh(kwh: f64) -> f64 {
    (kwh * 1000.0).round() / 1000.0
}

/// One battery's energy as the views show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnergyView {
    /// Since jkmon first read the battery; never decreasing.
    pub charged_kwh: f64,
    pub discharged_kwh: f64,
    /// Since local midnight.
    pub today_charged_kwh: f64,
    pub today_discharged_kwh: f64,
    /// The recent average power (W, positive = charging); only while the battery is online.
    pub average_power_w: Option<f64>,
    /// Remaining capacity × voltage, and full-charge capacity × voltage.
    pub stored_kwh: Option<f64>,
    pub full_kwh: Option<f64>,
    /// At the recent average power; `None` while idle, or going the other way.
    pub time_to_empty_s: Option<f64>,
    pub time_to_full_s: Option<f64>,
}

impl EnergyView {
    /// From a battery's counters, its newest snapshot, and whether it is online (an offline
    /// battery's average power is history, so it has no time left).
    pub fn new(
        counters: &Counters,
        today: NaiveDate,
        snapshot: Option<&SnapshotJson>,
        online: bool,
    ) -> EnergyView {
        let c = snapshot.map(|s| &s.cell_info);
        let average_w = counters.average_w.filter(|_| online);
        let outlook = match c {
            Some(c) => Outlook::new(
                c.remaining_capacity_ah,
                c.nominal_capacity_ah,
                c.total_voltage_v,
                average_w,
            ),
            None => Outlook::default(),
        };
        let full_wh = c.and_then(|c| Some(c.nominal_capacity_ah? * c.total_voltage_v));
        let day = counters.today_on(today);
        EnergyView {
            charged_kwh: kwh(counters.total.charged_wh),
            discharged_kwh: kwh(counters.total.discharged_wh),
            today_charged_kwh: kwh(day.charged_wh),
            today_discharged_kwh: kwh(day.discharged_wh),
            average_power_w: average_w.map(|w| (w * 10.0).round() / 10.0),
            stored_kwh: outlook.stored_wh.map(kwh),
            full_kwh: full_wh.map(kwh),
            time_to_empty_s: outlook.to_empty_s.map(f64::round),
            time_to_full_s: outlook.to_full_s.map(f64::round),
        }
    }

    /// The bank's: the batteries' sums, and the time left of their sums.
    pub fn bank<'a>(batteries: impl IntoIterator<Item = &'a EnergyView>) -> EnergyView {
        let mut out = EnergyView::default();
        for b in batteries {
            out.charged_kwh += b.charged_kwh;
            out.discharged_kwh += b.discharged_kwh;
            out.today_charged_kwh += b.today_charged_kwh;
            out.today_discharged_kwh += b.today_discharged_kwh;
            add_known(&mut out.average_power_w, b.average_power_w);
            add_known(&mut out.stored_kwh, b.stored_kwh);
            add_known(&mut out.full_kwh, b.full_kwh);
        }
        let o = Outlook::of_bank(
            out.stored_kwh.map(|k| k * 1000.0),
            out.full_kwh.map(|k| k * 1000.0),
            out.average_power_w,
        );
        out.time_to_empty_s = o.to_empty_s.map(f64::round);
        out.time_to_full_s = o.to_full_s.map(f64::round);
        out.charged_kwh = to_wh(out.charged_kwh);
        out.discharged_kwh = to_wh(out.discharged_kwh);
        out.today_charged_kwh = to_wh(out.today_charged_kwh);
        out.today_discharged_kwh = to_wh(out.today_discharged_kwh);
        out.stored_kwh = out.stored_kwh.map(to_wh);
        out.full_kwh = out.full_kwh.map(to_wh);
        out
    }
}

/// One battery's part of a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatteryDay {
    pub position: usize,
    pub name: String,
    pub charged_kwh: f64,
    pub discharged_kwh: f64,
}

/// One local day: the batteries' energy and the inverter's (`None` where there is no data).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnergyDay {
    pub date: NaiveDate,
    /// Every battery's, summed; `None` when no battery has a count that day.
    pub charged_kwh: Option<f64>,
    pub discharged_kwh: Option<f64>,
    pub batteries: Vec<BatteryDay>,
    pub pv_kwh: Option<f64>,
    pub load_kwh: Option<f64>,
    pub grid_import_kwh: Option<f64>,
    pub grid_export_kwh: Option<f64>,
}

impl EnergyDay {
    /// Puts battery `b`'s energy of this day in (replacing what it had), and sums again.
    pub fn set_battery(&mut self, b: &super::Battery, e: Energy) {
        self.batteries.retain(|d| d.position != b.position);
        self.batteries.push(BatteryDay {
            position: b.position,
            name: b.name.clone(),
            charged_kwh: kwh(e.charged_wh),
            discharged_kwh: kwh(e.discharged_wh),
        });
        self.batteries.sort_by_key(|d| d.position);
        self.charged_kwh = Some(to_wh(self.batteries.iter().map(|d| d.charged_kwh).sum()));
        self.discharged_kwh = Some(to_wh(self.batteries.iter().map(|d| d.discharged_kwh).sum()));
    }
}

/// The energy of a span (a month, a whole range): each quantity summed over the days that have
/// it — `None` where no day does, never 0 — and how many days had any data, so a month with
/// gaps says so.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnergySum {
    pub charged_kwh: Option<f64>,
    pub discharged_kwh: Option<f64>,
    pub pv_kwh: Option<f64>,
    pub load_kwh: Option<f64>,
    pub grid_import_kwh: Option<f64>,
    pub grid_export_kwh: Option<f64>,
    /// Days of the span with any value.
    pub days_with_data: u32,
    /// Days of the span asked about (a month so far counts to today).
    pub days: u32,
}

impl EnergySum {
    /// The sum of `days`.
    pub fn of(days: &[EnergyDay]) -> EnergySum {
        let add = |pick: fn(&EnergyDay) -> Option<f64>| -> Option<f64> {
            let known: Vec<f64> = days.iter().filter_map(pick).collect();
            (!known.is_empty()).then(|| to_wh(known.iter().sum()))
        };
        let has_data = |d: &EnergyDay| {
            d.charged_kwh.is_some()
                || d.discharged_kwh.is_some()
                || d.pv_kwh.is_some()
                || d.load_kwh.is_some()
                || d.grid_import_kwh.is_some()
                || d.grid_export_kwh.is_some()
        };
        EnergySum {
            charged_kwh: add(|d| d.charged_kwh),
            discharged_kwh: add(|d| d.discharged_kwh),
            pv_kwh: add(|d| d.pv_kwh),
            load_kwh: add(|d| d.load_kwh),
            grid_import_kwh: add(|d| d.grid_import_kwh),
            grid_export_kwh: add(|d| d.grid_export_kwh),
            days_with_data: days.iter().filter(|d| has_data(d)).count() as u32,
            days: days.len() as u32,
        }
    }
}

/// One local month's energy: `2026-12` and the sum of its days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyMonth {
    pub month: String,
    #[serde(flatten)]
    pub sum: EnergySum,
}

/// `days` (oldest first, consecutive) by local month, oldest first.
pub fn months(days: &[EnergyDay]) -> Vec<EnergyMonth> {
    let mut out: Vec<EnergyMonth> = Vec::new();
    let mut start = 0;
    for i in 1..=days.len() {
        let ends = i == days.len() || month_of(days[i].date) != month_of(days[start].date);
        if ends {
            out.push(EnergyMonth {
                month: month_of(days[start].date),
                sum: EnergySum::of(&days[start..i]),
            });
            start = i;
        }
    }
    out
}

fn month_of(day: NaiveDate) -> String {
    day.format("%Y-%m").to_string()
}

/// The days from the first of the month `months - 1` months before `today`'s to `today`.
pub fn days_for_months(today: NaiveDate, months: u32) -> u32 {
    let first = today.with_day(1).unwrap_or(today);
    let from = first
        .checked_sub_months(chrono::Months::new(months.max(1) - 1))
        .unwrap_or(first);
    (today - from).num_days() as u32 + 1
}

/// The last `days` local days up to `today` (oldest first), every one listed even without data.
pub fn days(
    conn: &Connection,
    batteries: &[super::Battery],
    today: NaiveDate,
    days: u32,
    now_ms: i64,
    max_gap: Duration,
) -> rusqlite::Result<Vec<EnergyDay>> {
    let from = today - chrono::Days::new(u64::from(days.max(1) - 1));
    let mut out: BTreeMap<NaiveDate, EnergyDay> = from
        .iter_days()
        .take_while(|d| *d <= today)
        .map(|date| {
            let day = EnergyDay {
                date,
                ..EnergyDay::default()
            };
            (date, day)
        })
        .collect();
    for b in batteries {
        for (day, e) in battery_days(conn, &b.device_key(), from)? {
            if let Some(d) = out.get_mut(&day) {
                d.set_battery(b, e);
            }
        }
    }
    for (day, e) in inverter_days(conn, from, now_ms, max_gap)? {
        if let Some(d) = out.get_mut(&day) {
            d.pv_kwh = e.pv_wh.map(kwh);
            d.load_kwh = e.load_wh.map(kwh);
            d.grid_import_kwh = e.grid_import_wh.map(kwh);
            d.grid_export_kwh = e.grid_export_wh.map(kwh);
        }
    }
    Ok(out.into_values().collect())
}

#[cfg(test)]
mod month_tests {
    use super::*;

    fn day(date: &str, charged: Option<f64>, pv: Option<f64>) -> EnergyDay {
        EnergyDay {
            date: date.parse().unwrap(),
            charged_kwh: charged,
            pv_kwh: pv,
            ..EnergyDay::default()
        }
    }

    #[test]
    fn months_sum_the_days_that_have_data_and_leave_a_month_without_any_unknown() {
        let days = [
            day("2026-10-30", Some(1.5), None),
            day("2026-10-31", None, None),
            day("2026-11-01", None, None),
            day("2026-11-02", None, None),
            day("2026-12-01", Some(2.0), Some(10.25)),
            day("2026-12-02", Some(0.5), None),
        ];
        let m = months(&days);
        let names: Vec<&str> = m.iter().map(|m| m.month.as_str()).collect();
        assert_eq!(names, ["2026-10", "2026-11", "2026-12"]);
        assert_eq!(m[0].sum.charged_kwh, Some(1.5));
        assert_eq!(m[0].sum.pv_kwh, None, "no day had PV: unknown, not 0");
        assert_eq!((m[0].sum.days_with_data, m[0].sum.days), (1, 2));
        assert_eq!(
            m[1].sum,
            EnergySum {
                days: 2,
                ..EnergySum::default()
            },
            "a gap"
        );
        assert_eq!(m[2].sum.charged_kwh, Some(2.5));
        assert_eq!(m[2].sum.pv_kwh, Some(10.25));
        let all = EnergySum::of(&days);
        assert_eq!(
            (all.charged_kwh, all.days_with_data, all.days),
            (Some(4.0), 3, 6)
        );
    }

    #[test]
    fn twelve_months_start_on_the_first_of_the_eleventh_month_before() {
        let today: NaiveDate = "2026-12-06".parse().unwrap();
        assert_eq!(days_for_months(today, 12), 340, "2026-01-01 to 2026-12-06");
        assert_eq!(days_for_months(today, 1), 6);
        let march: NaiveDate = "2026-03-31".parse().unwrap();
        assert_eq!(days_for_months(march, 2), 59, "February and March");
    }
}
