//! The read side of the store, for the views (web, bot): the latest state of every battery and
//! of the inverter, and history aggregated on the server. Read-only connections from a small
//! pool; every query here blocks, so callers run it through [`Readers::run`], which moves it off
//! the async runtime.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Local, NaiveDate, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::energy::{self, EnergyDay, EnergyView};
pub use super::history::Range;
use super::history::{self, Bucket, HistoryRow, Retention};
pub use super::inverter::InverterPoint;
use super::live::Live;
use super::poller::PollerView;
use super::{Battery, StoreError, OWN_ROW_SOURCE};
use crate::battery::link::{Liveness, State};
use crate::report::json::{SnapshotJson, TemperaturesC};

/// At most this many connections are kept for reuse.
const POOL_SIZE: usize = 8;

/// Read-only connections to the database, reused between requests.
#[derive(Clone)]
pub struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    pool: Arc<Mutex<Vec<Connection>>>,
    /// [`POOL_SIZE`] places: a reader waits for one, so no more connections are ever open
    /// than the pool holds, however many requests come at once.
    places: Arc<tokio::sync::Semaphore>,
    /// Reads of the file so far (the pages' tests count them).
    reads: Arc<std::sync::atomic::AtomicU64>,
    /// The file the pooled connections have open.
    identity: Arc<Mutex<Option<(u64, u64)>>>,
    /// In the process that runs the sessions: the newest snapshots, newer than the file's.
    live: Option<Live>,
}

impl Readers {
    pub fn new(path: &Path, busy_timeout: Duration) -> Readers {
        Readers {
            path: path.to_path_buf(),
            busy_timeout,
            pool: Arc::new(Mutex::new(Vec::new())),
            places: Arc::new(tokio::sync::Semaphore::new(POOL_SIZE)),
            reads: Arc::default(),
            identity: Arc::new(Mutex::new(None)),
            live: None,
        }
    }

    /// Readers that show `live`'s snapshots where they are newer than the database's.
    pub fn with_live(mut self, live: Live) -> Readers {
        self.live = Some(live);
        self
    }

    fn take(&self) -> Result<Connection, StoreError> {
        // the file at the path must be the one the pooled connections have open: deleted,
        // the views say so; replaced, they read the new one
        let now = super::file_id(&self.path);
        {
            let mut pool = self.pool.lock().expect("pool lock");
            let mut identity = self.identity.lock().expect("identity lock");
            if now.is_none() {
                pool.clear();
                return Err(StoreError::Gone {
                    path: self.path.display().to_string(),
                    what: "deleted",
                });
            }
            if *identity != now {
                pool.clear();
                *identity = now;
            }
            if let Some(c) = pool.pop() {
                return Ok(c);
            }
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| StoreError::Open {
            path: self.path.display().to_string(),
            error,
        })?;
        conn.busy_timeout(self.busy_timeout)?;
        // a small page cache each: the file's pages stay in the OS cache anyway, and eight
        // connections with SQLite's default 2 MiB each would double a Pi Zero's jkmon
        conn.execute_batch("PRAGMA cache_size = -256")?;
        Ok(conn)
    }

    /// Whether the file is still there (a `stat`, no read): deleted, it says so at once,
    /// whatever is cached. (A replaced file is read afresh by the next read.)
    pub fn check_file(&self) -> Result<(), StoreError> {
        match super::file_id(&self.path) {
            None => Err(StoreError::Gone {
                path: self.path.display().to_string(),
                what: "deleted",
            }),
            Some(_) => Ok(()),
        }
    }

    /// How many times the file has been read through these readers.
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for a place in the pool.
    async fn place(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.places
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    /// Runs `f` on a pooled connection in the blocking thread pool without waiting for it (a
    /// response streamed as `f` reads), once a place in the pool is free; `hold` is kept until
    /// `f` ends (the caller's cap on long streams).
    pub async fn stream<H: Send + 'static>(
        &self,
        hold: H,
        f: impl FnOnce(Result<&Connection, StoreError>) + Send + 'static,
    ) {
        let place = self.place().await;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _hold = hold;
            let _place = place;
            match this.take() {
                Ok(conn) => {
                    f(Ok(&conn));
                    // a long stream is done: its connection closes rather than keep what it
                    // gathered, and the heap gives the memory back
                    drop(conn);
                    super::trim_heap();
                }
                Err(e) => f(Err(e)),
            }
        });
    }

    /// Runs `f` on a pooled connection in the blocking thread pool, once a place in the pool
    /// is free.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let place = self.place().await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _place = place;
            let conn = this.take()?;
            let result = f(&conn);
            let mut pool = this.pool.lock().expect("pool lock");
            if pool.len() < POOL_SIZE {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::WriterGone)?
    }
}

impl Readers {
    /// Every battery, the bank and the latest readings row, as of now; in the process that
    /// runs the sessions, each battery's newest snapshot rather than its last commit.
    pub async fn status(&self, config: &ReadConfig) -> Result<StatusView, StoreError> {
        let read = config.clone();
        let mut view = self.run(move |c| status(c, &read, Utc::now())).await?;
        if let Some(live) = &self.live {
            overlay(&mut view, live, config);
        }
        Ok(view)
    }

    /// The last `days` local days' energy (oldest first); today's battery part from the
    /// newest counters in the process that runs the sessions.
    pub async fn energy(
        &self,
        config: &ReadConfig,
        days: u32,
    ) -> Result<Vec<EnergyDay>, StoreError> {
        let read = config.clone();
        let now = Utc::now();
        let today = local_day(now);
        let (list, mut out) = self
            .run(move |c| {
                let list = batteries(c, &read)?;
                let out = energy::days(
                    c,
                    &list,
                    today,
                    days,
                    now.timestamp_millis(),
                    read.inverter_max_gap,
                )?;
                Ok((list, out))
            })
            .await?;
        if let (Some(live), Some(last)) = (&self.live, out.last_mut()) {
            for b in &list {
                if let Some(c) = live.energy(b.position) {
                    if c.day == Some(today) {
                        last.set_battery(b, c.today);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The batteries a reader shows (see [`batteries`]).
    pub async fn batteries(&self, config: &ReadConfig) -> Result<Vec<Battery>, StoreError> {
        let config = config.clone();
        self.run(move |c| batteries(c, &config)).await
    }
}

/// What the views need: which batteries, when one is online, how long history is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadConfig {
    /// The configured batteries, battery 1 first. Empty in a reader that has no BMS
    /// configured (`jkmon web` or `jkmon bot` beside a `jkmon run` elsewhere): then the
    /// batteries are the ones the database holds ([`batteries`]).
    pub batteries: Vec<Battery>,
    pub liveness: Liveness,
    pub retention: Retention,
    /// The longest gap between two inverter rows its energy bridges (three `POLL_INTERVAL`s).
    pub inverter_max_gap: Duration,
}

/// The local day of `t`, in jkmon's time zone.
pub fn local_day(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&Local).date_naive()
}

/// One battery as the views show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatteryView {
    pub position: usize,
    pub name: String,
    pub address: Option<String>,
    pub state: State,
    pub state_detail: Option<String>,
    pub online: bool,
    /// When the latest snapshot was taken, and how long ago.
    pub taken_at: Option<DateTime<Utc>>,
    pub age_s: Option<f64>,
    pub model: Option<String>,
    pub hardware_version: Option<String>,
    pub software_version: Option<String>,
    pub serial_number: Option<String>,
    /// The snapshot of `jkmon read --json`, read back as its type.
    pub snapshot: Option<SnapshotJson>,
    /// Energy in and out, stored energy and time left; `None` for a battery never read.
    pub energy: Option<EnergyView>,
    /// The newest switch writes (JK_BMS_CONTROL), newest first.
    pub switch_writes: Vec<super::switches::SwitchWriteView>,
}

/// Switch writes a battery card shows.
pub const SWITCH_WRITES_SHOWN: usize = 5;

/// The latest `readings` row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InverterView {
    pub id: i64,
    pub created_at: String,
    pub age_s: Option<f64>,
    /// `false` for jkmon's own rows and rows with no inverter key: "no inverter data", never
    /// an outage.
    pub has_inverter_data: bool,
    /// Older than three `POLL_INTERVAL`s: the program that writes the rows has stopped, and
    /// the row says nothing of now.
    pub stale: bool,
    pub error: Option<String>,
    /// The keys as the inverter's poller wrote them (any program may write this table, so
    /// its payload stays a JSON object; [`InverterView::text`] and [`InverterView::number`]
    /// read one key).
    pub payload: Option<Map<String, Value>>,
}

pub use crate::inverter::payload::{Grid, GRID_PRESENT_V};

impl InverterView {
    /// A key's text, `None` where it is missing, not text, or the poller's `N/A`.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.payload
            .as_ref()?
            .get(key)?
            .as_str()
            .filter(|v| *v != "N/A")
    }

    /// A key as a number, whether the poller wrote it as text (`"231.4"`) or as a number.
    pub fn number(&self, key: &str) -> Option<f64> {
        match self.payload.as_ref()?.get(key)? {
            Value::String(s) => s.trim().parse::<f64>().ok(),
            other => other.as_f64(),
        }
    }

    /// The grid's state by the one rule ([`crate::inverter::payload::grid`]): unknown for a
    /// row without inverter data, an error row, a stale row or one without a grid voltage,
    /// never an outage.
    pub fn grid(&self) -> Grid {
        if !self.has_inverter_data || self.error.is_some() || self.stale {
            return Grid::Unknown;
        }
        let mode = self
            .text("status_text")
            .and_then(crate::inverter::payload::mode_of_status_text);
        crate::inverter::payload::grid(mode, self.number("grid_voltage"))
    }
}

/// Several batteries as one bank.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BankView {
    pub batteries_online: usize,
    pub current_a: f64,
    pub power_w: f64,
    /// Weighted by each battery's full-charge capacity (equal weights where it is unknown).
    pub soc_pct: Option<f64>,
    /// The batteries' energy summed; time left from the sums.
    pub energy: EnergyView,
}

/// In JSON also `grid` (`up`, `down`, `unknown`: [`StatusView::grid`]), so the dashboard draws
/// the grid with the rule the bot and the alerts use.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusView {
    pub generated_at: DateTime<Utc>,
    pub batteries: Vec<BatteryView>,
    /// Only with two or more batteries.
    pub bank: Option<BankView>,
    pub inverter: Option<InverterView>,
    /// jkmon's own inverter poller, where it polls the inverter.
    pub poller: Option<PollerView>,
}

impl Serialize for StatusView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("StatusView", 6)?;
        s.serialize_field("generated_at", &self.generated_at)?;
        s.serialize_field("batteries", &self.batteries)?;
        s.serialize_field("bank", &self.bank)?;
        s.serialize_field("inverter", &self.inverter)?;
        s.serialize_field("inverter_poller", &self.poller)?;
        s.serialize_field("grid", &self.grid())?;
        s.end()
    }
}

impl StatusView {
    /// The grid as jkmon's own poller heard it from the inverter at its last poll (unknown
    /// while it is not online, or where that poll did not read the grid voltage), else as
    /// the latest `readings` row tells; unknown without either.
    pub fn grid(&self) -> Grid {
        match &self.poller {
            Some(p) => p.grid,
            None => self
                .inverter
                .as_ref()
                .map_or(Grid::Unknown, InverterView::grid),
        }
    }
}

/// Inverter keys: any one of them makes a row an inverter reading.
pub const INVERTER_KEYS: [&str; 8] = [
    "grid_voltage",
    "grid_power",
    "ac_output_voltage",
    "ac_output_power",
    "ac_output_freq",
    "pv_input_power",
    "status_text",
    "battery_charge_power",
];

fn age_s(then_ms: i64, now: DateTime<Utc>) -> f64 {
    ((now.timestamp_millis() - then_ms) as f64 / 1000.0).max(0.0)
}

/// The batteries a reader shows: the configured ones, or, where none is configured, the ones
/// the database holds (per position the one seen last, so an old configuration's battery at
/// the same place does not show twice).
pub fn batteries(conn: &Connection, config: &ReadConfig) -> Result<Vec<Battery>, StoreError> {
    if !config.batteries.is_empty() {
        return Ok(config.batteries.clone());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT position, name, address FROM bms_devices
         ORDER BY position, COALESCE(last_seen_ms, first_seen_ms) DESC, id DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Battery {
            position: usize::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
            name: r.get(1)?,
            address: r.get(2)?,
        })
    })?;
    let mut out: Vec<Battery> = Vec::new();
    for b in rows {
        let b = b?;
        if b.position > 0 && out.last().is_none_or(|l| l.position != b.position) {
            out.push(b);
        }
    }
    Ok(out)
}

/// Every battery, the bank, and the latest readings row.
pub fn status(
    conn: &Connection,
    config: &ReadConfig,
    now: DateTime<Utc>,
) -> Result<StatusView, StoreError> {
    let list = batteries(conn, config)?;
    let mut views = Vec::with_capacity(list.len());
    for b in &list {
        views.push(battery(conn, config, b, now)?);
    }
    let bank = (views.len() >= 2).then(|| bank(&views));
    Ok(StatusView {
        generated_at: now,
        batteries: views,
        bank,
        inverter: latest_reading(conn, now, config.inverter_max_gap)?,
        poller: super::poller::view(conn, now)?,
    })
}

/// What `bms_latest.snapshot` holds (see `write_battery`).
#[derive(Deserialize)]
struct Latest {
    snapshot: SnapshotJson,
}

fn battery(
    conn: &Connection,
    config: &ReadConfig,
    b: &Battery,
    now: DateTime<Utc>,
) -> Result<BatteryView, StoreError> {
    let mut view = BatteryView {
        position: b.position,
        name: b.name.clone(),
        address: b.address.clone(),
        state: State::Disconnected,
        state_detail: None,
        online: false,
        taken_at: None,
        age_s: None,
        model: None,
        hardware_version: None,
        software_version: None,
        serial_number: None,
        snapshot: None,
        energy: None,
        switch_writes: super::switches::recent(conn, &b.device_key(), SWITCH_WRITES_SHOWN)?,
    };
    let row = conn
        .query_row(
            "SELECT d.state, d.state_detail, d.model, d.hardware_version, d.software_version,
                    d.serial_number, l.taken_ms, l.snapshot
             FROM bms_devices AS d LEFT JOIN bms_latest AS l ON l.device_id = d.id
             WHERE d.device_key = ?1",
            [b.device_key()],
            |r| {
                view.state = State::from_stored(&r.get::<_, String>(0)?);
                view.state_detail = r.get::<_, Option<String>>(1)?.filter(|d| !d.is_empty());
                view.model = r.get(2)?;
                view.hardware_version = r.get(3)?;
                view.software_version = r.get(4)?;
                view.serial_number = r.get(5)?;
                Ok((r.get::<_, Option<i64>>(6)?, r.get::<_, Option<String>>(7)?))
            },
        )
        .optional()?;
    let Some((taken_ms, snapshot)) = row else {
        return Ok(view);
    };
    view.age_s = taken_ms.map(|t| age_s(t, now));
    view.taken_at = taken_ms.and_then(DateTime::from_timestamp_millis);
    let age = view.age_s.map(Duration::from_secs_f64);
    view.online = config.liveness.online(view.state, age);
    view.snapshot = snapshot.and_then(|text| match serde_json::from_str::<Latest>(&text) {
        Ok(latest) => Some(latest.snapshot),
        Err(e) => {
            // another version's snapshot: the battery shows no values rather than wrong ones
            tracing::debug!("battery {}: the stored snapshot does not read: {e}", b.name);
            None
        }
    });
    let counters = energy::counters(conn, &b.device_key(), local_day(now))?;
    view.energy = Some(EnergyView::new(
        &counters,
        local_day(now),
        view.snapshot.as_ref(),
        view.online,
    ));
    Ok(view)
}

/// Puts each battery's newest snapshot from `live` over the database's, where it is newer, and
/// judges freshness again by it.
pub fn overlay(view: &mut StatusView, live: &Live, config: &ReadConfig) {
    let now = view.generated_at;
    for b in &mut view.batteries {
        if let Some((snapshot, at)) = live.get(b.position) {
            if b.taken_at.is_none_or(|t| t < at) {
                let age = age_s(at.timestamp_millis(), now);
                b.snapshot = Some(SnapshotJson::new(&snapshot));
                b.taken_at = Some(at);
                b.age_s = Some(age);
                b.online = config
                    .liveness
                    .online(b.state, Some(Duration::from_secs_f64(age)));
            }
        }
        if let Some(counters) = live.energy(b.position) {
            b.energy = Some(EnergyView::new(
                &counters,
                local_day(now),
                b.snapshot.as_ref(),
                b.online,
            ));
        }
    }
    if view.batteries.len() >= 2 {
        view.bank = Some(bank(&view.batteries));
    }
}

fn bank(batteries: &[BatteryView]) -> BankView {
    let online: Vec<&SnapshotJson> = batteries
        .iter()
        .filter(|b| b.online)
        .filter_map(|b| b.snapshot.as_ref())
        .collect();
    let (mut weighted, mut weights) = (0.0, 0.0);
    for s in &online {
        if let Some(soc) = s.soc_effective_pct {
            let w = s
                .cell_info
                .nominal_capacity_ah
                .filter(|c| *c > 0.0)
                .unwrap_or(1.0);
            weighted += soc * w;
            weights += w;
        }
    }
    BankView {
        energy: EnergyView::bank(batteries.iter().filter_map(|b| b.energy.as_ref())),
        batteries_online: online.len(),
        current_a: online.iter().filter_map(|s| s.cell_info.current_a).sum(),
        power_w: online.iter().filter_map(|s| s.cell_info.power_w).sum(),
        soc_pct: (weights > 0.0).then(|| (weighted / weights * 10.0).round() / 10.0),
    }
}

/// The newest `readings` row, whatever wrote it.
pub fn latest_reading(
    conn: &Connection,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> Result<Option<InverterView>, StoreError> {
    // payload and error as any writer left them: a BLOB or text that is not UTF-8 is no JSON
    let text = |v: rusqlite::types::ValueRef| match v {
        rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).ok().map(str::to_string),
        _ => None,
    };
    let row: Option<(i64, String, Option<String>, Option<String>)> = conn
        .query_row(
            "SELECT id, created_at, payload, error FROM readings ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    text(r.get_ref(1)?).unwrap_or_default(),
                    text(r.get_ref(2)?),
                    text(r.get_ref(3)?),
                ))
            },
        )
        .optional()?;
    Ok(row.map(|(id, created_at, payload, error)| {
        let payload = payload
            .and_then(|p| serde_json::from_str::<Value>(&p).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            });
        let has_inverter_data = payload.as_ref().is_some_and(|m| {
            m.get("source").and_then(Value::as_str) != Some(OWN_ROW_SOURCE)
                && INVERTER_KEYS.iter().any(|k| m.contains_key(*k))
        });
        let age_s = parse_created_at(&created_at).map(|t| age_s(t.timestamp_millis(), now));
        InverterView {
            id,
            stale: age_s.is_none_or(|a| a > stale_after.as_secs_f64()),
            age_s,
            created_at,
            has_inverter_data,
            error,
            payload,
        }
    }))
}

pub use super::readings::parse_utc as parse_created_at;

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
    for b in &self::batteries(conn, config)? {
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
        inverter: super::inverter::points(
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
    let lower = from_ms.map(|ms| super::jobs::text_range(ms, i64::MAX).0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_give_at_most_about_300_points() {
        assert_eq!(bucket_for(86_400), 300);
        assert_eq!(bucket_for(7 * 86_400), 3_600);
        assert_eq!(bucket_for(30 * 86_400), 10_800);
        assert_eq!(bucket_for(365 * 86_400), 86_400);
        assert_eq!(bucket_for(600), 30);
    }

    #[test]
    fn created_at_in_the_monitors_formats() {
        let with_offset = parse_created_at("2026-01-16T21:32:00.123456+02:00").unwrap();
        assert_eq!(with_offset.to_rfc3339(), "2026-01-16T19:32:00.123456+00:00");
        let naive = parse_created_at("2026-01-16T21:32:00.5").unwrap();
        assert_eq!(naive.timestamp(), 1_768_599_120);
        assert!(parse_created_at("yesterday").is_none());
    }
}
