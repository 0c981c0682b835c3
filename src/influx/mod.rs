//! The InfluxDB sink (`INFLUX_URL`): every battery snapshot and every inverter poll as points
//! ([`line`]), at most one per battery (and one for the inverter) per `INFLUX_INTERVAL`,
//! written in batches ([`client`]) by a task of its own.
//!
//! Never in the way: the service hands it each snapshot and poll and goes on ([`Sink::record`]
//! only formats lines and adds them to a bounded queue, [`queue`]); while InfluxDB is down or
//! slow the points wait there, and go in order, once, when it answers again. When the queue is
//! full the oldest waiting points are dropped, counted in `/metrics` and said in the log.
//! A refusal (credentials, permission, database or bucket) is said once, naming the variable.
//!
//! Every interval, not changed values only: a point per interval keeps "no point" meaning "not
//! read" (a BMS gone quiet, a poll that failed), and keeps Grafana's `mean()` and `last()`
//! right; the cost is measured in the book's performance page.
//!
//! Layer 6 (a view): reads `battery`, `report`, `inverter` and `telemetry` (its counters).

pub mod client;
pub mod line;
pub mod queue;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::battery::Snapshot;
use crate::inverter::poll::InverterPoll;
use crate::report::json::SnapshotJson;
use crate::telemetry::SinkCounters;
use client::{Client, Outcome};
use queue::Queue;

/// `INFLUX_INTERVAL`'s default: a point per battery every 10 s, as often as the inverter is
/// polled.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(10);
/// `INFLUX_BUFFER_POINTS`'s default: about 6 MB, over 5 hours of one 16-cell battery and an
/// inverter at 10 s.
pub const DEFAULT_BUFFER_POINTS: usize = 50_000;
/// Points per write (InfluxDB suggests 5000).
pub const BATCH_POINTS: usize = 5_000;
/// The longest wait between two tries while InfluxDB is away (a refused connection costs
/// nothing; the points go within this of its return).
const RETRY_AWAY: Duration = Duration::from_secs(15);
/// The same while it refuses the configuration (which only the owner can fix).
const RETRY_REFUSED: Duration = Duration::from_secs(60);
/// How long the last write may take when jkmon stops (within the service's 3 s for its parts
/// to stop).
pub const LAST_WRITE: Duration = Duration::from_secs(2);

/// Where and how to write.
#[derive(Debug, Clone, PartialEq)]
pub struct InfluxConfig {
    /// `INFLUX_URL`: the server's address (`http://127.0.0.1:8086`), a path prefix allowed.
    pub url: reqwest::Url,
    pub api: Api,
    /// `INFLUX_INTERVAL`: at most one point per battery (and inverter) per interval; zero:
    /// every snapshot.
    pub every: Duration,
    /// `INFLUX_BUFFER_POINTS`.
    pub buffer_points: usize,
    /// `INFLUX_GZIP`.
    pub gzip: bool,
}

/// The write API: InfluxDB 1.x's (and the v1-compatible one of newer servers), or 2.x/3.x's.
#[derive(Clone, PartialEq)]
pub enum Api {
    V1 {
        database: String,
        retention_policy: Option<String>,
        user: Option<String>,
        password: Option<String>,
    },
    V2 {
        org: Option<String>,
        bucket: String,
        token: Option<String>,
    },
}

impl std::fmt::Debug for Api {
    /// Without the password or the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Api::V1 {
                database,
                retention_policy,
                user,
                ..
            } => write!(f, "V1 {{ database: {database:?}, retention_policy: {retention_policy:?}, user: {user:?} }}"),
            Api::V2 { org, bucket, .. } => write!(f, "V2 {{ org: {org:?}, bucket: {bucket:?} }}"),
        }
    }
}

impl InfluxConfig {
    /// Where the points go, in words: `database jk at http://…` or `bucket jk (org home) at …`.
    pub fn describe(&self) -> String {
        match &self.api {
            Api::V1 { database, .. } => format!("database {database} at {}", self.url),
            Api::V2 { bucket, org, .. } => match org {
                Some(org) => format!("bucket {bucket} (org {org}) at {}", self.url),
                None => format!("bucket {bucket} at {}", self.url),
            },
        }
    }
}

/// What the service and the sink's task share.
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    counters: Arc<SinkCounters>,
    /// Whether the log already said the buffer is dropping points (said once per outage).
    dropping_said: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn push(&self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        SinkCounters::add(&self.counters.made, lines.len() as u64);
        let mut queue = self.queue.lock().expect("influx queue");
        let dropped = queue.push(lines);
        self.counters
            .waiting
            .store(queue.len() as u64, std::sync::atomic::Ordering::Relaxed);
        drop(queue);
        if dropped > 0 {
            SinkCounters::add(&self.counters.dropped, dropped);
            if !self
                .dropping_said
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(
                    "influx: the buffer is full (INFLUX_BUFFER_POINTS): dropping the oldest points until InfluxDB takes them again"
                );
            }
        }
    }
}

/// The service's side: takes snapshots and polls, never waits.
#[derive(Debug)]
pub struct Sink {
    shared: Arc<Shared>,
    /// The batteries' names, by index.
    names: Vec<String>,
    every_ms: i64,
    /// The interval each battery (and, last, the inverter) last had a point in.
    last_slot: Mutex<HashMap<usize, i64>>,
}

/// The inverter's key in `last_slot`.
const INVERTER: usize = usize::MAX;

impl Sink {
    /// Whether a point of `who` taken `at` starts a new interval (and so is written).
    fn due(&self, who: usize, at: DateTime<Utc>) -> bool {
        let slot = if self.every_ms == 0 {
            at.timestamp_millis()
        } else {
            at.timestamp_millis().div_euclid(self.every_ms)
        };
        let mut last = self.last_slot.lock().expect("influx slots");
        // another interval, later or (the clock set back) earlier
        if last.get(&who) == Some(&slot) {
            return false;
        }
        last.insert(who, slot);
        true
    }

    /// A battery's snapshot (`battery` is its index), taken `at`.
    pub fn record(&self, battery: usize, snapshot: &Snapshot, at: DateTime<Utc>) {
        if !self.due(battery, at) {
            return;
        }
        let serial = snapshot
            .device_info
            .as_ref()
            .map(|d| d.serial_number.trim());
        let who = line::Battery {
            position: battery + 1,
            name: self.names.get(battery).map_or("", String::as_str),
            serial: serial.filter(|s| !s.is_empty()),
        };
        self.shared
            .push(line::battery(who, &SnapshotJson::new(snapshot), at));
    }

    /// One poll of jkmon's own inverter poller.
    pub fn record_inverter(&self, poll: &InverterPoll) {
        if !self.due(INVERTER, poll.at) {
            return;
        }
        self.shared.push(line::inverter(poll).into_iter().collect());
    }
}

/// Starts the sink: the service's handle, and the task that writes (it ends with `stop`, after
/// a last write of at most [`LAST_WRITE`]).
pub fn start(
    config: &InfluxConfig,
    names: Vec<String>,
    counters: Arc<SinkCounters>,
    stop: CancellationToken,
) -> (Sink, tokio::task::JoinHandle<()>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::new(config.buffer_points)),
        counters,
        dropping_said: false.into(),
    });
    let sink = Sink {
        shared: Arc::clone(&shared),
        names,
        every_ms: config.every.as_millis() as i64,
        last_slot: Mutex::default(),
    };
    let writer = Writer {
        client: Client::new(config),
        shared,
        flush_every: config.every.max(Duration::from_secs(1)),
        retry: None,
        said: None,
        away_since: None,
        current: None,
        rejected_said: None,
    };
    let pace = if config.every.is_zero() {
        "every snapshot".to_string()
    } else {
        format!("a point every {} s", config.every.as_secs_f64())
    };
    tracing::info!(
        "influx: writing to the {} ({pace}, INFLUX_INTERVAL), up to {} points waiting",
        config.describe(),
        config.buffer_points
    );
    (sink, tokio::spawn(writer.run(stop)))
}

/// The task that writes.
struct Writer {
    client: Client,
    shared: Arc<Shared>,
    flush_every: Duration,
    /// While writes fail: the wait before the next try.
    retry: Option<Duration>,
    /// The failure the log last told (told again only when it changes).
    said: Option<String>,
    away_since: Option<Instant>,
    /// The batch on its way: taken from the queue, not yet settled.
    current: Option<(String, usize)>,
    /// The kind of refusal of points the log last told.
    rejected_said: Option<String>,
}

impl Writer {
    async fn run(mut self, stop: CancellationToken) {
        loop {
            let wait = self.retry.unwrap_or(self.flush_every);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => break,
            }
            // a write InfluxDB is slow to answer does not hold the stop up: its batch stays
            // in `current`, to go first in the last write
            tokio::select! {
                _ = self.flush() => {}
                _ = stop.cancelled() => break,
            }
        }
        // the last points, as far as InfluxDB takes them in time
        let _ = tokio::time::timeout(LAST_WRITE, self.flush()).await;
        let left = self.shared.queue.lock().expect("influx queue").len();
        if left > 0 {
            tracing::warn!("influx: {left} points were not written (InfluxDB did not take them before jkmon stopped)");
        }
        let c = &self.shared.counters;
        tracing::info!(
            "influx: {} points written this run ({} dropped, {} refused)",
            SinkCounters::get(&c.written),
            SinkCounters::get(&c.dropped),
            SinkCounters::get(&c.rejected)
        );
    }

    /// Writes every waiting batch, until one fails.
    async fn flush(&mut self) {
        loop {
            if self.current.is_none() {
                self.current = self
                    .shared
                    .queue
                    .lock()
                    .expect("influx queue")
                    .take(BATCH_POINTS);
            }
            let Some((body, _)) = &self.current else {
                return;
            };
            let (outcome, sent) = self.client.write(body).await;
            let Some((body, n)) = self.current.take() else {
                return;
            };
            if outcome == Outcome::Written {
                SinkCounters::add(&self.shared.counters.sent_bytes, sent as u64);
            }
            let ok = self.settle(outcome, body, n);
            self.shared.counters.waiting.store(
                self.shared.queue.lock().expect("influx queue").len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            if !ok {
                return;
            }
        }
    }

    /// Counts and tells what one write came to; `false` when the points must wait.
    fn settle(&mut self, outcome: Outcome, body: String, n: usize) -> bool {
        let counters = &self.shared.counters;
        let queue = &self.shared.queue;
        match outcome {
            Outcome::Written | Outcome::Rejected(_) => {
                queue.lock().expect("influx queue").done();
                if let Outcome::Rejected(why) = &outcome {
                    SinkCounters::add(&counters.rejected, n as u64);
                    // said once per kind: the message names the line, which changes each time
                    let kind: String = why.split(':').take(3).collect();
                    if self.rejected_said.as_deref() != Some(kind.as_str()) {
                        tracing::error!("influx: {n} points refused, not sent again (the next such are only counted, in jkmon_influx_points_rejected_total): {why}");
                        self.rejected_said = Some(kind);
                    }
                } else {
                    SinkCounters::add(&counters.written, n as u64);
                    let now_ms = Utc::now().timestamp_millis().max(0) as u64;
                    counters
                        .last_written_ms
                        .store(now_ms, std::sync::atomic::Ordering::Relaxed);
                    self.back();
                }
                true
            }
            Outcome::Away(why) => {
                queue.lock().expect("influx queue").failed(body);
                self.failed(
                    format!("cannot write to {}: {why}", self.client.write_url()),
                    false,
                );
                false
            }
            Outcome::Refused(refusal) => {
                queue.lock().expect("influx queue").failed(body);
                self.failed(refusal.to_string(), true);
                false
            }
        }
    }

    /// A write failed: say so once per outage (a refusal again when it changes), and wait
    /// longer before the next try.
    fn failed(&mut self, why: String, refused: bool) {
        SinkCounters::add(&self.shared.counters.failed_writes, 1);
        self.away_since.get_or_insert_with(Instant::now);
        let most = if refused { RETRY_REFUSED } else { RETRY_AWAY };
        let retry = self
            .retry
            .map_or(Duration::from_secs(1), |r| (r * 2).min(most));
        self.retry = Some(retry);
        // InfluxDB away is one story whatever the socket says; each refusal is its own
        let story = if refused { why.clone() } else { "away".into() };
        if self.said.as_deref() != Some(story.as_str()) {
            let waiting = self.shared.queue.lock().expect("influx queue").len();
            if refused {
                tracing::error!(
                    "influx: {why}; {waiting} points wait, tried again at most a minute apart"
                );
            } else {
                tracing::warn!("influx: {why}; {waiting} points wait and go when it answers");
            }
            self.said = Some(story);
        }
    }

    /// A write went through after failures: say so, with what was dropped meanwhile.
    fn back(&mut self) {
        self.retry = None;
        let Some(since) = self.away_since.take() else {
            return;
        };
        self.said = None;
        let dropped = self
            .shared
            .queue
            .lock()
            .expect("influx queue")
            .take_dropped();
        self.shared
            .dropping_said
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let lost = if dropped > 0 {
            format!("; {dropped} points were dropped meanwhile (the buffer was full)")
        } else {
            String::new()
        };
        tracing::info!(
            "influx: writing again after {:.0} s{lost}",
            since.elapsed().as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sink(every: Duration) -> Sink {
        let config = InfluxConfig {
            url: reqwest::Url::parse("http://127.0.0.1:8086").unwrap(),
            api: Api::V1 {
                database: "jk".into(),
                retention_policy: None,
                user: None,
                password: None,
            },
            every,
            buffer_points: 100,
            gzip: true,
        };
        Sink {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::new(config.buffer_points)),
                counters: Arc::default(),
                dropping_said: false.into(),
            }),
            names: vec!["A".into()],
            every_ms: config.every.as_millis() as i64,
            last_slot: Mutex::default(),
        }
    }

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_765_000_000_000 + ms).unwrap()
    }

    #[test]
    fn the_first_snapshot_of_each_interval_of_the_clock_is_written() {
        let s = sink(Duration::from_secs(10));
        let due: Vec<bool> = [0, 3_000, 9_999, 10_000, 25_000, 26_000]
            .into_iter()
            .map(|ms| s.due(0, at(ms)))
            .collect();
        assert_eq!(due, [true, false, false, true, true, false]);
        // each battery and the inverter on its own
        assert!(s.due(1, at(26_000)) && s.due(INVERTER, at(26_000)));
        // the clock set back (NTP on a Pi without a real-time clock): written, not held back
        assert!(s.due(0, at(5_000)));
    }

    #[test]
    fn with_no_interval_every_snapshot_is_written() {
        let s = sink(Duration::ZERO);
        assert!([0, 1, 2, 500].into_iter().all(|ms| s.due(0, at(ms))));
    }
}
