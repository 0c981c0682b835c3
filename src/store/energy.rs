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

use chrono::{DateTime, Local, NaiveDate, TimeZone};
use rusqlite::{named_params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::inverter::text_range;
use crate::battery::energy::{Energy, Meter, Step};

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

impl InverterEnergy {
    fn add(&mut self, other: &InverterEnergy) {
        let sum = |a: &mut Option<f64>, b: Option<f64>| {
            if let Some(b) = b {
                *a = Some(a.unwrap_or(0.0) + b);
            }
        };
        sum(&mut self.pv_wh, other.pv_wh);
        sum(&mut self.load_wh, other.load_wh);
        sum(&mut self.grid_import_wh, other.grid_import_wh);
        sum(&mut self.grid_export_wh, other.grid_export_wh);
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
    conn.query_row(
        "SELECT upto_ms FROM jkmon_progress WHERE job = ?1",
        [JOB],
        |r| r.get(0),
    )
    .optional()
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
        tx.execute(
            "INSERT INTO jkmon_progress (job, upto_ms) VALUES (?1, ?2)
             ON CONFLICT (job) DO UPDATE SET upto_ms = excluded.upto_ms",
            rusqlite::params![JOB, chunk_end],
        )?;
    }
    if keep_days > 0 {
        if let Some(cutoff) = DateTime::from_timestamp_millis(oldest_kept) {
            let cutoff = cutoff.with_timezone(&Local).date_naive().to_string();
            tx.execute(
                "DELETE FROM inverter_energy_daily WHERE day < ?1",
                [&cutoff],
            )?;
            tx.execute("DELETE FROM bms_energy_daily WHERE day < ?1", [&cutoff])?;
        }
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
    let from_ms = Local
        .from_local_datetime(&from.and_hms_opt(0, 0, 0).unwrap_or_default())
        .earliest()
        .map_or(0, |t| t.timestamp_millis());
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
