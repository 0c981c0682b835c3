//! The inverter's rows, aggregated for charts (`inverter_history`, see
//! `migrations/0004_inverter_history.sql`).
//!
//! The writer's maintenance makes complete 5-minute and hourly buckets from `readings`, a
//! bounded chunk at a time; `jkmon_progress` remembers how far each tier got. The rows are read
//! outside any write transaction (WAL: the inverter poller writes meanwhile) and only the
//! finished buckets are written, in a transaction of their own that holds the write lock for
//! a few milliseconds whatever the size of the table — the Python poller gives up after a 5 s
//! busy timeout. Charts read the buckets, plus the few rows since the last complete bucket
//! straight from `readings`, with the same SQL.

use super::jobs::{job_progress, set_job_progress, text_range};
use chrono::{DateTime, Utc};
use rusqlite::{named_params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::history::{Range, Retention, Stat};
use super::readings::parse_utc as parse_created_at;

/// Bucket widths of `inverter_history`, seconds.
pub const TIERS_S: [i64; 2] = [300, 3_600];
/// At most this much of `readings` is aggregated per tier in one maintenance run.
const CHUNK_MS: i64 = 7 * 86_400_000;
/// A bucket is made this long after its end, so rows still being written land in it.
const GRACE_MS: i64 = 60_000;
/// Rows a chart reads straight from `readings` at most (more: an even sample of them).
const RAW_ROWS_READ: i64 = 12_000;

/// `created_at` strings carry different offsets (or none), so the index on them narrows the
/// scan with [`text_range`]'s margin and `strftime` decides. "N/A" and other non-numbers are left out.
const BUCKETS_SQL: &str = "
    SELECT t / :bucket * :bucket AS b, COUNT(*) AS n,
           AVG(grid) AS g, MIN(grid) AS gmin, MAX(grid) AS gmax,
           AVG(load) AS l, MIN(load) AS lmin, MAX(load) AS lmax,
           AVG(pv) AS p, MIN(pv) AS pmin, MAX(pv) AS pmax, AVG(gv) AS v
    FROM (SELECT t,
                 CASE WHEN g GLOB '[0-9-]*' THEN CAST(g AS REAL) END AS grid,
                 CASE WHEN l GLOB '[0-9-]*' THEN CAST(l AS REAL) END AS load,
                 CASE WHEN p GLOB '[0-9-]*' THEN CAST(p AS REAL) END AS pv,
                 CASE WHEN v GLOB '[0-9-]*' THEN CAST(v AS REAL) END AS gv
          FROM (SELECT CAST(strftime('%s', created_at) AS INTEGER) AS t,
                       json_extract(payload, '$.grid_power') AS g,
                       json_extract(payload, '$.ac_output_power') AS l,
                       json_extract(payload, '$.pv_input_power') AS p,
                       json_extract(payload, '$.grid_voltage') AS v
                FROM readings
                WHERE created_at >= :lo AND created_at < :hi AND id % :stride = 0
                  AND CASE WHEN typeof(payload) = 'text' AND error IS NULL AND json_valid(payload)
                      THEN json_type(payload) = 'object'
                           AND (json_type(payload, '$.grid_power') IS NOT NULL
                                OR json_type(payload, '$.ac_output_power') IS NOT NULL)
                      ELSE 0 END))
    WHERE t >= :from AND t < :to
    GROUP BY b";

/// Runs [`BUCKETS_SQL`] for `[from_ms, to_ms)` (whole seconds) on every `stride`-th row (by
/// id; 1 = every row) and hands each bucket to `f`.
fn raw_buckets(
    conn: &Connection,
    bucket_s: i64,
    from_ms: i64,
    to_ms: i64,
    stride: i64,
    mut f: impl FnMut(&rusqlite::Row) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let (lo, hi) = text_range(from_ms, to_ms);
    let mut stmt = conn.prepare_cached(BUCKETS_SQL)?;
    let mut rows = stmt.query(named_params! {
        ":bucket": bucket_s, ":stride": stride.max(1), ":lo": lo, ":hi": hi,
        ":from": from_ms.div_euclid(1000), ":to": (to_ms + 999).div_euclid(1000),
    })?;
    while let Some(row) = rows.next()? {
        f(row)?;
    }
    Ok(())
}

fn job(bucket_s: i64) -> String {
    format!("inverter_history_{bucket_s}")
}

/// One finished bucket, as read from `readings`.
struct Made {
    ts_ms: i64,
    rows: i64,
    values: [Option<f64>; 10],
}

/// When the first row of `readings` was written (`None`: no row, or no time that reads).
pub(super) fn first_row_ms(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let first: Option<String> = conn
        .query_row(
            "SELECT created_at FROM readings ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(first
        .as_deref()
        .and_then(parse_created_at)
        .map(|t| t.timestamp_millis()))
}

/// Makes the next chunk of complete buckets of each tier and expires old ones: the rows are
/// read first, with no write lock; then one short immediate transaction per tier writes the
/// buckets and the progress. Returns the buckets made and whether more is waiting (call again
/// soon).
pub fn aggregate(
    conn: &mut Connection,
    now_ms: i64,
    retention: &Retention,
    energy_max_gap: std::time::Duration,
) -> rusqlite::Result<(usize, bool)> {
    let Some(first_ms) = first_row_ms(conn)? else {
        return Ok((0, false));
    };
    let (mut made, mut more) = (0, false);
    for bucket_s in TIERS_S {
        let width = bucket_s * 1000;
        let days = if bucket_s == 300 {
            retention.five_min_days
        } else {
            retention.hourly_days
        };
        let oldest_kept = if days == 0 {
            i64::MIN
        } else {
            now_ms - i64::from(days) * 86_400_000
        };
        let upto = progress(conn, bucket_s)?;
        let start = upto.unwrap_or(first_ms.max(oldest_kept)).div_euclid(width) * width;
        let end = (now_ms - GRACE_MS).div_euclid(width) * width;
        let chunk_end = end.min(start + CHUNK_MS);
        // read: no lock beyond the snapshot every reader has
        let buckets = if chunk_end > start {
            read_buckets(conn, bucket_s, start, chunk_end)?
        } else {
            Vec::new()
        };
        // write: only what was made, and how far
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if chunk_end > start {
            write_buckets(&tx, bucket_s, &buckets, chunk_end)?;
            made += buckets.len();
            more |= chunk_end < end;
        }
        if days > 0 {
            tx.execute(
                "DELETE FROM inverter_history WHERE bucket_s = ?1 AND ts_ms < ?2",
                [bucket_s, oldest_kept],
            )?;
        }
        tx.commit()?;
    }
    more |= super::energy::aggregate_inverter(
        conn,
        now_ms,
        first_ms,
        energy_max_gap,
        retention.hourly_days,
    )?;
    Ok((made, more))
}

/// The complete `bucket_s` buckets of `[start, end)`, read from `readings`.
fn read_buckets(
    conn: &Connection,
    bucket_s: i64,
    start: i64,
    end: i64,
) -> rusqlite::Result<Vec<Made>> {
    let mut buckets = Vec::new();
    raw_buckets(conn, bucket_s, start, end, 1, |r| {
        let mut values = [None; 10];
        for (i, v) in values.iter_mut().enumerate() {
            *v = r.get(2 + i)?;
        }
        buckets.push(Made {
            ts_ms: r.get::<_, i64>(0)? * 1000,
            rows: r.get(1)?,
            values,
        });
        Ok(())
    })?;
    Ok(buckets)
}

/// Writes `buckets` of one tier and that it is done up to `upto_ms`.
fn write_buckets(
    tx: &rusqlite::Transaction,
    bucket_s: i64,
    buckets: &[Made],
    upto_ms: i64,
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO inverter_history
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for b in buckets {
        let v = &b.values;
        insert.execute(rusqlite::params![
            bucket_s, b.ts_ms, b.rows, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]
        ])?;
    }
    set_job_progress(tx, &job(bucket_s), upto_ms)
}

/// How far a tier is aggregated (`None`: not begun).
fn progress(conn: &Connection, bucket_s: i64) -> rusqlite::Result<Option<i64>> {
    job_progress(conn, &job(bucket_s))
}

/// One chart bucket of the inverter's rows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InverterPoint {
    pub t: DateTime<Utc>,
    /// Rows in the bucket (estimated when `sampled`).
    pub rows: u32,
    /// Read from an even sample of the rows: that stretch is not aggregated yet.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sampled: bool,
    pub grid_power_w: Option<Range>,
    pub load_power_w: Option<Range>,
    pub pv_power_w: Option<Range>,
}

#[derive(Default)]
struct Fold {
    rows: u32,
    grid: Stat,
    load: Stat,
    pv: Stat,
}

/// Reads the 3 × (avg, min, max) of a bucket row starting at column `i`, folding into `fold`.
fn fold_row(fold: &mut Fold, r: &rusqlite::Row, i: usize, n: u32) -> rusqlite::Result<()> {
    fold.rows += n;
    for (k, stat) in [&mut fold.grid, &mut fold.load, &mut fold.pv]
        .into_iter()
        .enumerate()
    {
        let avg: Option<f64> = r.get(i + 3 * k)?;
        if let Some(avg) = avg {
            stat.fold(n, avg, r.get(i + 3 * k + 1)?, r.get(i + 3 * k + 2)?);
        }
    }
    Ok(())
}

/// Folds the rows of `readings` in `[from_ms, to_ms)` into `folds` (keyed by the start of
/// their `width` ms chart bucket), `raw_width` s at a time. A long stretch not aggregated yet
/// (right after an upgrade, or `jkmon web` before its catch-up) is read as an even sample of
/// rows, which keeps the chart fast; `true` when it was.
fn fold_raw(
    conn: &Connection,
    raw_width: i64,
    (from_ms, to_ms): (i64, i64),
    width: i64,
    folds: &mut std::collections::BTreeMap<i64, Fold>,
) -> rusqlite::Result<bool> {
    let rows: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM readings WHERE created_at >= ?1 AND created_at < ?2")?
        .query_row(<[String; 2]>::from(text_range(from_ms, to_ms)), |r| {
            r.get(0)
        })?;
    let stride = (rows / RAW_ROWS_READ).max(1);
    raw_buckets(conn, raw_width, from_ms, to_ms, stride, |r| {
        let b: i64 = r.get(0)?;
        let n: u32 = r.get(1)?;
        let key = (b * 1000).div_euclid(width) * width;
        fold_row(folds.entry(key).or_default(), r, 2, n * stride as u32)
    })?;
    Ok(stride > 1)
}

/// The inverter's chart points in `[from, to)`, `bucket_s` wide: from the aggregated tier when
/// the bucket allows it (plus the latest rows straight from `readings`), else from `readings`.
pub fn points(
    conn: &Connection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket_s: i64,
    now_ms: i64,
    retention: &Retention,
) -> rusqlite::Result<Vec<InverterPoint>> {
    let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
    let width = bucket_s * 1000;
    let mut folds: std::collections::BTreeMap<i64, Fold> = Default::default();
    let key = |ts_ms: i64| ts_ms.div_euclid(width) * width;
    let kept = |days: u32| days == 0 || from_ms >= now_ms - i64::from(days) * 86_400_000;
    let tier = if bucket_s < 300 {
        None
    } else if bucket_s >= 3_600 || !kept(retention.five_min_days) {
        Some(3_600)
    } else {
        Some(300)
    };
    let mut raw_from = from_ms;
    if let Some(tier) = tier {
        let upto = progress(conn, tier)?.unwrap_or(i64::MIN);
        let mut stmt = conn.prepare_cached(
            "SELECT ts_ms, rows, grid_power_w, grid_power_min_w, grid_power_max_w, load_power_w,
                    load_power_min_w, load_power_max_w, pv_power_w, pv_power_min_w, pv_power_max_w
             FROM inverter_history WHERE bucket_s = ?1 AND ts_ms >= ?2 AND ts_ms < ?3
             ORDER BY ts_ms",
        )?;
        let mut rows = stmt.query([tier, from_ms, to_ms.min(upto)])?;
        while let Some(r) = rows.next()? {
            let ts: i64 = r.get(0)?;
            fold_row(folds.entry(key(ts)).or_default(), r, 2, r.get(1)?)?;
        }
        raw_from = from_ms.max(upto);
    }
    let sampled = if raw_from < to_ms {
        let raw_width = tier.unwrap_or(bucket_s).min(bucket_s);
        fold_raw(conn, raw_width, (raw_from, to_ms), width, &mut folds)?
    } else {
        false
    };
    let range = |s: &Stat| {
        s.avg().map(|avg| Range {
            avg: (avg * 10.0).round() / 10.0,
            min: s.min,
            max: s.max,
        })
    };
    Ok(folds
        .into_iter()
        .map(|(ts, f)| InverterPoint {
            t: DateTime::from_timestamp_millis(ts).unwrap_or_default(),
            rows: f.rows,
            sampled,
            grid_power_w: range(&f.grid),
            load_power_w: range(&f.load),
            pv_power_w: range(&f.pv),
        })
        .collect())
}

/// The chart catch-up for a process without the database writer (`jkmon web` alone): a
/// thread with its own connection that aggregates the inverter's rows chunk after chunk,
/// then once an hour. Its write transactions are as short as the writer's.
pub struct Aggregator {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    interrupt: rusqlite::InterruptHandle,
}

impl Aggregator {
    pub fn start(
        path: &std::path::Path,
        busy_timeout: std::time::Duration,
        retention: Retention,
        energy_max_gap: std::time::Duration,
    ) -> rusqlite::Result<Aggregator> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
        let interrupt = conn.get_interrupt_handle();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("jkmon-charts".into())
            .spawn(move || loop {
                let wait = match aggregate(&mut conn, super::now_ms(), &retention, energy_max_gap) {
                    Ok((made, true)) => {
                        tracing::info!(
                            "history: aggregating the inverter's rows for charts ({made} bucket(s) in this chunk)…"
                        );
                        std::time::Duration::ZERO
                    }
                    Ok((_, false)) => {
                        // caught up: what the catch-up gathered goes back until the next hour
                        let _ = conn.execute_batch("PRAGMA shrink_memory");
                        super::trim_heap();
                        std::time::Duration::from_secs(3_600)
                    }
                    Err(e) => {
                        tracing::debug!("history: chart catch-up stopped: {e}");
                        std::time::Duration::from_secs(3_600)
                    }
                };
                match stopped.recv_timeout(wait) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Aggregator {
            stop: Some(stop),
            thread: Some(thread),
            interrupt,
        })
    }

    /// Ends the thread, interrupting a chunk in progress (it is read again next time).
    pub fn stop(mut self) {
        drop(self.stop.take());
        self.interrupt.interrupt();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
