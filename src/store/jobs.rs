//! What the store's background jobs share: how far each got (`jkmon_progress`), and the
//! `created_at` text range that holds the `readings` rows of a time range whatever their
//! writers' formats. Used by the chart aggregation ([`super::inverter`]) and the energy count
//! ([`super::energy`]).

use chrono::DateTime;
use rusqlite::{Connection, OptionalExtension};

/// `created_at` strings with an offset sort by local time, up to 14 h away from UTC; the text
/// range read through the index is widened by this much on each side.
const OFFSET_MARGIN_MS: i64 = 15 * 3_600_000;

/// `ms` as a `created_at` string to compare with: `separator` ' ' sorts before every time of
/// that date written with 'T', so a lower bound with ' ' and an upper bound with 'T' take in
/// both ways of writing a date and time.
fn text_bound(ms: i64, separator: char) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format(&format!("%Y-%m-%d{separator}%H:%M:%S"))
        .to_string()
}

/// The `created_at` text range `[lo, hi)` that holds every row of `[from_ms, to_ms)`, whatever
/// mix of offsets, naive UTC, 'T' or ' ' its writers used (a superset: check each row's time).
pub(super) fn text_range(from_ms: i64, to_ms: i64) -> (String, String) {
    (
        text_bound(from_ms - OFFSET_MARGIN_MS, ' '),
        text_bound(to_ms.saturating_add(OFFSET_MARGIN_MS), 'T'),
    )
}

/// How far background job `job` got (unix ms; `None`: not begun).
pub(super) fn job_progress(conn: &Connection, job: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT upto_ms FROM jkmon_progress WHERE job = ?1",
        [job],
        |r| r.get(0),
    )
    .optional()
}

/// Records that background job `job` got up to `upto_ms`.
pub(super) fn set_job_progress(
    tx: &rusqlite::Transaction,
    job: &str,
    upto_ms: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO jkmon_progress (job, upto_ms) VALUES (?1, ?2)
         ON CONFLICT (job) DO UPDATE SET upto_ms = excluded.upto_ms",
        rusqlite::params![job, upto_ms],
    )?;
    Ok(())
}
