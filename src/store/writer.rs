//! The one writer: a thread of its own that owns the database connection, so no SQLite call
//! ever blocks the async runtime. Sessions' snapshots reach it through a bounded channel; every
//! store interval it commits what it has (the freshest snapshot of each battery for the merge,
//! all of them folded for history), and once an hour it downsamples and expires history.
//!
//! A battery's first snapshot is committed at once, and again the first after it went
//! offline or disconnected, so readers see it within a moment of the BMS answering rather than
//! an interval later; the interval paces the commits that follow. When the writer ends (jkmon
//! stops) it commits what it holds and then takes its batteries out of the merge, so rows the
//! inverter inserts afterwards carry no battery keys.
//!
//! A commit that fails (the other writer held the lock past the busy timeout, a full disk) is
//! logged and retried at the next interval with everything kept; only a run of failures long
//! enough to mean the database is gone ends the writer, and with it the service.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use tokio::sync::oneshot;

use super::energy::{self, Counters};
use super::live::Live;
use super::{Battery, Bucket, ReadingsAction, Store, StoreError, Update};
use crate::battery::energy::Meter;
use crate::battery::link::State;
use crate::battery::Snapshot;
use crate::inverter::poll::{InverterPoll, InverterState};

/// Snapshots waiting for the writer; at 2 frames/s per BMS this is minutes of slack.
const CHANNEL_CAPACITY: usize = 4_096;
/// How often history is downsampled and expired.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3_600);
/// Commits that may fail in a row before the writer gives up (at the default 30 s interval,
/// ten minutes).
const MAX_FAILED_COMMITS: u32 = 20;
/// Inverter rows kept while the database refuses them (an hour at the 10 s poll).
const MAX_PENDING_ROWS: usize = 360;

/// What the writer is told.
#[derive(Debug)]
pub enum Message {
    Snapshot {
        position: usize,
        snapshot: Arc<Snapshot>,
        taken_at: DateTime<Local>,
    },
    State {
        position: usize,
        state: State,
        detail: String,
        /// The BMS is offline (not merely between two periodic readings): its readings keys
        /// stop being merged at once.
        offline: bool,
    },
    /// A poll of jkmon's own inverter poller: its row inserted at once, with the batteries'
    /// newest keys.
    Reading(Arc<InverterPoll>),
    /// A switch write was answered: recorded at once.
    SwitchWrite(super::switches::WriteRecord),
    /// The service stops: the last commit, then the thread ends (other parts may still hold
    /// a [`WriterSender`]).
    Close,
    /// jkmon's own inverter poller changed state.
    InverterState {
        state: InverterState,
        detail: String,
        model: &'static str,
        link: String,
        interval: Duration,
    },
}

/// A clone of the writer's channel ([`Writer::sender`]).
#[derive(Clone)]
pub struct WriterSender(SyncSender<Message>);

impl WriterSender {
    /// Hands a message over without waiting; `false` when the writer is far behind or gone.
    pub fn send(&self, message: Message) -> bool {
        self.0.try_send(message).is_ok()
    }
}

/// What the writer did, when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub commits: u64,
    pub failed_commits: u64,
}

/// The handle the service keeps.
pub struct Writer {
    tx: Option<SyncSender<Message>>,
    /// Ends a long read of the chart catch-up when the service stops: while `maintaining`,
    /// the thread runs nothing else.
    interrupt: rusqlite::InterruptHandle,
    maintaining: Arc<std::sync::atomic::AtomicBool>,
    done: Option<oneshot::Receiver<Result<WriterStats, StoreError>>>,
    dropped: Arc<AtomicU64>,
}

#[derive(Default)]
struct Pending {
    latest: Option<(Arc<Snapshot>, DateTime<Local>)>,
    bucket: Bucket,
    fresh: bool,
    energy: energy::Pending,
}

impl Writer {
    /// Registers the batteries and starts the writer thread. Each battery's energy counters
    /// go on from what the database holds, and reach `live` (the views of this process) with
    /// every snapshot.
    pub fn start(
        mut store: Store,
        batteries: Vec<Battery>,
        live: Option<Live>,
    ) -> Result<Writer, StoreError> {
        store.register(&batteries, super::now_ms())?;
        let today = Local::now().date_naive();
        let mut counters = BTreeMap::new();
        for b in &batteries {
            let c = store.energy(b.position, today)?;
            if let Some(live) = &live {
                live.record_energy(b.position, c);
            }
            counters.insert(b.position, c);
        }
        let (tx, rx) = sync_channel::<Message>(CHANNEL_CAPACITY);
        let (done_tx, done) = oneshot::channel();
        let interrupt = store.conn.get_interrupt_handle();
        let maintaining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let in_thread = maintaining.clone();
        std::thread::Builder::new()
            .name("jkmon-store".into())
            .spawn(move || {
                let result = run(&mut store, &batteries, counters, live, rx, &in_thread);
                let result = match result {
                    Ok(stats) => store.close().map(|()| stats),
                    Err(e) => Err(e),
                };
                let _ = done_tx.send(result);
            })
            .map_err(StoreError::Thread)?;
        Ok(Writer {
            tx: Some(tx),
            interrupt,
            maintaining,
            done: Some(done),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A sender for parts that report to the writer on their own (switch writes), with
    /// [`Writer::send`]'s manners.
    pub fn sender(&self) -> Option<WriterSender> {
        self.tx.clone().map(WriterSender)
    }

    /// Hands a message over without waiting. When the writer is far behind (the database
    /// locked for minutes), snapshots are dropped and counted rather than piled up.
    pub fn send(&self, message: Message) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_multiple_of(1_000) {
                    tracing::warn!("the database writer is behind; {n} snapshot(s) skipped so far");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Resolves when the writer ended on its own, which only a fatal error makes it do.
    pub async fn failed(&mut self) -> StoreError {
        match self.done.as_mut() {
            Some(done) => {
                let result = done.await;
                self.done = None;
                match result {
                    Ok(Err(e)) => e,
                    _ => StoreError::WriterGone,
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Commits what is pending, closes the database and waits for the thread. A chart
    /// catch-up read in progress is interrupted (it resumes at the next start).
    pub async fn stop(mut self) -> Result<WriterStats, StoreError> {
        // first, since a long maintenance step is what keeps the channel full
        if self.maintaining.load(Ordering::SeqCst) {
            self.interrupt.interrupt();
        }
        if let Some(tx) = self.tx.take() {
            // behind everything already handed over; waits only while the channel is full
            let _ = tokio::task::spawn_blocking(move || tx.send(Message::Close).is_ok()).await;
        }
        match self.done.take() {
            Some(done) => done.await.unwrap_or(Err(StoreError::WriterGone)),
            None => Ok(WriterStats::default()),
        }
    }
}

fn run(
    store: &mut Store,
    batteries: &[Battery],
    counters: BTreeMap<usize, Counters>,
    live: Option<Live>,
    rx: std::sync::mpsc::Receiver<Message>,
    maintaining: &std::sync::atomic::AtomicBool,
) -> Result<WriterStats, StoreError> {
    let interval = store.config.interval;
    let names: BTreeMap<usize, &str> = batteries
        .iter()
        .map(|b| (b.position, b.name.as_str()))
        .collect();
    // a gap the battery's freshness does not bridge means it was offline: no energy for it
    let meters = names
        .keys()
        .map(|p| (*p, Meter::new(store.config.freshness)))
        .collect();
    let mut w = Writing {
        store,
        pending: BTreeMap::new(),
        first: names.keys().copied().collect(),
        names,
        stats: WriterStats::default(),
        failed_in_a_row: 0,
        interval,
        meters,
        counters,
        live,
        rows: Vec::new(),
    };
    let mut next_commit = Instant::now() + interval;
    let mut next_maintenance = Instant::now();
    loop {
        // the catch-up of the inverter's history runs chunk after chunk; commits interleave as
        // they fall due
        let wait = next_commit
            .min(next_maintenance)
            .saturating_duration_since(Instant::now());
        let (closing, commit_now) = match rx.recv_timeout(wait) {
            Ok(Message::Close) | Err(RecvTimeoutError::Disconnected) => (true, false),
            Ok(message) => (false, w.take(message)),
            Err(RecvTimeoutError::Timeout) => (false, false),
        };
        if closing || commit_now || Instant::now() >= next_commit {
            w.flush_rows();
            w.commit(closing)?;
            if closing {
                release(w.store);
                return Ok(w.stats);
            }
        }
        let now = Instant::now();
        if now >= next_commit {
            next_commit = (next_commit + interval).max(now);
        }
        if now >= next_maintenance {
            maintaining.store(true, Ordering::SeqCst);
            let more = maintain(w.store);
            maintaining.store(false, Ordering::SeqCst);
            // catching up on the inverter's rows: the next chunk right away
            next_maintenance = if more { now } else { now + MAINTENANCE_EVERY };
        }
    }
}

impl Writing<'_> {
    /// One message other than `Close`; `true` when it asks for a commit now.
    fn take(&mut self, message: Message) -> bool {
        match message {
            Message::Close => return true,
            Message::Snapshot {
                position,
                snapshot,
                taken_at,
            } => return self.snapshot(position, snapshot, taken_at),
            Message::State {
                position,
                state,
                detail,
                offline,
            } => self.state(position, state, &detail, offline),
            Message::Reading(poll) => self.reading(poll),
            Message::SwitchWrite(record) => {
                if let Err(e) = self.store.record_switch_write(&record) {
                    tracing::warn!(
                        "could not record the write {} to {}: {e}",
                        record.setting,
                        record.battery
                    );
                }
            }
            Message::InverterState {
                state,
                detail,
                model,
                link,
                interval,
            } => {
                let set = self
                    .store
                    .set_poller_state(state, &detail, model, &link, interval);
                if let Err(e) = set {
                    tracing::warn!("could not record the inverter poller's state: {e}");
                }
            }
        }
        false
    }
}

/// The writer thread's state between two messages.
struct Writing<'a> {
    store: &'a mut Store,
    names: BTreeMap<usize, &'a str>,
    pending: BTreeMap<usize, Pending>,
    /// Batteries whose next snapshot is committed at once: every one at the start, and each
    /// again after its session disconnected.
    first: std::collections::BTreeSet<usize>,
    stats: WriterStats,
    failed_in_a_row: u32,
    interval: Duration,
    /// Each battery's energy integration, fed every snapshot.
    meters: BTreeMap<usize, Meter>,
    /// Each battery's counters: the database's plus what is pending.
    counters: BTreeMap<usize, Counters>,
    live: Option<Live>,
    /// Inverter polls whose rows the database has not taken yet.
    rows: Vec<Arc<InverterPoll>>,
}

impl Writing<'_> {
    /// Keeps a snapshot for the next commit; `true` when it is to be committed at once.
    fn snapshot(
        &mut self,
        position: usize,
        snapshot: Arc<Snapshot>,
        taken_at: DateTime<Local>,
    ) -> bool {
        let p = self.pending.entry(position).or_default();
        if let Some(power_mw) = snapshot.cell_info.power_mw() {
            let meter = self
                .meters
                .entry(position)
                .or_insert_with(|| Meter::new(self.store.config.freshness));
            let step = meter.add(taken_at, power_mw as f64 / 1000.0);
            let average_w = meter.average_w();
            p.energy.add(&step, average_w);
            let counters = self.counters.entry(position).or_default();
            counters.add(&step, average_w);
            if let Some(live) = &self.live {
                live.record_energy(position, *counters);
            }
        }
        p.bucket.add(&snapshot);
        p.latest = Some((snapshot, taken_at));
        p.fresh = true;
        self.first.remove(&position)
    }

    /// Inserts an inverter row (and any the database refused before) with the newest keys of
    /// every fresh battery. A refused row is kept for the next one, up to
    /// [`MAX_PENDING_ROWS`].
    fn reading(&mut self, row: Arc<InverterPoll>) {
        self.rows.push(row);
        self.flush_rows();
    }

    /// Inserts the inverter rows waiting, if any.
    fn flush_rows(&mut self) {
        if self.rows.is_empty() {
            return;
        }
        let fresh: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| p.fresh)
            .filter_map(|(position, p)| {
                let (snapshot, taken_at) = p.latest.as_ref()?;
                Some((*position, snapshot.as_ref(), *taken_at))
            })
            .collect();
        match self.store.insert_readings(&fresh, &self.rows) {
            Ok(ids) => {
                // how long a poll's row took to be readable (scripts/load-inverter.sh reads it)
                let committed = chrono::Utc::now();
                for (id, poll) in ids.iter().zip(&self.rows) {
                    tracing::debug!(
                        "inverter: readings #{id} committed {} ms after its poll ended (the poll took {} ms)",
                        (committed - poll.at).num_milliseconds(),
                        poll.took.as_millis()
                    );
                }
                self.rows.clear();
                self.count_inverter_energy();
            }
            Err(e) => {
                if self.rows.len() > MAX_PENDING_ROWS {
                    let dropped = self.rows.len() - MAX_PENDING_ROWS;
                    self.rows.drain(..dropped);
                }
                tracing::error!(
                    "could not insert the inverter's reading: {e}; {} row(s) kept for the next try",
                    self.rows.len()
                );
            }
        }
    }

    /// Today's inverter energy after a row, for the views of this process (Home Assistant's
    /// Energy dashboard reads it over MQTT): the same count `/api/v1/energy` makes.
    fn count_inverter_energy(&mut self) {
        let Some(live) = &self.live else { return };
        let now = Local::now();
        match self.store.inverter_energy_today(now) {
            Ok(today) => live.record_inverter_energy(today),
            Err(e) => tracing::warn!("could not count the inverter's energy today: {e}"),
        }
    }

    /// Records a session's state; an offline battery's keys leave the merge at once.
    fn state(&mut self, position: usize, state: State, detail: &str, offline: bool) {
        if state == State::Disconnected {
            self.first.insert(position);
        }
        if offline {
            self.pending.entry(position).or_default().fresh = false;
            if let Err(e) = self.store.mark_stale(position) {
                tracing::error!("could not mark battery {position} offline in the database: {e}");
            }
        }
        if let Err(e) = self
            .store
            .set_state(position, state, detail, super::now_ms())
        {
            tracing::warn!("could not record battery {position}'s state: {e}");
        }
    }

    /// Commits what is pending. A failed commit keeps the data for the next try; the writer
    /// gives up (the error) when the file is gone, after [`MAX_FAILED_COMMITS`] failures in
    /// a row, or when a failure is its last chance (`closing`).
    fn commit(&mut self, closing: bool) -> Result<(), StoreError> {
        let e = match commit(self.store, &mut self.pending, &self.names) {
            Ok(committed) => {
                if committed {
                    self.stats.commits += 1;
                    self.failed_in_a_row = 0;
                }
                return Ok(());
            }
            Err(e @ StoreError::Gone { .. }) => {
                tracing::error!("{e}");
                return Err(e);
            }
            Err(StoreError::Sqlite(error)) => StoreError::Write {
                path: self.store.path().display().to_string(),
                error,
            },
            Err(other) => other,
        };
        self.stats.failed_commits += 1;
        self.failed_in_a_row += 1;
        tracing::error!(
            "could not write to the database {e}; keeping the data and retrying in {:.1} s ({} failure(s) in a row)",
            self.interval.as_secs_f64(),
            self.failed_in_a_row
        );
        if self.failed_in_a_row >= MAX_FAILED_COMMITS || closing {
            release(self.store);
            return Err(e);
        }
        Ok(())
    }
}

/// Downsamples and expires history; `true` while the chart catch-up has more to do.
fn maintain(store: &mut Store) -> bool {
    match store.maintain(super::now_ms()) {
        Ok(m) => {
            if m.rows_made + m.rows_deleted > 0 {
                tracing::info!(
                    "history: {} downsampled row(s) made, {} expired row(s) deleted",
                    m.rows_made,
                    m.rows_deleted
                );
            }
            if m.more {
                tracing::info!(
                    "history: aggregating the inverter's rows for charts ({} bucket(s) so far)…",
                    m.inverter_buckets
                );
            }
            m.more
        }
        Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)))
            if f.code == rusqlite::ErrorCode::OperationInterrupted =>
        {
            tracing::debug!("history maintenance interrupted: jkmon stops");
            false
        }
        Err(e) => {
            tracing::warn!("history maintenance failed (retried in an hour): {e}");
            false
        }
    }
}

/// Takes this run's batteries out of the merge (jkmon stops).
fn release(store: &mut Store) {
    if let Err(e) = store.release_readings() {
        tracing::error!(
            "could not take the batteries out of {}'s merge: rows inserted in the next {} s may still carry their last values ({e})",
            store.path().display(),
            store.config.freshness.as_secs()
        );
    }
}

/// Commits the pending snapshots; `Ok(false)` when there was nothing to write.
fn commit(
    store: &mut Store,
    pending: &mut BTreeMap<usize, Pending>,
    names: &BTreeMap<usize, &str>,
) -> Result<bool, StoreError> {
    let updates: Vec<Update> = pending
        .iter()
        .filter_map(|(position, p)| {
            let (snapshot, taken_at) = p.latest.as_ref()?;
            Some(Update {
                position: *position,
                snapshot,
                taken_at: *taken_at,
                bucket: &p.bucket,
                fresh: p.fresh,
                energy: &p.energy,
            })
        })
        .collect();
    if updates.is_empty() {
        return Ok(false);
    }
    let now = Local::now();
    let action = store.commit(&updates, now)?;
    for u in &updates {
        let name = names.get(&u.position).copied().unwrap_or("?");
        tracing::info!(
            "{name}: {}; {}",
            describe(u.snapshot),
            if u.fresh {
                action.clone()
            } else {
                ReadingsAction::NothingFresh
            }
        );
        tracing::debug!(
            "committed battery={} history_ts_ms={} samples={}",
            u.position,
            now.timestamp_millis(),
            u.bucket.samples
        );
    }
    pending.clear();
    Ok(true)
}

/// `52.6 V, +5.2 A, 85 %, 18.5 °C, 16 cells (delta 0.008 V)`.
pub fn describe(s: &Snapshot) -> String {
    let c = &s.cell_info;
    let mut out = format!("{:.1} V", f64::from(c.total_voltage_mv) / 1000.0);
    if let Some(ma) = c.current_ma {
        out += &format!(", {:+.1} A", f64::from(ma) / 1000.0);
    }
    if let Some(p) = s.soc_effective_pct {
        out += &format!(", {p:.0} %");
    }
    if let Some(dc) = super::fields::battery_temperature_dc(s) {
        out += &format!(", {:.1} °C", f64::from(dc) / 10.0);
    }
    out += &format!(", {} cells", c.cell_count());
    if let Some(st) = c.stats() {
        out += &format!(" (delta {:.3} V)", f64::from(st.delta_uv) / 1e6);
    }
    out
}
