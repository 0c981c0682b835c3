//! The `bms_switch_writes` table (`migrations/0009_switch_writes.sql`): every switch write
//! jkmon made — who asked, what, when, and what the BMS answered. Written by the process that
//! runs the BMS sessions (through the writer); read by every view.

use std::fmt;

use chrono::{DateTime, Utc};
use rusqlite::{named_params, Connection};
use serde::Serialize;

use crate::protocol::control::Setting;

/// Who asked for a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `jkmon set` (through the running service's API).
    Cli,
    /// `POST /api/v1/batteries/{n}/switches` with JSON.
    Api,
    /// The dashboard's form.
    Web,
    /// An MQTT command topic (Home Assistant's switch).
    Mqtt,
    /// The Telegram bot, in this chat.
    Bot(i64),
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cli => "cli",
            Source::Api => "api",
            Source::Web => "web",
            Source::Mqtt => "mqtt",
            Source::Bot(_) => "bot",
        }
    }

    pub fn chat_id(self) -> Option<i64> {
        match self {
            Source::Bot(chat) => Some(chat),
            _ => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Bot(chat) => write!(f, "bot (chat {chat})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// One write and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRecord {
    pub at: DateTime<Utc>,
    pub position: usize,
    pub battery: String,
    pub device_key: String,
    pub setting: Setting,
    pub source: Source,
    /// `confirmed`, or why not (`refused`, `not_confirmed`, `offline`, `dropped`,
    /// `not_on_this_board`, `busy`, `unanswered`, `stopped`).
    pub outcome: &'static str,
    /// The outcome in words (empty when confirmed).
    pub detail: String,
}

pub fn insert(conn: &Connection, r: &WriteRecord) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO bms_switch_writes
             (at_ms, position, battery, device_key, switch, turn_on, source, chat_id, outcome, detail)
         VALUES (:at, :position, :battery, :key, :switch, :on, :source, :chat, :outcome, :detail)",
    )?
    .execute(named_params! {
        ":at": r.at.timestamp_millis(), ":position": r.position as i64, ":battery": r.battery,
        ":key": r.device_key, ":switch": r.setting.switch.as_str(), ":on": r.setting.on,
        ":source": r.source.as_str(), ":chat": r.source.chat_id(), ":outcome": r.outcome,
        ":detail": r.detail,
    })?;
    // the retention: the newest KEEP_PER_BATTERY writes of each battery
    conn.prepare_cached(
        "DELETE FROM bms_switch_writes WHERE device_key = :key AND id <= (
             SELECT id FROM bms_switch_writes WHERE device_key = :key
             ORDER BY id DESC LIMIT 1 OFFSET :keep)",
    )?
    .execute(named_params! {":key": r.device_key, ":keep": KEEP_PER_BATTERY as i64})?;
    Ok(())
}

/// The switch writes kept per battery: years of a few a day, and a bound on what a looping
/// automation can leave (the controller makes two writes a second to one switch at most).
pub const KEEP_PER_BATTERY: usize = 2_000;

/// A write as the views show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SwitchWriteView {
    pub at: DateTime<Utc>,
    pub switch: String,
    pub on: bool,
    /// `cli`, `api`, `web`, `mqtt` or `bot`.
    pub source: String,
    pub chat_id: Option<i64>,
    pub outcome: String,
    pub detail: String,
}

impl SwitchWriteView {
    /// `charging off by bot (chat 42): confirmed`.
    pub fn summary(&self) -> String {
        let who = match self.chat_id {
            Some(chat) => format!("{} (chat {chat})", self.source),
            None => self.source.clone(),
        };
        let outcome = self.outcome.replace('_', " ");
        format!(
            "{} {} by {who}: {outcome}",
            self.switch,
            crate::protocol::control::on_off(self.on)
        )
    }
}

/// The newest `limit` writes to the battery keyed `device_key`, newest first. A database
/// older than the table has none.
pub fn recent(
    conn: &Connection,
    device_key: &str,
    limit: usize,
) -> rusqlite::Result<Vec<SwitchWriteView>> {
    let mut stmt = match conn.prepare_cached(
        "SELECT at_ms, switch, turn_on, source, chat_id, outcome, detail FROM bms_switch_writes
         WHERE device_key = ?1 ORDER BY at_ms DESC, id DESC LIMIT ?2",
    ) {
        Ok(s) => s,
        Err(e) if e.to_string().contains("no such table") => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let rows = stmt.query_map(rusqlite::params![device_key, limit as i64], |r| {
        Ok(SwitchWriteView {
            at: DateTime::from_timestamp_millis(r.get(0)?).unwrap_or_default(),
            switch: r.get(1)?,
            on: r.get(2)?,
            source: r.get(3)?,
            chat_id: r.get(4)?,
            outcome: r.get(5)?,
            detail: r.get(6)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_read_back_newest_first_for_their_battery_only() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../migrations/0009_switch_writes.sql"))
            .unwrap();
        let record = |ms: i64, key: &str, setting: &str, source, outcome| WriteRecord {
            at: DateTime::from_timestamp_millis(ms).unwrap(),
            position: 1,
            battery: "Garage".into(),
            device_key: key.into(),
            setting: setting.parse().unwrap(),
            source,
            outcome,
            detail: String::new(),
        };
        insert(
            &conn,
            &record(1_000, "A", "charging=off", Source::Mqtt, "confirmed"),
        )
        .unwrap();
        insert(
            &conn,
            &record(2_000, "A", "heater=on", Source::Bot(-42), "refused"),
        )
        .unwrap();
        insert(
            &conn,
            &record(3_000, "B", "balancer=on", Source::Api, "offline"),
        )
        .unwrap();
        let a = recent(&conn, "A", 5).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].summary(), "heater on by bot (chat -42): refused");
        assert_eq!(a[1].summary(), "charging off by mqtt: confirmed");
        assert_eq!(recent(&conn, "A", 1).unwrap().len(), 1);
        // a database from before the table
        let old = Connection::open_in_memory().unwrap();
        assert!(recent(&old, "A", 5).unwrap().is_empty());
        // the retention: each battery keeps its newest KEEP_PER_BATTERY, the other's stay
        for i in 0..KEEP_PER_BATTERY as i64 + 10 {
            insert(
                &conn,
                &record(10_000 + i, "A", "charging=on", Source::Mqtt, "confirmed"),
            )
            .unwrap();
        }
        let count = |key: &str| -> i64 {
            conn.query_row(
                "SELECT COUNT(*) FROM bms_switch_writes WHERE device_key = ?1",
                [key],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(count("A"), KEEP_PER_BATTERY as i64);
        assert_eq!(count("B"), 1);
        let newest = recent(&conn, "A", 1).unwrap();
        assert_eq!(
            newest[0].at.timestamp_millis(),
            10_000 + KEEP_PER_BATTERY as i64 + 9
        );
    }
}
