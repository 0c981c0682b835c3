//! What jkmon may do to the inverter monitor's `readings` table, which other programs (the
//! Python poller, its web and its bot) read as the truth about the inverter.
//!
//! Two rules keep them from being told something the inverter did not say:
//! - **Own rows** (battery keys, no inverter key) are only for a set-up without an inverter:
//!   a table that has never held an inverter row, or `JKMON_OWN_ROWS=on`. Beside an inverter
//!   that went quiet, such a row would read as "no grid" to the Python bot. [`decide`] makes
//!   that choice at start and says why; [`OwnRows::Auto`] gives up own rows for good as soon as
//!   an inverter row appears.
//! - **Merging** touches only the newest row, only when it was inserted after jkmon started and
//!   its `created_at` is at most `INVERTER_TIMEOUT_SEC` old ([`Target`]). A naive `created_at`
//!   is UTC (the Python poller's `utcnow()`).
//!
//! Rows jkmon inserts take the `created_at` format the table already uses ([`CreatedAtFormat`]),
//! so the Python web's string comparisons with SQLite's `datetime('now')` stay right.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use rusqlite::{Connection, OptionalExtension};

/// `JKMON_OWN_ROWS`: whether jkmon may insert rows of its own into `readings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnRows {
    /// Only while the table has never held an inverter row.
    #[default]
    Auto,
    /// Always (a BMS-only set-up that wants a row every interval whatever else writes).
    On,
    /// Never: jkmon only merges into the inverter's rows.
    Off,
    /// Never, because jkmon polls the inverter itself: every row it inserts is an inverter
    /// row with the battery keys in it (set by the service, not a value of the variable).
    OwnPoller,
}

impl FromStr for OwnRows {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(OwnRows::Auto),
            "on" | "yes" | "true" | "1" => Ok(OwnRows::On),
            "off" | "no" | "false" | "0" => Ok(OwnRows::Off),
            _ => Err("expected auto, on or off".into()),
        }
    }
}

/// SQL: 1 when the row `r` is one of jkmon's own (never an error for a payload that is not JSON).
pub const IS_OWN_SQL: &str =
    "(CASE WHEN typeof(r.payload) = 'text' AND r.error IS NULL AND json_valid(r.payload) \
     THEN json_extract(r.payload, '$.source') IS 'jkmon' ELSE 0 END)";

/// SQL: 1 when the row `r` carries a JSON object jkmon can merge into: text (not a BLOB, which
/// SQLite would read as JSON too), valid JSON, an object — the test of
/// `migrations/0006_merge_guard.sql`.
pub const IS_OBJECT_SQL: &str =
    "(CASE WHEN typeof(r.payload) = 'text' AND r.error IS NULL AND json_valid(r.payload) \
     THEN json_type(r.payload) = 'object' ELSE 0 END)";

/// Whether jkmon inserts its own rows, and why — for the log and `jkmon doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub own_rows: bool,
    pub why: String,
}

/// The newest row that is not jkmon's own: `(id, created_at)`.
pub fn newest_inverter_row(conn: &Connection) -> rusqlite::Result<Option<(i64, String)>> {
    conn.query_row(
        &format!("SELECT r.id, r.created_at FROM readings AS r WHERE NOT {IS_OWN_SQL} ORDER BY r.id DESC LIMIT 1"),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Decides whether jkmon inserts its own rows, from the setting and what the table holds.
pub fn decide(conn: &Connection, setting: OwnRows) -> rusqlite::Result<Decision> {
    // the table is looked at only where the setting leaves the choice to it
    let newest = match setting {
        OwnRows::Auto => newest_inverter_row(conn)?,
        _ => None,
    };
    Ok(match (setting, newest) {
        (OwnRows::On, _) => Decision {
            own_rows: true,
            why: "JKMON_OWN_ROWS=on: jkmon inserts a row of its own every interval when no fresh inverter row is there to merge into".into(),
        },
        (OwnRows::OwnPoller, _) => Decision {
            own_rows: false,
            why: "jkmon polls the inverter itself: each of its rows is an inverter row with the battery keys merged in".into(),
        },
        (OwnRows::Off, _) => Decision {
            own_rows: false,
            why: "JKMON_OWN_ROWS=off: jkmon only merges battery keys into the inverter's rows".into(),
        },
        (OwnRows::Auto, Some((id, created_at))) => Decision {
            own_rows: false,
            why: format!(
                "the table holds inverter rows (the newest is #{id}, {created_at}): jkmon merges battery keys into the inverter's fresh rows and inserts none of its own, so no reader takes a battery-only row for a grid outage"
            ),
        },
        (OwnRows::Auto, None) => Decision {
            own_rows: true,
            why: "the table has never held an inverter row: jkmon inserts a row of its own every interval (a BMS-only set-up); the first inverter row ends that for good (JKMON_OWN_ROWS=off never inserts)".into(),
        },
    })
}

/// How a table writes `created_at`, learnt from its rows, so that jkmon's rows match them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatedAtFormat {
    /// `None`: naive UTC (`2026-11-27T04:27:04`); else this fixed offset (`+02:00`).
    pub offset: Option<FixedOffset>,
    /// `'T'`, or `' '` as SQLite's `datetime()` writes it.
    pub separator: char,
    /// Digits of the fraction of a second: 0, 3 or 6.
    pub fraction_digits: u8,
}

impl Default for CreatedAtFormat {
    /// The Python poller's `datetime.utcnow().isoformat(timespec="seconds")`.
    fn default() -> Self {
        CreatedAtFormat {
            offset: None,
            separator: 'T',
            fraction_digits: 0,
        }
    }
}

impl CreatedAtFormat {
    /// The format of `sample`, or `None` when it is no date jkmon can read.
    pub fn of(sample: &str) -> Option<CreatedAtFormat> {
        let sample = sample.trim();
        let time = parse(sample)?;
        let separator = if sample.as_bytes().get(10) == Some(&b' ') {
            ' '
        } else {
            'T'
        };
        let fraction = sample
            .get(19..)
            .filter(|rest| rest.starts_with('.'))
            .map(|rest| rest[1..].bytes().take_while(u8::is_ascii_digit).count())
            .unwrap_or(0);
        let fraction_digits = match fraction {
            0 => 0,
            1..=3 => 3,
            _ => 6,
        };
        Some(CreatedAtFormat {
            offset: time.offset,
            separator,
            fraction_digits,
        })
    }

    /// The format of the newest row of `readings` (inverter rows first), or the default for
    /// an empty table.
    pub fn learn(conn: &Connection) -> rusqlite::Result<CreatedAtFormat> {
        let sample = match newest_inverter_row(conn)? {
            Some((_, created_at)) => Some(created_at),
            None => conn
                .query_row(
                    "SELECT created_at FROM readings ORDER BY id DESC LIMIT 1",
                    [],
                    |r| r.get::<_, String>(0),
                )
                .optional()?,
        };
        Ok(sample
            .as_deref()
            .and_then(CreatedAtFormat::of)
            .unwrap_or_default())
    }

    /// `t` written in this format.
    pub fn format(&self, t: DateTime<Utc>) -> String {
        let pattern = match (self.separator, self.fraction_digits) {
            (' ', 3) => "%Y-%m-%d %H:%M:%S%.3f",
            (' ', 6) => "%Y-%m-%d %H:%M:%S%.6f",
            (' ', _) => "%Y-%m-%d %H:%M:%S",
            (_, 3) => "%Y-%m-%dT%H:%M:%S%.3f",
            (_, 6) => "%Y-%m-%dT%H:%M:%S%.6f",
            _ => "%Y-%m-%dT%H:%M:%S",
        };
        match self.offset {
            None => t.naive_utc().format(pattern).to_string(),
            Some(offset) => {
                let local = t.with_timezone(&offset);
                format!("{}{}", local.format(pattern), local.format("%:z"))
            }
        }
    }
}

/// A `created_at` read: the instant, and the offset it was written with (`None`: naive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatedAt {
    pub utc: DateTime<Utc>,
    pub offset: Option<FixedOffset>,
}

/// Reads a `created_at` in any form the monitor's writers use: ISO 8601 with an offset or `Z`,
/// or naive (UTC), with `T` or a space, with or without a fraction.
/// `created_at` as the inverter monitor writes it: ISO 8601 with an offset, or without one
/// (then UTC, as its BMS branch wrote it).
pub fn parse_utc(s: &str) -> Option<DateTime<Utc>> {
    parse(s).map(|c| c.utc)
}

pub fn parse(s: &str) -> Option<CreatedAt> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(CreatedAt {
            utc: t.with_timezone(&Utc),
            offset: (!s.ends_with('Z') && !s.ends_with('z')).then(|| *t.offset()),
        });
    }
    let t = s.replacen(' ', "T", 1);
    if let Ok(t) = DateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f%:z") {
        return Some(CreatedAt {
            utc: t.with_timezone(&Utc),
            offset: Some(*t.offset()),
        });
    }
    NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| CreatedAt {
            utc: n.and_utc(),
            offset: None,
        })
}

/// The newest row of `readings`, as [`Target::judge`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newest {
    pub id: i64,
    pub created_at: String,
    /// Its payload is a JSON object and it is no error row.
    pub object: bool,
    /// One of jkmon's own rows.
    pub own: bool,
}

impl Newest {
    pub fn read(conn: &Connection) -> rusqlite::Result<Option<Newest>> {
        conn.query_row(
            &format!(
                "SELECT r.id, r.created_at, {IS_OBJECT_SQL}, {IS_OWN_SQL}
                 FROM readings AS r ORDER BY r.id DESC LIMIT 1"
            ),
            [],
            |r| {
                Ok(Newest {
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    object: r.get(2)?,
                    own: r.get(3)?,
                })
            },
        )
        .optional()
    }
}

/// What may be done with the newest row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A fresh inverter row inserted since jkmon started: merge into it.
    Merge(i64),
    /// A fresh inverter error row (or a payload that is no JSON object): left as it is.
    ErrorRow(i64),
    /// Nothing fresh from the inverter: no row is touched. The text says why.
    Quiet(String),
}

/// Which rows jkmon may merge into: only rows inserted after it started, only while fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Rows up to this id existed before jkmon started; none of them is ever changed.
    pub existing_max_id: i64,
    /// For a `created_at` that is no readable date: when jkmon first saw that row.
    first_seen: Option<(i64, i64)>,
}

impl Target {
    pub fn new(existing_max_id: i64) -> Target {
        Target {
            existing_max_id,
            first_seen: None,
        }
    }

    /// Judges the newest row at `now` with `INVERTER_TIMEOUT_SEC` = `timeout`.
    pub fn judge(
        &mut self,
        newest: Option<&Newest>,
        now: DateTime<Utc>,
        timeout: Duration,
    ) -> Verdict {
        let Some(row) = newest else {
            return Verdict::Quiet("readings is empty".into());
        };
        if row.own {
            return Verdict::Quiet(format!(
                "the newest row #{} is one of jkmon's own, no inverter row since",
                row.id
            ));
        }
        if row.id <= self.existing_max_id {
            return Verdict::Quiet(format!(
                "the newest row #{} was there before jkmon started, and such rows are never changed",
                row.id
            ));
        }
        let now_ms = now.timestamp_millis();
        let written_ms = match parse(&row.created_at) {
            Some(t) => t.utc.timestamp_millis(),
            None => match self.first_seen {
                Some((id, seen)) if id == row.id => seen,
                _ => {
                    self.first_seen = Some((row.id, now_ms));
                    now_ms
                }
            },
        };
        let timeout_ms = timeout.as_millis() as i64;
        let age_ms = now_ms - written_ms;
        if age_ms > timeout_ms {
            return Verdict::Quiet(format!(
                "the inverter's newest row #{} is {} old (INVERTER_TIMEOUT_SEC={})",
                row.id,
                human(age_ms),
                timeout.as_secs()
            ));
        }
        if age_ms < -timeout_ms {
            return Verdict::Quiet(format!(
                "the inverter's newest row #{} is dated {} ahead of this clock (created_at \"{}\"): check both clocks",
                row.id,
                human(-age_ms),
                row.created_at
            ));
        }
        if row.object {
            Verdict::Merge(row.id)
        } else {
            Verdict::ErrorRow(row.id)
        }
    }
}

fn human(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7_199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3_600),
    }
}

/// The largest id of `readings` now (0 when empty).
pub fn max_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(id), 0) FROM readings", [], |r| {
        r.get(0)
    })
}

/// Whether a row that is not jkmon's own was inserted after `id`.
pub fn inverter_row_after(conn: &Connection, id: i64) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        &format!(
            "SELECT r.id FROM readings AS r WHERE r.id > ?1 AND NOT {IS_OWN_SQL} ORDER BY r.id LIMIT 1"
        ),
        [id],
        |r| r.get(0),
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OWN_ROW_SOURCE;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn created_at_in_every_form_the_writers_use() {
        let t = utc("2026-11-27T04:27:04Z");
        for s in [
            "2026-11-27T04:27:04",
            "2026-11-27 04:27:04",
            "2026-11-27T06:27:04+02:00",
            "2026-11-27T04:27:04Z",
            "2026-11-27T04:27:04.000000",
            "2026-11-27 06:27:04+02:00",
        ] {
            assert_eq!(parse(s).map(|c| c.utc), Some(t), "{s}");
        }
        assert_eq!(parse("2026-11-27T04:27:04").unwrap().offset, None);
        assert_eq!(
            parse("2026-11-27T06:27:04+02:00").unwrap().offset,
            FixedOffset::east_opt(7_200)
        );
        for bad in ["", "yesterday", "2026-13-01T00:00:00", "1764217624"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn jkmon_writes_created_at_as_the_table_does() {
        let t = utc("2026-11-27T04:27:04.123456Z");
        for sample in [
            "2026-01-16T19:32:00",
            "2026-01-16T21:32:00+02:00",
            "2026-01-16 19:32:00",
            "2026-01-16T19:32:00.250",
            "2026-01-16T21:32:00.123456+02:00",
        ] {
            let f = CreatedAtFormat::of(sample).unwrap();
            let out = f.format(t);
            assert_eq!(out.len(), sample.len(), "{sample} → {out}");
            assert_eq!(
                CreatedAtFormat::of(&out),
                Some(f),
                "{sample} → {out} keeps the form"
            );
            let back = parse(&out).unwrap().utc;
            assert!((t - back).num_milliseconds().abs() < 1_000, "{out}");
        }
        assert_eq!(
            CreatedAtFormat::default().format(t),
            "2026-11-27T04:27:04",
            "an empty table gets the Python poller's naive UTC"
        );
        assert_eq!(
            CreatedAtFormat::of("2026-01-16T21:32:00+02:00")
                .unwrap()
                .format(t),
            "2026-11-27T06:27:04+02:00",
            "a fixed offset stays fixed (no summer time)"
        );
    }

    fn row(id: i64, created_at: &str) -> Newest {
        Newest {
            id,
            created_at: created_at.into(),
            object: true,
            own: false,
        }
    }

    #[test]
    fn only_fresh_rows_inserted_since_the_start_are_merged_into() {
        let now = utc("2026-11-27T04:30:00Z");
        let t = Duration::from_secs(60);
        let mut target = Target::new(10);
        // naive created_at is UTC: 23 minutes old, even though a +02:00 reader would see "future"
        let v = target.judge(Some(&row(11, "2026-11-27T04:07:00")), now, t);
        assert!(
            matches!(v, Verdict::Quiet(ref w) if w.contains("23 min")),
            "{v:?}"
        );
        assert_eq!(
            target.judge(Some(&row(11, "2026-11-27T04:29:30")), now, t),
            Verdict::Merge(11)
        );
        assert_eq!(
            target.judge(Some(&row(11, "2026-11-27T06:29:30+02:00")), now, t),
            Verdict::Merge(11)
        );
        // there before jkmon started: never, however fresh
        let v = target.judge(Some(&row(10, "2026-11-27T04:29:59")), now, t);
        assert!(matches!(v, Verdict::Quiet(ref w) if w.contains("before jkmon started")));
        // an error row is left alone
        let mut error = row(12, "2026-11-27T04:29:50");
        error.object = false;
        assert_eq!(target.judge(Some(&error), now, t), Verdict::ErrorRow(12));
        // jkmon's own row is never a target
        let mut own = row(13, "2026-11-27T04:29:55");
        own.own = true;
        assert!(matches!(
            target.judge(Some(&own), now, t),
            Verdict::Quiet(_)
        ));
        // far in the future: a wrong clock, not fresh
        assert!(matches!(
            target.judge(Some(&row(14, "2026-11-27T09:00:00")), now, t),
            Verdict::Quiet(ref w) if w.contains("ahead")
        ));
        // unreadable created_at: fresh for one timeout from when jkmon first saw it
        let odd = row(15, "Friday");
        assert_eq!(target.judge(Some(&odd), now, t), Verdict::Merge(15));
        let later = now + chrono::Duration::seconds(61);
        assert!(matches!(
            target.judge(Some(&odd), later, t),
            Verdict::Quiet(_)
        ));
        assert!(matches!(target.judge(None, now, t), Verdict::Quiet(_)));
    }

    #[test]
    fn the_sql_names_the_own_rows_source() {
        assert!(IS_OWN_SQL.contains(&format!("'{OWN_ROW_SOURCE}'")));
    }

    #[test]
    fn the_setting_reads_its_words() {
        assert_eq!("auto".parse(), Ok(OwnRows::Auto));
        assert_eq!(" ON ".parse(), Ok(OwnRows::On));
        assert_eq!("off".parse(), Ok(OwnRows::Off));
        assert!("sometimes".parse::<OwnRows>().is_err());
    }

    #[test]
    fn the_decision_follows_what_the_table_holds() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, payload TEXT, error TEXT);",
        )
        .unwrap();
        assert!(decide(&conn, OwnRows::Auto).unwrap().own_rows);
        assert!(!decide(&conn, OwnRows::Off).unwrap().own_rows);
        conn.execute(
            "INSERT INTO readings (created_at, payload) VALUES ('2026-01-01T00:00:00', '{\"source\": \"jkmon\"}')",
            [],
        )
        .unwrap();
        assert!(
            decide(&conn, OwnRows::Auto).unwrap().own_rows,
            "own rows are no inverter"
        );
        // an error row, and a payload that is not JSON, are the inverter's (or another program's)
        conn.execute(
            "INSERT INTO readings (created_at, payload) VALUES ('2026-01-01T00:00:10', 'not json')",
            [],
        )
        .unwrap();
        let d = decide(&conn, OwnRows::Auto).unwrap();
        assert!(!d.own_rows && d.why.contains("#2"), "{d:?}");
        assert!(decide(&conn, OwnRows::On).unwrap().own_rows);
        assert_eq!(inverter_row_after(&conn, 0).unwrap(), Some(2));
        assert_eq!(inverter_row_after(&conn, 2).unwrap(), None);
    }
}
