//! The store: jkmon's SQLite database, which is also the inverter monitor's.
//!
//! - [`Store::open`] sets SQLite up for two writers in two processes (WAL, a busy timeout,
//!   `synchronous=NORMAL`: a crash of jkmon never loses a committed transaction) and applies
//!   the migrations of `migrations/`.
//! - [`Store::commit`] writes one store interval in one immediate transaction: device info,
//!   the latest snapshot, a history row, and the battery's readings keys ([`fields`]) into
//!   `bms_merge`. Then it merges those keys into the latest inverter row, or, with no inverter
//!   writing, inserts jkmon's own row. Rows the inverter inserts later get the keys from the
//!   trigger of `migrations/0003_merge.sql`, inside their own INSERT.
//! - [`Store::maintain`] downsamples and expires history ([`history`]).
//!
//! Every call here blocks: only the writer thread ([`writer`]) and tests call them, never the
//! async runtime. All SQL of jkmon lives in this module.

pub mod demo;
pub mod fields;
pub mod history;
pub mod inverter;
pub mod migrate;
pub mod read;
pub mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Local};
use rusqlite::{named_params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use thiserror::Error;

use crate::battery::Snapshot;
use crate::report::json::{DeviceInfoJson, SnapshotJson};
pub use history::{Bucket, HistoryRow, Maintenance, Retention};

/// The `source` key of the rows jkmon inserts itself (BMS-only setups): they carry no inverter
/// key, so no reader mistakes them for an inverter that reads 0 V.
pub const OWN_ROW_SOURCE: &str = "jkmon";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the database directory {dir} does not exist: create it (mkdir -p {dir}) or set DB_PATH to a file in an existing directory")]
    NoDirectory { dir: String },
    #[error("cannot open the database {path}: {source} (check that the directory is writable by this user)")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("the database was set up by a newer jkmon (schema {found}; this one knows up to {known}): upgrade jkmon, or point DB_PATH at another file")]
    TooNew { found: u32, known: u32 },
    #[error("migration {name} failed: {source}")]
    Migration {
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("battery {0} is not registered with the store")]
    UnknownBattery(usize),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database already holds {0} readings; fill-demo only fills a new or empty database (set DB_PATH to a new file)")]
    NotEmpty(i64),
    #[error("could not start the database writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the database writer stopped unexpectedly")]
    WriterGone,
}

/// How the store behaves (from the typed config).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// How often the writer commits (`JK_BMS_POLL_INTERVAL`).
    pub interval: Duration,
    /// How long a battery's readings keys stay fresh after its snapshot was taken
    /// (`JK_BMS_STALE_SEC` + the interval; twice the interval in periodic mode).
    pub freshness: Duration,
    /// `DB_BUSY_TIMEOUT_MS`: how long to wait for the other writer's lock.
    pub busy_timeout: Duration,
    /// `INVERTER_TIMEOUT_SEC`: no new inverter row for this long → jkmon writes its own rows.
    pub inverter_timeout: Duration,
    pub retention: Retention,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            interval: Duration::from_secs(30),
            freshness: Duration::from_secs(60),
            busy_timeout: Duration::from_secs(5),
            inverter_timeout: Duration::from_secs(60),
            retention: Retention::default(),
        }
    }
}

/// A configured BMS, as the store knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Battery {
    /// 1-based place in the configuration.
    pub position: usize,
    pub name: String,
    pub address: Option<String>,
}

impl Battery {
    /// The address, or the name for a BMS without one.
    pub fn device_key(&self) -> String {
        match &self.address {
            Some(a) => a.clone(),
            None => format!("name:{}", self.name),
        }
    }
}

/// One battery's part of a commit: its freshest snapshot and the interval's samples.
pub struct Update<'a> {
    pub position: usize,
    pub snapshot: &'a Snapshot,
    pub taken_at: DateTime<Local>,
    pub bucket: &'a Bucket,
    /// `false` once the BMS went offline: history and the latest snapshot are written, the
    /// readings keys are not.
    pub fresh: bool,
}

/// What happened to `readings` in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadingsAction {
    /// The latest inverter row got the fresh BMS keys.
    Updated(i64),
    /// No inverter is writing: jkmon inserted its own row.
    Inserted(i64),
    /// The latest inverter row is an error row; it is left as the inverter wrote it.
    LeftErrorRow(i64),
    /// No battery is fresh.
    NothingFresh,
}

impl std::fmt::Display for ReadingsAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadingsAction::Updated(id) => write!(f, "merged into readings #{id}"),
            ReadingsAction::Inserted(id) => write!(f, "readings #{id} inserted (no inverter data)"),
            ReadingsAction::LeftErrorRow(id) => {
                write!(f, "readings #{id} is an inverter error row, left as it is")
            }
            ReadingsAction::NothingFresh => write!(f, "no fresh battery, readings untouched"),
        }
    }
}

/// Whether an inverter poller is writing rows, judged by new row ids appearing.
#[derive(Debug, Default)]
struct InverterWatch {
    last: Option<(i64, i64)>,
}

impl InverterWatch {
    /// `latest`: the newest row that is not jkmon's own, with its `created_at`.
    fn alive(&mut self, latest: Option<(i64, &str)>, now_ms: i64, timeout: Duration) -> bool {
        let Some((id, created_at)) = latest else {
            return false;
        };
        match self.last {
            Some((last_id, _)) if last_id == id => {}
            Some(_) => self.last = Some((id, now_ms)),
            None => {
                // First look: trust created_at only when it says its offset; otherwise give the
                // inverter one timeout to show itself.
                let seen = DateTime::parse_from_rfc3339(created_at)
                    .map(|t| t.timestamp_millis().min(now_ms))
                    .unwrap_or(now_ms);
                self.last = Some((id, seen));
            }
        }
        let (_, seen_ms) = self.last.expect("set above");
        now_ms - seen_ms < timeout.as_millis() as i64
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    config: StoreConfig,
    /// position → bms_devices.id
    devices: HashMap<usize, (i64, Battery)>,
    inverter: InverterWatch,
}

impl Store {
    /// Opens (creating it when missing) and migrates the database at `path`.
    pub fn open(path: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(StoreError::NoDirectory {
                dir: dir.display().to_string(),
            });
        }
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(config.busy_timeout).map_err(open_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                "{}: SQLite kept journal mode {mode} (WAL is not possible here, e.g. on a network share); readers may wait for jkmon's writes",
                path.display()
            );
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(open_err)?;
        let applied = migrate::apply(&mut conn, now_ms())?;
        if !applied.is_empty() {
            tracing::info!("{}: applied {}", path.display(), applied.join(", "));
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            config,
            devices: HashMap::new(),
            inverter: InverterWatch::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For readers and tests; jkmon's own SQL stays in this module.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Records the configured BMSs and forgets readings keys left by an earlier run (they are
    /// not known to be fresh).
    pub fn register(&mut self, batteries: &[Battery], now_ms: i64) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM bms_merge", [])?;
        for b in batteries {
            let id: i64 = tx.query_row(
                "INSERT INTO bms_devices (device_key, address, name, position, first_seen_ms)
                 VALUES (:key, :address, :name, :position, :now)
                 ON CONFLICT (device_key) DO UPDATE SET
                     address = excluded.address, name = excluded.name, position = excluded.position
                 RETURNING id",
                named_params! {
                    ":key": b.device_key(), ":address": b.address, ":name": b.name,
                    ":position": b.position as i64, ":now": now_ms,
                },
                |r| r.get(0),
            )?;
            self.devices.insert(b.position, (id, b.clone()));
        }
        tx.commit()?;
        Ok(())
    }

    fn device(&self, position: usize) -> Result<&(i64, Battery), StoreError> {
        self.devices
            .get(&position)
            .ok_or(StoreError::UnknownBattery(position))
    }

    /// Records a session's state (`disconnected`, `streaming`, …) and why.
    pub fn set_state(
        &mut self,
        position: usize,
        state: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let id = self.device(position)?.0;
        self.conn.execute(
            "UPDATE bms_devices SET state = ?1, state_detail = ?2, state_changed_ms = ?3 WHERE id = ?4",
            rusqlite::params![state, detail, now_ms, id],
        )?;
        Ok(())
    }

    /// The battery went offline: its readings keys are merged nowhere from now on.
    pub fn mark_stale(&mut self, position: usize) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE bms_merge SET fresh_until_s = 0 WHERE position = ?1",
            [position as i64],
        )?;
        Ok(())
    }

    /// Writes one store interval in one immediate transaction (see the module doc).
    pub fn commit(
        &mut self,
        updates: &[Update],
        now: DateTime<Local>,
    ) -> Result<ReadingsAction, StoreError> {
        let now_ms = now.timestamp_millis();
        let mut rows = Vec::with_capacity(updates.len());
        for u in updates {
            let (id, battery) = self.device(u.position)?;
            let fields = fields::readings_fields(
                u.position,
                &battery.name,
                battery.address.as_deref(),
                u.snapshot,
                u.taken_at,
            );
            let fresh_until_ms =
                u.taken_at.timestamp_millis() + self.config.freshness.as_millis() as i64;
            rows.push((*id, u, fields, fresh_until_ms.div_euclid(1000)));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (id, u, fields, fresh_until_s) in &rows {
            write_battery(&tx, *id, u, now_ms)?;
            if !u.fresh {
                continue;
            }
            tx.prepare_cached(
                "INSERT INTO bms_merge (position, fields, fresh_until_s) VALUES (?1, ?2, ?3)
                 ON CONFLICT (position) DO UPDATE SET
                     fields = excluded.fields, fresh_until_s = excluded.fresh_until_s",
            )?
            .execute(rusqlite::params![
                u.position as i64,
                serde_json::Value::Object(fields.clone()).to_string(),
                fresh_until_s
            ])?;
        }
        let action = merge_readings(&tx, &mut self.inverter, &self.config, now)?;
        tx.commit()?;
        Ok(action)
    }

    /// Downsamples and expires history as of `now_ms`, in one transaction.
    pub fn maintain(&mut self, now_ms: i64) -> Result<Maintenance, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows_made = history::downsample(&tx, now_ms)?;
        let rows_deleted = history::expire(&tx, now_ms, &self.config.retention)?;
        let (inverter_buckets, more) = inverter::aggregate(&tx, now_ms, &self.config.retention)?;
        tx.commit()?;
        Ok(Maintenance {
            rows_made,
            rows_deleted,
            inverter_buckets,
            more,
        })
    }

    /// Ends cleanly: folds the WAL back into the database file so it is whole on its own.
    pub fn close(self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        self.conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}

fn write_battery(
    tx: &rusqlite::Transaction,
    id: i64,
    u: &Update,
    now_ms: i64,
) -> Result<(), StoreError> {
    let s = u.snapshot;
    let d = s.device_info.as_ref();
    tx.prepare_cached(
        "UPDATE bms_devices SET
             model = COALESCE(:model, model), hardware_version = COALESCE(:hw, hardware_version),
             software_version = COALESCE(:sw, software_version),
             serial_number = COALESCE(:serial, serial_number),
             manufacturing_date = COALESCE(:made, manufacturing_date),
             variant = :variant, cell_count = :cells, last_seen_ms = :seen
         WHERE id = :id",
    )?
    .execute(named_params! {
        ":model": d.map(|d| &d.model), ":hw": d.map(|d| &d.hardware_version),
        ":sw": d.map(|d| &d.software_version), ":serial": d.map(|d| &d.serial_number),
        ":made": d.map(|d| &d.manufacturing_date),
        ":variant": s.cell_info.variant.as_str(), ":cells": s.cell_info.cell_count() as i64,
        ":seen": u.taken_at.timestamp_millis(), ":id": id,
    })?;
    let json = serde_json::json!({
        "snapshot": SnapshotJson::new(s),
        "device_info": d.map(|d| DeviceInfoJson::new(d, s.cell_info.variant, None)),
    });
    tx.prepare_cached(
        "INSERT INTO bms_latest (device_id, taken_ms, snapshot) VALUES (?1, ?2, ?3)
         ON CONFLICT (device_id) DO UPDATE SET taken_ms = excluded.taken_ms, snapshot = excluded.snapshot",
    )?
    .execute(rusqlite::params![id, u.taken_at.timestamp_millis(), json.to_string()])?;
    if !u.bucket.is_empty() {
        u.bucket.to_row(id, 0, now_ms).insert(tx)?;
    }
    Ok(())
}

/// Puts the fresh keys of `bms_merge` into the latest inverter row, or inserts jkmon's own row
/// when no inverter is writing.
fn merge_readings(
    tx: &rusqlite::Transaction,
    inverter: &mut InverterWatch,
    config: &StoreConfig,
    now: DateTime<Local>,
) -> Result<ReadingsAction, StoreError> {
    let fresh: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM bms_merge_fresh)", [], |r| {
        r.get(0)
    })?;
    if !fresh {
        return Ok(ReadingsAction::NothingFresh);
    }
    // The newest row, and whether it is a usable inverter row or jkmon's own.
    let latest: Option<(i64, String, bool, bool)> = tx
        .query_row(
            "SELECT id, created_at,
                    payload IS NOT NULL AND error IS NULL AND json_valid(payload)
                        AND json_type(payload) = 'object',
                    CASE WHEN json_valid(payload)
                         THEN json_extract(payload, '$.source') IS ?1 ELSE 0 END
             FROM readings ORDER BY id DESC LIMIT 1",
            [OWN_ROW_SOURCE],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let inverter_row = latest
        .as_ref()
        .filter(|(_, _, _, own)| !own)
        .map(|(id, created, _, _)| (*id, created.as_str()));
    let now_ms = now.timestamp_millis();
    if inverter.alive(inverter_row, now_ms, config.inverter_timeout) {
        let (id, _, usable, _) = latest.expect("alive implies a row");
        if !usable {
            return Ok(ReadingsAction::LeftErrorRow(id));
        }
        tx.prepare_cached(
            "UPDATE readings SET payload = (SELECT payload FROM bms_merged_readings WHERE id = ?1)
             WHERE id = ?1",
        )?
        .execute([id])?;
        return Ok(ReadingsAction::Updated(id));
    }
    tx.prepare_cached(
        "INSERT INTO readings (created_at, payload)
         SELECT ?1, json_patch(json_object('source', ?2), json_group_object(key, value))
         FROM bms_merge_fresh",
    )?
    .execute(rusqlite::params![
        now.to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
        OWN_ROW_SOURCE
    ])?;
    Ok(ReadingsAction::Inserted(tx.last_insert_rowid()))
}

/// Wall-clock now in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inverter_counts_as_alive_while_new_rows_keep_coming() {
        let t = Duration::from_secs(60);
        let mut w = InverterWatch::default();
        assert!(!w.alive(None, 0, t), "no row: no inverter");
        // first look at an old row with an offset: dead at once
        assert!(!w.alive(Some((7, "2020-01-01T00:00:00+02:00")), 1_800_000_000_000, t));
        // a new row appears: alive for one timeout
        assert!(w.alive(Some((8, "whatever")), 1_800_000_001_000, t));
        assert!(w.alive(Some((8, "whatever")), 1_800_000_060_000, t));
        assert!(!w.alive(Some((8, "whatever")), 1_800_000_061_000, t));
        // first look at a row without an offset: one timeout of grace
        let mut w = InverterWatch::default();
        assert!(w.alive(Some((1, "2026-01-16T21:32:00")), 5_000, t));
        assert!(!w.alive(Some((1, "2026-01-16T21:32:00")), 65_000, t));
    }
}
