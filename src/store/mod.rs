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
//!
//! Layer 4: may use `battery` (its link state and the online rule, `battery::link`), `inverter`
//! (its polls, `inverter::poll`), `report` (the snapshot's JSON), and `protocol`; not
//! `session`, and not the simulator (the demo's history comes through [`backfill::Invented`]).

pub mod backfill;
pub mod energy;
pub mod fields;
pub mod history;
pub mod inverter;
mod jobs;
pub mod live;
pub mod migrate;
pub mod poller;
pub mod read;
pub mod readings;
pub mod switches;
pub mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use rusqlite::{named_params, Connection, OpenFlags, TransactionBehavior};
use thiserror::Error;

use crate::battery::Snapshot;
use crate::inverter::poll::{InverterPoll, InverterState};
use crate::report::json::{DeviceInfoJson, SnapshotJson};
pub use history::{Bucket, HistoryRow, Maintenance, Retention};
use readings::Verdict;
pub use readings::{CreatedAtFormat, OwnRows};

/// The `source` key of the rows jkmon inserts itself (BMS-only setups): they carry no inverter
/// key, so no reader mistakes them for an inverter that reads 0 V.
pub const OWN_ROW_SOURCE: &str = "jkmon";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the database directory {dir} does not exist: create it (mkdir -p {dir}) or set DB_PATH to a file in an existing directory")]
    NoDirectory { dir: String },
    #[error("cannot open the database {path}: {error}{}", hint(path, error))]
    Open {
        path: String,
        /// Said in the message with its fix, so not a `source` the chain would repeat.
        error: rusqlite::Error,
    },
    #[error("the database file {path} was {what} while jkmon was using it: what jkmon wrote since went nowhere. jkmon stops so that it is restarted and opens the file at DB_PATH again")]
    Gone { path: String, what: &'static str },
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
    #[error("{path}: {error}{}", hint(path, error))]
    Write {
        path: String,
        error: rusqlite::Error,
    },
    #[error("the database already holds {0} readings; fill-demo only fills a new or empty database (set DB_PATH to a new file)")]
    NotEmpty(i64),
    #[error("could not start the database writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the database writer stopped unexpectedly")]
    WriterGone,
}

/// `: <what to do>` for the SQLite failures an owner can fix, else nothing.
fn hint(path: &str, e: &rusqlite::Error) -> String {
    advice(Path::new(path), e)
        .map(|a| format!(": {a}"))
        .unwrap_or_default()
}

/// What the owner can do about `e` on the database at `path`: the file, the user jkmon runs as
/// and the fix, for a read-only file, a full disk, a damaged file or one that cannot be opened.
pub fn advice(path: &Path, e: &rusqlite::Error) -> Option<String> {
    let rusqlite::Error::SqliteFailure(f, _) = e else {
        return None;
    };
    let file = path.display();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.display().to_string(),
        _ => ".".into(),
    };
    let user = current_user();
    use rusqlite::ErrorCode as C;
    Some(match f.code {
        C::ReadOnly => format!(
            "{file} is read-only for the user jkmon runs as ({user}): let {user} write the file, its -wal and -shm files and the directory {dir} (for example `sudo chown {user} {dir} {file}*`), or run jkmon as their owner"
        ),
        C::DiskFull => format!(
            "the disk holding {file} is full: free some space there (`df -h {dir}`); jkmon keeps its data and retries"
        ),
        C::DatabaseCorrupt | C::NotADatabase => format!(
            "{file} is damaged or is not an SQLite database: stop jkmon, keep a copy of the file, and check it with `sqlite3 {file} 'PRAGMA integrity_check'` (`.recover` saves what it can into a new file)"
        ),
        C::CannotOpen | C::PermissionDenied => format!(
            "{file} cannot be opened by the user jkmon runs as ({user}): check that {dir} exists and that {user} may read and write it"
        ),
        C::DatabaseBusy | C::DatabaseLocked => format!(
            "another program held {file}'s write lock longer than DB_BUSY_TIMEOUT_MS; jkmon keeps its data and retries"
        ),
        _ => return None,
    })
}

/// The user this process runs as, by name where /etc/passwd knows it (`uid 1000` otherwise).
fn current_user() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        });
    let Some(uid) = uid else {
        return "this user".into();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// A file's identity (device, inode): another value at the same path means another file.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
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
    /// `INVERTER_TIMEOUT_SEC`: an inverter row older than this is history, never touched.
    pub inverter_timeout: Duration,
    /// `JKMON_OWN_ROWS`: whether jkmon may insert rows of its own into `readings`.
    pub own_rows: OwnRows,
    pub retention: Retention,
    /// `POLL_INTERVAL`: how often the inverter's poller writes a row (the Python poller's
    /// variable, 10 s). A gap of more than three of these between two rows is no data for
    /// the inverter's energy.
    pub inverter_poll: Duration,
}

impl StoreConfig {
    /// The longest gap between two inverter rows that its energy bridges.
    pub fn inverter_max_gap(&self) -> Duration {
        self.inverter_poll * 3
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            interval: Duration::from_secs(30),
            freshness: Duration::from_secs(60),
            busy_timeout: Duration::from_secs(5),
            inverter_timeout: Duration::from_secs(60),
            own_rows: OwnRows::Auto,
            retention: Retention::default(),
            inverter_poll: Duration::from_secs(10),
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
    /// The energy the interval's snapshots brought.
    pub energy: &'a energy::Pending,
}

/// What happened to `readings` in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadingsAction {
    /// The latest inverter row got the fresh BMS keys.
    Updated(i64),
    /// Own rows are decided (no inverter) and none was fresh: jkmon inserted its own row.
    Inserted(i64),
    /// No fresh inverter row to merge into, and no own rows: `readings` untouched (why).
    Quiet(String),
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
            ReadingsAction::Quiet(why) => write!(f, "readings untouched: {why}"),
            ReadingsAction::LeftErrorRow(id) => {
                write!(f, "readings #{id} is an inverter error row, left as it is")
            }
            ReadingsAction::NothingFresh => write!(f, "no fresh battery, readings untouched"),
        }
    }
}

/// What jkmon may do to `readings` in this run (see [`readings`]).
#[derive(Debug)]
struct ReadingsState {
    setting: OwnRows,
    /// Decided at [`Store::register`]; `Auto` gives it up when an inverter row appears.
    own_rows: bool,
    /// Rows up to this id were looked at for inverter rows.
    checked_id: i64,
    target: readings::Target,
    format: CreatedAtFormat,
    /// `JKMON_OWN_ROWS=on` beside an inverter was reported.
    warned_on_beside_inverter: bool,
}

impl ReadingsState {
    fn new(setting: OwnRows) -> ReadingsState {
        ReadingsState {
            setting,
            own_rows: false,
            checked_id: i64::MAX,
            target: readings::Target::new(i64::MAX),
            format: CreatedAtFormat::default(),
            warned_on_beside_inverter: false,
        }
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    config: StoreConfig,
    /// position → bms_devices.id
    devices: HashMap<usize, (i64, Battery)>,
    readings: ReadingsState,
    /// The file opened; checked before each commit.
    identity: Option<(u64, u64)>,
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
        let open_err = |error| StoreError::Open {
            path: path.display().to_string(),
            error,
        };
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(config.busy_timeout).map_err(open_err)?;
        // SQLite opens a file it may not write read-only without a word: say so here, with
        // the fix, rather than at the first write
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(StoreError::Write {
                path: path.display().to_string(),
                error: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                    None,
                ),
            });
        }
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
        // the first write at start: a read-only file is named here, with its fix
        let applied = migrate::apply(&mut conn, now_ms()).map_err(|e| match e {
            StoreError::Sqlite(error) => StoreError::Write {
                path: path.display().to_string(),
                error,
            },
            other => other,
        })?;
        if !applied.is_empty() {
            tracing::info!("{}: applied {}", path.display(), applied.join(", "));
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            devices: HashMap::new(),
            readings: ReadingsState::new(config.own_rows),
            identity: file_id(path),
            config,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For readers and tests; jkmon's own SQL stays in this module.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Records the configured BMSs, forgets readings keys left by an earlier run (they are
    /// not known to be fresh), and decides what jkmon may do to `readings` from now on: every
    /// row there now stays as it is, and own rows only where [`readings::decide`] says so.
    pub fn register(&mut self, batteries: &[Battery], now_ms: i64) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM bms_merge", [])?;
        let existing = readings::max_id(&tx)?;
        let decision = readings::decide(&tx, self.readings.setting)?;
        self.readings.own_rows = decision.own_rows;
        self.readings.checked_id = existing;
        self.readings.target = readings::Target::new(existing);
        self.readings.format = CreatedAtFormat::learn(&tx)?;
        tracing::info!("readings: {}", decision.why);
        if self.readings.setting != OwnRows::OwnPoller {
            poller::forget(&tx)?;
        }
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

    /// Records a session's state and why.
    pub fn set_state(
        &mut self,
        position: usize,
        state: crate::battery::link::State,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let id = self.device(position)?.0;
        self.conn.execute(
            "UPDATE bms_devices SET state = ?1, state_detail = ?2, state_changed_ms = ?3 WHERE id = ?4",
            rusqlite::params![state.as_str(), detail, now_ms, id],
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

    /// Fails when the file at the path is no longer the one opened (deleted with its
    /// directory, or replaced): writing on would go into nothing.
    pub fn check_file(&self) -> Result<(), StoreError> {
        let now = file_id(&self.path);
        if now == self.identity {
            return Ok(());
        }
        Err(StoreError::Gone {
            path: self.path.display().to_string(),
            what: if now.is_none() {
                "deleted"
            } else {
                "replaced by another file"
            },
        })
    }

    /// A battery's readings keys for `bms_merge`, and until when (unix s) they are fresh.
    fn merge_fields(
        &self,
        position: usize,
        snapshot: &Snapshot,
        taken_at: DateTime<Local>,
    ) -> Result<(serde_json::Map<String, serde_json::Value>, i64), StoreError> {
        let battery = &self.device(position)?.1;
        let fields = fields::readings_fields(
            position,
            &battery.name,
            battery.address.as_deref(),
            snapshot,
            taken_at,
        );
        let fresh_until_ms = taken_at.timestamp_millis() + self.config.freshness.as_millis() as i64;
        Ok((fields, fresh_until_ms.div_euclid(1000)))
    }

    /// Writes one store interval in one immediate transaction (see the module doc).
    pub fn commit(
        &mut self,
        updates: &[Update],
        now: DateTime<Local>,
    ) -> Result<ReadingsAction, StoreError> {
        self.check_file()?;
        let now_ms = now.timestamp_millis();
        let mut rows = Vec::with_capacity(updates.len());
        for u in updates {
            let id = self.device(u.position)?.0;
            let (fields, fresh_until_s) = self.merge_fields(u.position, u.snapshot, u.taken_at)?;
            rows.push((id, u, fields, fresh_until_s));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (id, u, fields, fresh_until_s) in &rows {
            write_battery(&tx, *id, u, now_ms)?;
            if !u.fresh {
                continue;
            }
            upsert_merge(&tx, u.position, fields, *fresh_until_s)?;
        }
        let action = merge_readings(&tx, &mut self.readings, &self.config, now.to_utc())?;
        tx.commit()?;
        Ok(action)
    }

    /// The inverter's energy on `now`'s local day so far, counted from its rows as
    /// `/api/v1/energy` counts it (zero-free: a value never seen today stays `None`).
    pub fn inverter_energy_today(
        &self,
        now: DateTime<Local>,
    ) -> Result<energy::InverterEnergy, StoreError> {
        let today = now.date_naive();
        let days = energy::inverter_days(
            &self.conn,
            today,
            now.timestamp_millis(),
            self.config.inverter_max_gap(),
        )?;
        Ok(days.get(&today).copied().unwrap_or_default())
    }

    /// Inserts the rows of jkmon's own inverter poller's `polls`, in one immediate transaction
    /// that first brings each fresh battery's keys in `bms_merge` up to its newest snapshot
    /// (`fresh`: position, snapshot, when it was taken). Each row therefore carries the battery
    /// as it was at the poll, from its first moment; the merge is the one every row gets
    /// (`migrations/0003_merge.sql`), run inside the INSERT. A poll that read nothing is an
    /// error row as the Python poller stores it: no payload, the error's text. The last poll
    /// goes to `inverter_poller` too. Returns the rows' ids.
    pub fn insert_readings(
        &mut self,
        fresh: &[(usize, &Snapshot, DateTime<Local>)],
        polls: &[std::sync::Arc<InverterPoll>],
    ) -> Result<Vec<i64>, StoreError> {
        self.check_file()?;
        let mut merge = Vec::with_capacity(fresh.len());
        for (position, snapshot, taken_at) in fresh {
            let (fields, fresh_until_s) = self.merge_fields(*position, snapshot, *taken_at)?;
            merge.push((*position, fields, fresh_until_s));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (position, fields, fresh_until_s) in &merge {
            upsert_merge(&tx, *position, fields, *fresh_until_s)?;
        }
        let mut ids = Vec::with_capacity(polls.len());
        for poll in polls {
            let (payload, error) = match &poll.row {
                Ok(p) => (Some(p.as_str()), None),
                Err(e) => (None, Some(e.as_str())),
            };
            tx.prepare_cached(
                "INSERT INTO readings (created_at, payload, error) VALUES (?1, ?2, ?3)",
            )?
            .execute(rusqlite::params![
                self.readings.format.format(poll.at),
                payload,
                error
            ])?;
            ids.push(tx.last_insert_rowid());
        }
        if let Some(last) = polls.last() {
            poller::set_poll(&tx, last)?;
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Downsamples and expires history as of `now_ms`: jkmon's own history in one
    /// transaction, then the next chunk of the inverter's rows for charts (read with no write
    /// lock, see [`inverter::aggregate`]).
    pub fn maintain(&mut self, now_ms: i64) -> Result<Maintenance, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows_made = history::downsample(&tx, now_ms)?;
        let rows_deleted = history::expire(&tx, now_ms, &self.config.retention)?
            + energy::expire_battery_days(&tx, now_ms, self.config.retention.hourly_days)?;
        tx.commit()?;
        let (inverter_buckets, more) = inverter::aggregate(
            &mut self.conn,
            now_ms,
            &self.config.retention,
            self.config.inverter_max_gap(),
        )?;
        Ok(Maintenance {
            rows_made,
            rows_deleted,
            inverter_buckets,
            more,
        })
    }

    /// Records a change of jkmon's own inverter poller's state (see [`poller`]).
    pub fn set_poller_state(
        &mut self,
        state: InverterState,
        detail: &str,
        model: &str,
        link: &str,
        interval: Duration,
    ) -> Result<(), StoreError> {
        poller::set_state(&self.conn, state, detail, model, link, interval, now_ms())?;
        Ok(())
    }

    /// Records a switch write and its outcome, at once (outside the snapshots' batches).
    pub fn record_switch_write(
        &mut self,
        record: &switches::WriteRecord,
    ) -> Result<(), StoreError> {
        self.check_file()?;
        switches::insert(&self.conn, record)?;
        Ok(())
    }

    /// This run's batteries are merged nowhere from now on (jkmon stops): rows the inverter
    /// inserts after this carry no battery keys. jkmon's own inverter poller, if it ran, is
    /// marked stopped.
    pub fn release_readings(&mut self) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        poller::stopped(&tx, now_ms())?;
        for position in self.devices.keys() {
            tx.execute(
                "DELETE FROM bms_merge WHERE position = ?1",
                [*position as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Battery `position`'s energy counters as stored, today being `today`.
    pub fn energy(
        &self,
        position: usize,
        today: chrono::NaiveDate,
    ) -> Result<energy::Counters, StoreError> {
        let key = self.device(position)?.1.device_key();
        Ok(energy::counters(&self.conn, &key, today)?)
    }

    /// Whether this run inserts rows of its own into `readings` (as decided at
    /// [`Store::register`], and given up once an inverter row appeared).
    pub fn inserts_own_rows(&self) -> bool {
        self.readings.own_rows
    }

    /// Ends cleanly: folds the WAL back into the database file so it is whole on its own.
    pub fn close(self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        self.conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}

/// A battery's readings keys for the merge, fresh until `fresh_until_s`.
fn upsert_merge(
    tx: &rusqlite::Transaction,
    position: usize,
    fields: &serde_json::Map<String, serde_json::Value>,
    fresh_until_s: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO bms_merge (position, fields, fresh_until_s) VALUES (?1, ?2, ?3)
         ON CONFLICT (position) DO UPDATE SET
             fields = excluded.fields, fresh_until_s = excluded.fresh_until_s",
    )?
    .execute(rusqlite::params![
        position as i64,
        serde_json::Value::Object(fields.clone()).to_string(),
        fresh_until_s
    ])?;
    Ok(())
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
    energy::write(tx, id, u.energy, now_ms)?;
    Ok(())
}

/// Puts the fresh keys of `bms_merge` into the newest inverter row when [`readings::Target`]
/// allows it, or inserts jkmon's own row where own rows are decided; otherwise leaves
/// `readings` alone.
fn merge_readings(
    tx: &rusqlite::Transaction,
    state: &mut ReadingsState,
    config: &StoreConfig,
    now: DateTime<Utc>,
) -> Result<ReadingsAction, StoreError> {
    let fresh: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM bms_merge_fresh)", [], |r| {
        r.get(0)
    })?;
    if !fresh {
        return Ok(ReadingsAction::NothingFresh);
    }
    if state.own_rows {
        if let Some(id) = readings::inverter_row_after(tx, state.checked_id)? {
            if state.setting == OwnRows::Auto {
                state.own_rows = false;
                state.format = CreatedAtFormat::learn(tx)?;
                tracing::info!(
                    "readings: an inverter row appeared (#{id}): jkmon now merges battery keys into the inverter's rows and inserts no more rows of its own"
                );
            } else if !state.warned_on_beside_inverter {
                state.warned_on_beside_inverter = true;
                tracing::warn!(
                    "readings: an inverter writes rows too (#{id}), and JKMON_OWN_ROWS=on inserts battery-only rows whenever it is quiet: the inverter monitor's bot may read them as a grid outage. Set JKMON_OWN_ROWS=auto"
                );
            }
        }
        state.checked_id = readings::max_id(tx)?;
    }
    let newest = readings::Newest::read(tx)?;
    match state
        .target
        .judge(newest.as_ref(), now, config.inverter_timeout)
    {
        Verdict::Merge(id) => {
            tx.prepare_cached(
                "UPDATE readings SET payload = (SELECT payload FROM bms_merged_readings WHERE id = ?1)
                 WHERE id = ?1",
            )?
            .execute([id])?;
            Ok(ReadingsAction::Updated(id))
        }
        Verdict::ErrorRow(id) => Ok(ReadingsAction::LeftErrorRow(id)),
        Verdict::Quiet(why) if !state.own_rows => Ok(ReadingsAction::Quiet(why)),
        Verdict::Quiet(_) => {
            tx.prepare_cached(
                "INSERT INTO readings (created_at, payload)
                 SELECT ?1, json_patch(json_object('source', ?2), json_group_object(key, value))
                 FROM bms_merge_fresh",
            )?
            .execute(rusqlite::params![state.format.format(now), OWN_ROW_SOURCE])?;
            let id = tx.last_insert_rowid();
            state.checked_id = id;
            Ok(ReadingsAction::Inserted(id))
        }
    }
}

/// Gives freed heap memory back to the system, where the binary knows how (glibc keeps freed
/// memory in its arenas otherwise). Set once by `main`, which is where jkmon's one platform
/// call lives (this library has no `unsafe`).
pub static HEAP_TRIM: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Calls [`HEAP_TRIM`] where `main` set it: after a long streamed response, or a catch-up
/// that gathered much.
pub fn trim_heap() {
    if let Some(trim) = HEAP_TRIM.get() {
        trim();
    }
}

/// Wall-clock now in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::os::raw::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn each_failure_an_owner_can_fix_gets_the_file_and_the_fix() {
        let path = Path::new("/var/lib/jkmon/inverter.db");
        let said = |code| advice(path, &failure(code)).unwrap_or_default();
        let read_only = said(rusqlite::ffi::SQLITE_READONLY);
        assert!(read_only.contains("/var/lib/jkmon/inverter.db") && read_only.contains("chown"));
        assert!(read_only.contains(&current_user()), "{read_only}");
        let full = said(rusqlite::ffi::SQLITE_FULL);
        assert!(
            full.contains("full") && full.contains("df -h /var/lib/jkmon"),
            "{full}"
        );
        assert!(
            !full.contains("writable"),
            "no misleading permission hint: {full}"
        );
        for code in [rusqlite::ffi::SQLITE_CORRUPT, rusqlite::ffi::SQLITE_NOTADB] {
            let damaged = said(code);
            assert!(
                damaged.contains("integrity_check") && damaged.contains("copy"),
                "{damaged}"
            );
        }
        assert_eq!(
            advice(path, &failure(rusqlite::ffi::SQLITE_CONSTRAINT)),
            None
        );
        let open = StoreError::Open {
            path: "/x/inverter.db".into(),
            error: failure(rusqlite::ffi::SQLITE_FULL),
        }
        .to_string();
        assert!(
            open.contains("disk holding /x/inverter.db is full"),
            "{open}"
        );
    }
}
