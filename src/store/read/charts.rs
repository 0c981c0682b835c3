//! The charts' points (aggregated on the server) and the legacy history rows, paged.

use super::status::{self as status_reads, parse_created_at};
use super::ReadConfig;
use crate::store::history::Range;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use crate::report::json::TemperaturesC;
use crate::store::history::{self, Bucket, HistoryRow};
use crate::store::inverter::InverterPoint;
use crate::store::StoreError;

/// One history bucket of one battery, in display units.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatteryPoint {
    /// Start of the bucket.
    pub t: DateTime<Utc>,
    pub samples: u32,
    pub voltage_v: Range,
    pub current_a: Option<Range>,
    pub power_w: Option<Range>,
    pub soc_pct: Option<Range>,
    /// Averages of the sensors that reported in the bucket.
    pub temperatures_c: TemperaturesC,
    pub cell_min_v: Option<f64>,
    pub cell_max_v: Option<f64>,
    pub cell_delta_v: Option<Range>,
    /// Every cell's average, cell 1 first.
    pub cells_v: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatteryHistory {
    pub position: usize,
    pub name: String,
    pub points: Vec<BatteryPoint>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryView {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket_s: i64,
    pub batteries: Vec<BatteryHistory>,
    pub inverter: Vec<InverterPoint>,
}

/// Bucket widths a chart may use, in seconds.
pub const BUCKETS_S: [i64; 10] = [
    30, 60, 300, 900, 1_800, 3_600, 10_800, 21_600, 43_200, 86_400,
];

/// The bucket for a range: the smallest width that gives at most ~300 points.
pub fn bucket_for(range_s: i64) -> i64 {
    let want = (range_s / 300).max(1);
    BUCKETS_S
        .iter()
        .copied()
        .find(|b| *b >= want)
        .unwrap_or(86_400)
}

/// History of the batteries at `positions` (all when empty) and of the inverter in
/// `[from, to)`, folded into `bucket_s` buckets from the finest tier that still covers `from`.
/// `from` moves back to the start of its bucket, so the first point is a whole bucket.
pub fn history(
    conn: &Connection,
    config: &ReadConfig,
    positions: &[usize],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket_s: i64,
    now: DateTime<Utc>,
) -> Result<HistoryView, StoreError> {
    // whole buckets: the first one starts at or before `from`
    let from = DateTime::from_timestamp(from.timestamp().div_euclid(bucket_s) * bucket_s, 0)
        .unwrap_or(from);
    let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
    let kept =
        |days: u32| days == 0 || from_ms >= now.timestamp_millis() - i64::from(days) * 86_400_000;
    let tier = if bucket_s < 300 || kept(config.retention.raw_days) {
        0
    } else if bucket_s < 3_600 || kept(config.retention.five_min_days) {
        300
    } else {
        3_600
    };
    let width_ms = bucket_s * 1000;
    let mut batteries = Vec::new();
    for b in &status_reads::batteries(conn, config)? {
        if !positions.is_empty() && !positions.contains(&b.position) {
            continue;
        }
        let id: Option<i64> = conn
            .query_row(
                "SELECT id FROM bms_devices WHERE device_key = ?1",
                [b.device_key()],
                |r| r.get(0),
            )
            .optional()?;
        let rows = match id {
            Some(id) => history::rows(conn, id, tier, from_ms, to_ms)?,
            None => Vec::new(),
        };
        batteries.push(BatteryHistory {
            position: b.position,
            name: b.name.clone(),
            points: fold(&rows, width_ms),
        });
    }
    Ok(HistoryView {
        from,
        to,
        bucket_s,
        batteries,
        inverter: crate::store::inverter::points(
            conn,
            from,
            to,
            bucket_s,
            now.timestamp_millis(),
            &config.retention,
        )?,
    })
}

fn fold(rows: &[HistoryRow], width_ms: i64) -> Vec<BatteryPoint> {
    let mut points = Vec::new();
    let mut current: Option<(i64, Bucket)> = None;
    for row in rows {
        let start = row.ts_ms.div_euclid(width_ms) * width_ms;
        if current.as_ref().is_some_and(|(s, _)| *s != start) {
            let (s, b) = current.take().expect("checked");
            points.push(point(s, &b));
        }
        current
            .get_or_insert_with(|| (start, Bucket::default()))
            .1
            .add_row(row);
    }
    if let Some((s, b)) = current {
        points.push(point(s, &b));
    }
    points
}

fn point(start_ms: i64, b: &Bucket) -> BatteryPoint {
    let range = |s: &history::Stat, scale: f64| {
        s.avg().map(|avg| Range {
            avg: round(avg * scale),
            min: round(s.min * scale),
            max: round(s.max * scale),
        })
    };
    // `temps_dc` is mos, t1 … t5
    let t = |i: usize| b.temps_dc[i].avg().map(|avg| round(avg / 10.0));
    let temperatures_c = TemperaturesC {
        mos: t(0),
        t1: t(1),
        t2: t(2),
        t3: t(3),
        t4: t(4),
        t5: t(5),
    };
    BatteryPoint {
        t: DateTime::from_timestamp_millis(start_ms).unwrap_or_default(),
        samples: b.samples,
        voltage_v: range(&b.voltage_mv, 1e-3).unwrap_or(Range {
            avg: 0.0,
            min: 0.0,
            max: 0.0,
        }),
        current_a: range(&b.current_ma, 1e-3),
        power_w: range(&b.power_w, 1.0),
        soc_pct: range(&b.soc_pct, 1.0),
        temperatures_c,
        cell_min_v: b.cell_uv.avg().map(|_| round(b.cell_uv.min * 1e-6)),
        cell_max_v: b.cell_uv.avg().map(|_| round(b.cell_uv.max * 1e-6)),
        cell_delta_v: range(&b.cell_delta_uv, 1e-6),
        cells_v: b
            .cells_uv
            .iter()
            .map(|s| s.avg().map(|v| round(v * 1e-6)).unwrap_or(0.0))
            .collect(),
    }
}

/// Four decimals: enough for millivolts and milliamps, small in JSON.
fn round(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// The Python monitor's `/history` rows, newest first, written to `out` as the JSON array its
/// route answers (`[{"created_at", "payload", "error"}, …]`) piece by piece: `out` gets a
/// chunk of about [`HISTORY_CHUNK`] bytes at a time and returns `false` to stop (the client
/// went away). Memory stays the same whatever the range. `days`: every row of the last `days`
/// days; `None`: the newest 200, as the Python route does without a valid `days`.
///
/// Rows are read backwards through the index on `created_at` (no sort, no growing memory),
/// from the lower end of `jobs::text_range`, and each row's time is then checked exactly.
/// They are read [`HISTORY_PAGE`] rows at a time, each page a read transaction of its own,
/// and handed to `out` only between pages: a client that reads slowly never holds a read
/// transaction open, so the writer's WAL checkpoints go on.
pub fn legacy_history(
    conn: &Connection,
    days: Option<f64>,
    now: DateTime<Utc>,
    mut out: impl FnMut(Vec<u8>) -> bool,
) -> Result<usize, StoreError> {
    let from_ms = days.map(|d| now.timestamp_millis() - (d * 86_400_000.0) as i64);
    let lower = from_ms.map(|ms| crate::store::jobs::text_range(ms, i64::MAX).0);
    let mut buf = Vec::with_capacity(HISTORY_CHUNK + 4_096);
    buf.push(b'[');
    let mut written = 0usize;
    // the last row handed out: the next page starts below it
    let mut after: Option<(String, i64)> = None;
    loop {
        // each a range of the index on created_at (whose entries end with the id)
        let mut stmt;
        let mut rows = match (&lower, &after) {
            (Some(lower), None) => {
                stmt = conn.prepare_cached(
                    "SELECT id, created_at, payload, error FROM readings WHERE created_at >= ?1
                     ORDER BY created_at DESC, id DESC LIMIT ?2",
                )?;
                stmt.query(rusqlite::params![lower, HISTORY_PAGE as i64])?
            }
            (Some(lower), Some((at, id))) => {
                stmt = conn.prepare_cached(
                    "SELECT id, created_at, payload, error FROM readings
                     WHERE created_at >= ?1 AND (created_at, id) < (?2, ?3)
                     ORDER BY created_at DESC, id DESC LIMIT ?4",
                )?;
                stmt.query(rusqlite::params![lower, at, id, HISTORY_PAGE as i64])?
            }
            (None, _) => {
                stmt = conn.prepare_cached(
                    "SELECT id, created_at, payload, error FROM readings ORDER BY id DESC LIMIT 200",
                )?;
                stmt.query([])?
            }
        };
        let mut in_page = 0usize;
        while let Some(r) = rows.next()? {
            in_page += 1;
            if history_row(r, from_ms, &mut after, &mut buf, written > 0)? {
                written += 1;
            }
        }
        drop(rows);
        drop(stmt);
        // the page's read transaction has ended: now the client may take its time
        let done = from_ms.is_none() || in_page < HISTORY_PAGE;
        if done {
            break;
        }
        if buf.len() >= HISTORY_CHUNK
            && !out(std::mem::replace(
                &mut buf,
                Vec::with_capacity(HISTORY_CHUNK + 4_096),
            ))
        {
            return Ok(written);
        }
    }
    buf.push(b']');
    out(buf);
    Ok(written)
}

/// One `/history` row into `buf` (after a comma where `comma`): `false` for a row outside the
/// range (its text range is a superset). `after` becomes this row, where the next page starts.
fn history_row(
    r: &rusqlite::Row,
    from_ms: Option<i64>,
    after: &mut Option<(String, i64)>,
    buf: &mut Vec<u8>,
    comma: bool,
) -> Result<bool, StoreError> {
    let text = |i| match r.get_ref(i) {
        Ok(rusqlite::types::ValueRef::Text(t)) => std::str::from_utf8(t).ok(),
        _ => None,
    };
    let created_at = text(1).unwrap_or_default();
    *after = Some((created_at.to_string(), r.get(0)?));
    if let Some(from_ms) = from_ms {
        match parse_created_at(created_at) {
            Some(t) if t.timestamp_millis() >= from_ms => {}
            _ => return Ok(false),
        }
    }
    if comma {
        buf.push(b',');
    }
    // the payload as the JSON it holds (not re-parsed into a tree), or null
    let payload =
        text(2).and_then(|p| serde_json::from_str::<&serde_json::value::RawValue>(p).ok());
    #[derive(Serialize)]
    struct Row<'a> {
        created_at: &'a str,
        payload: Option<&'a serde_json::value::RawValue>,
        error: Option<&'a str>,
    }
    serde_json::to_writer(
        &mut *buf,
        &Row {
            created_at,
            payload,
            error: text(3),
        },
    )
    .map_err(|e| StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
    Ok(true)
}

/// Rows read per read transaction in [`legacy_history`].
pub const HISTORY_PAGE: usize = 200;

/// The size of the pieces [`legacy_history`] hands out.
pub const HISTORY_CHUNK: usize = 64 * 1024;
