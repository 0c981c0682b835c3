//! The read side of the store, for the views (web, bot): the latest state of every battery and
//! of the inverter, and history aggregated on the server. Read-only connections from a small
//! pool; every query here blocks, so callers run it through [`Readers::run`], which moves it off
//! the async runtime.
//!
//! - this file: the pool of read-only connections ([`Readers`]) and what the views ask of it;
//! - `views`: what the views show (a battery, the inverter, the bank, the status);
//! - `status`: the latest state, from the file (and the newest snapshots where they live);
//! - `charts`: the charts' points and the legacy history rows, paged.

mod charts;
mod status;
mod views;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Local, NaiveDate, Utc};
use rusqlite::{Connection, OpenFlags};

use super::energy::{self, EnergyDay};
use super::history::Retention;
use super::live::Live;
use super::{Battery, StoreError};
use crate::battery::link::Liveness;

pub use self::charts::*;
pub use self::status::*;
pub use self::views::*;
pub use super::history::Range;
pub use super::inverter::InverterPoint;

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
