//! One session per BMS: an explicit state machine that keeps a BMS connected and turns its
//! stream into snapshots.
//!
//! ```text
//!            ┌──────────── backoff (capped, jittered) ◄─────────────┐
//!            ▼                                                       │ connect failed,
//!   Disconnected ──► Connecting ──► Handshake ──► Streaming ──────────┘ handshake failed,
//!            ▲                        (0x97, 0x96)   │  every frame     link lost, stale
//!            └── periodic mode: after one snapshot ◄─┘  → Snapshot
//! ```
//!
//! - **persistent** (default): stays connected and consumes the ~2 frames/s the BMS pushes. No
//!   valid frame for `stale` → offline, reconnect.
//! - **periodic**: connects, reads one snapshot, disconnects, waits `poll_interval` — Bluetooth is
//!   free for the phone app in between.
//!
//! Every connection gets a fresh [`FrameStream`], so the assembler starts empty after a
//! disconnect. Every state change is logged with the BMS's name and sent as a [`SessionEvent`].
//! The session ends when nobody listens to its events any more.
//!
//! Layer 3: may use `transport`, `battery`, `protocol` and `inverter`.

pub mod bus;
pub mod control;
pub mod handshake;
pub mod inverter;
mod read_error;
pub mod serial;
pub mod stream;
pub mod watchdog;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

pub use crate::battery::link::{ConnectMode, EventKind, Liveness, SessionEvent, State};
use crate::battery::{Snapshot, SocEstimator};
use crate::protocol::{AssemblerConfig, VariantChoice};
pub use crate::transport::backoff::Backoff;
use crate::transport::{connect_by, Connector, Link};
pub use handshake::{handshake, read_once, ReadError, Reading};
pub use stream::{FrameStream, StreamEvent};
pub use watchdog::Watchdog;

/// How jkmon talks to the BMS once the link is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialogue {
    /// BLE (and the simulator): the 0x97/0x96 handshake, then the BMS pushes cell info.
    #[default]
    Ble,
    /// The serial `4E 57` port: one read-all request per poll, one answer each.
    Serial,
}

impl Dialogue {
    /// How frames are found in what this dialogue's link delivers.
    pub fn framing(self) -> AssemblerConfig {
        match self {
            Dialogue::Ble => AssemblerConfig::ble(),
            Dialogue::Serial => AssemblerConfig::serial(),
        }
    }
}

/// How every session behaves (from the typed config).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    pub mode: ConnectMode,
    /// No valid frame for this long while streaming → offline, reconnect (`JK_BMS_STALE_SEC`).
    pub stale: Duration,
    /// Periodic mode: time between readings (`JK_BMS_POLL_INTERVAL`).
    pub poll_interval: Duration,
    /// Connecting plus the handshake must finish within this (`JK_BMS_CONNECT_TIMEOUT_SEC`).
    pub connect_timeout: Duration,
    /// Backoff between failed attempts (`JK_BMS_RETRY_MIN_SEC`, `JK_BMS_RETRY_MAX_SEC`).
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub variant: VariantChoice,
    pub dialogue: Dialogue,
    /// Wired transports: how long to wait for the answer to one request
    /// (`JK_BMS_RESPONSE_TIMEOUT_MS`).
    pub response_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            mode: ConnectMode::Persistent,
            stale: Duration::from_secs(30),
            poll_interval: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(20),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            variant: VariantChoice::Auto,
            dialogue: Dialogue::Ble,
            response_timeout: Duration::from_secs(1),
        }
    }
}

/// Why the serial 4E 57 port takes no write of `setting`.
fn serial_refusal(setting: crate::protocol::control::Setting) -> control::WriteError {
    crate::protocol::control::serial_port_refusal(setting.switch).into()
}

/// The receiver of a session's events is gone: nobody listens any more, so the session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// One BMS, its connector and where its events go.
pub struct Session {
    battery: usize,
    name: Arc<str>,
    connector: Arc<dyn Connector>,
    config: SessionConfig,
    estimator: Arc<dyn SocEstimator>,
    events: mpsc::Sender<SessionEvent>,
    state: State,
    backoff: Backoff,
    /// Switch writes asked of this battery (only where control is on).
    writes: Option<mpsc::Receiver<control::WriteRequest>>,
    /// A write for the next connection: asked between two periodic readings, or whose link
    /// dropped before the BMS confirmed it.
    retry: Option<control::Write>,
}

/// What one chunk brought.
#[derive(Debug, Clone, Copy, Default)]
struct Took {
    /// Anything valid.
    any: bool,
    /// A settings frame.
    settings: bool,
    /// A cell-info frame (a snapshot went out).
    cells: bool,
}

/// How one connection ended (a session nobody listens to any more ends with [`Stopped`]).
enum Outcome {
    /// Never got to streaming.
    Failed(String),
    /// Was streaming, then lost it.
    Lost(String),
    /// Periodic mode: the one snapshot is out.
    Done,
}

/// What the BLE stream loop keeps between two events.
struct Following {
    stream: FrameStream,
    last_valid: Instant,
    /// The write under way, waiting for the settings frame that shows it.
    write: Option<control::Write>,
    /// Periodic mode: its write was answered; the connection ends after the next snapshot.
    answered: bool,
}

impl Session {
    pub fn new(
        battery: usize,
        name: &str,
        connector: Arc<dyn Connector>,
        config: SessionConfig,
        estimator: Arc<dyn SocEstimator>,
        events: mpsc::Sender<SessionEvent>,
    ) -> Session {
        let backoff = Backoff::new(
            config.retry_min,
            config.retry_max,
            0x6a6b_6d6f_6e00 + battery as u64 + now_nanos(),
        );
        Session {
            battery,
            name: name.into(),
            connector,
            config,
            estimator,
            events,
            state: State::Disconnected,
            backoff,
            writes: None,
            retry: None,
        }
    }

    /// Takes switch writes from `writes` ([`control`]).
    pub fn with_writes(mut self, writes: mpsc::Receiver<control::WriteRequest>) -> Session {
        self.writes = Some(writes);
        self
    }

    /// Runs until the receiver of the events is dropped.
    pub async fn run(mut self) {
        let Err(Stopped) = self.serve().await;
    }

    async fn serve(&mut self) -> Result<std::convert::Infallible, Stopped> {
        loop {
            self.set_state(State::Connecting, String::new(), None)
                .await?;
            let deadline = Instant::now() + self.config.connect_timeout;
            let outcome = match connect_by(self.connector.as_ref(), deadline).await {
                None => Outcome::Failed(format!(
                    "could not connect within {} s",
                    self.config.connect_timeout.as_secs_f64()
                )),
                Some(Err(e)) => Outcome::Failed(e.to_string()),
                Some(Ok(mut link)) => self.connected(&mut link, deadline).await?,
            };
            let failed = matches!(outcome, Outcome::Failed(_));
            let periodic = matches!(outcome, Outcome::Done);
            let (detail, wait) = match outcome {
                Outcome::Done => (
                    format!(
                        "periodic mode: next reading in {} s",
                        self.config.poll_interval.as_secs_f64()
                    ),
                    self.config.poll_interval,
                ),
                Outcome::Failed(why) => (why, self.backoff.next_delay()),
                Outcome::Lost(why) => {
                    self.backoff.reset();
                    (why, self.backoff.next_delay())
                }
            };
            self.settle_retry(failed, &detail);
            self.set_state(State::Disconnected, detail.clone(), Some(wait))
                .await?;
            self.sleep_between(wait, &detail, periodic).await;
        }
    }

    /// A write for the next connection after this one ended: answered where it found no BMS
    /// to go to again, or where its link dropped twice — never sent to a BMS that is offline.
    fn settle_retry(&mut self, failed: bool, why: &str) {
        if failed {
            if let Some(w) = self.retry.take() {
                w.answer(Err(control::WriteError::Offline(why.to_string())));
            }
        }
        if let Some(w) = self.retry.take_if(|w| !w.lost()) {
            let setting = w.setting();
            w.answer(Err(control::WriteError::Dropped(setting)));
        }
    }

    /// Waits `wait`. A write asked meanwhile is answered "offline" after a failure; in
    /// periodic mode, where the BMS is merely between two readings, it ends the wait and goes
    /// out on the next connection, opened at once.
    async fn sleep_between(&mut self, wait: std::time::Duration, why: &str, periodic: bool) {
        let until = Instant::now() + wait;
        while let Some(r) = control::next_write_until(&mut self.writes, until).await {
            if periodic {
                tracing::info!(
                    "{}: {} asked between two readings: connecting now",
                    self.name,
                    r.setting
                );
                self.retry = Some(control::Write::new(r));
                return;
            }
            let _ = r
                .reply
                .send(Err(control::WriteError::Offline(why.to_string())));
        }
    }

    async fn connected(&mut self, link: &mut Link, deadline: Instant) -> Result<Outcome, Stopped> {
        self.set_state(State::Handshake, String::new(), None)
            .await?;
        let dialogue = self.config.dialogue;
        let mut stream =
            FrameStream::with_framing(&self.name, self.config.variant, dialogue.framing());
        let first = match dialogue {
            Dialogue::Ble => handshake(link, &mut stream, deadline).await,
            Dialogue::Serial => {
                serial::first_answer(link, &mut stream, self.config.response_timeout, deadline)
                    .await
            }
        };
        let cells = match first {
            Ok(cells) => cells,
            Err(e) => return Ok(Outcome::Failed(e.to_string())),
        };
        self.backoff.reset();
        if self.config.mode == ConnectMode::Persistent {
            self.set_state(State::Streaming, String::new(), None)
                .await?;
        }
        self.snapshot(cells, &stream).await?;
        if self.config.mode == ConnectMode::Periodic {
            // a write asked since the last reading goes out on this connection first
            match self.retry.take() {
                Some(w) if dialogue == Dialogue::Ble => {
                    self.retry = Some(w);
                    return self.follow_stream(link, stream).await;
                }
                Some(w) => {
                    let refused = serial_refusal(w.setting());
                    w.answer(Err(refused));
                }
                None => {}
            }
            return Ok(Outcome::Done);
        }
        match dialogue {
            Dialogue::Ble => self.follow_stream(link, stream).await,
            Dialogue::Serial => self.poll_serial(link, stream).await,
        }
    }

    /// BLE: the BMS pushes cell info; silence for `stale` means it is gone. Switch writes go
    /// out on this link, one at a time, each answered by the next settings frame.
    async fn follow_stream(
        &mut self,
        link: &mut Link,
        stream: FrameStream,
    ) -> Result<Outcome, Stopped> {
        let mut f = Following {
            stream,
            last_valid: Instant::now(),
            write: None,
            answered: false,
        };
        // a write for this connection (its link dropped, or asked between readings) goes first
        if let Some(w) = self.retry.take() {
            self.send_write(link, &mut f, w).await;
        }
        let periodic = self.config.mode == ConnectMode::Periodic;
        loop {
            // periodic mode stays only until its write is answered and a snapshot shows it
            if periodic && f.write.is_none() && !f.answered {
                return Ok(Outcome::Done);
            }
            let deadline = f.write.as_ref().and_then(control::Write::deadline);
            let takes_writes = f.write.is_none() && self.writes.is_some();
            tokio::select! {
                got = timeout_at(f.last_valid + self.config.stale, link.recv()) => {
                    if let Some(end) = self.on_chunk(got.ok(), &mut f).await? {
                        return Ok(end);
                    }
                }
                request = async { self.writes.as_mut().unwrap().recv().await }, if takes_writes => {
                    match request {
                        Some(request) => self.send_write(link, &mut f, control::Write::new(request)).await,
                        None => self.writes = None,
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    if let Some(w) = f.write.take() {
                        let setting = w.setting();
                        w.answer(Err(control::WriteError::unconfirmed(setting)));
                    }
                }
            }
        }
    }

    /// What the link brought while following the stream (`None`: silence for `stale`):
    /// `Some(outcome)` when the connection ends.
    async fn on_chunk(
        &mut self,
        got: Option<Option<Vec<u8>>>,
        f: &mut Following,
    ) -> Result<Option<Outcome>, Stopped> {
        let chunk = match got {
            Some(Some(chunk)) => chunk,
            lost => {
                // the write under way goes out once more on the next connection
                self.retry = f.write.take();
                let why = match lost {
                    None => format!(
                        "offline: no valid frame for {} s",
                        self.config.stale.as_secs_f64()
                    ),
                    _ => "the link closed (out of range, switched off, or taken by another client)"
                        .into(),
                };
                return Ok(Some(Outcome::Lost(why)));
            }
        };
        let took = self.take(&mut f.stream, &chunk).await?;
        if took.any {
            f.last_valid = Instant::now();
        }
        if f.answered && took.cells {
            return Ok(Some(Outcome::Done));
        }
        let settled = match (&f.write, took.settings, &f.stream.settings) {
            (Some(w), true, Some(s)) => w.settled_by(s),
            _ => None,
        };
        // only a frame that decides the write ends the wait
        if let Some(result) = settled {
            let w = f
                .write
                .take()
                .expect("settled only while a write is under way");
            w.answer(result);
            f.answered = self.config.mode == ConnectMode::Periodic;
        }
        Ok(None)
    }

    /// Sends `w` and asks for the settings frame that will show it; a write that cannot go
    /// is answered at once.
    async fn send_write(&self, link: &mut Link, f: &mut Following, mut w: control::Write) {
        match self.write_bytes(link, &f.stream, w.setting()).await {
            Ok(()) => {
                w.sent(Instant::now(), false);
                f.write = Some(w);
            }
            Err(e) => w.answer(Err(e)),
        }
    }

    async fn write_bytes(
        &self,
        link: &mut Link,
        stream: &FrameStream,
        setting: crate::protocol::control::Setting,
    ) -> Result<(), control::WriteError> {
        let variant = stream.variant().ok_or_else(|| {
            control::WriteError::Offline("the board's frame layout is not known yet".into())
        })?;
        let bytes = crate::protocol::control::ble_write(variant, setting)?;
        tracing::info!(
            "{}: writing {setting} ({})",
            self.name,
            crate::protocol::hex(&bytes)
        );
        let asked = async {
            link.send(&bytes).await?;
            link.send(&crate::protocol::command::request(
                crate::protocol::command::CMD_CELL_INFO,
            ))
            .await
        };
        asked
            .await
            .map_err(|e| control::WriteError::Offline(e.to_string()))
    }

    /// Serial: one request every `poll_interval`; [`serial::MISSED_LIMIT`] unanswered requests
    /// in a row mean the BMS is gone.
    async fn poll_serial(
        &mut self,
        link: &mut Link,
        mut stream: FrameStream,
    ) -> Result<Outcome, Stopped> {
        let every = self.config.poll_interval;
        let mut next = Instant::now() + every;
        let mut missed = 0u32;
        loop {
            // the 4E 57 port takes no switch writes: say so to whoever asked
            if let Some(writes) = self.writes.as_mut() {
                while let Ok(r) = writes.try_recv() {
                    let _ = r.reply.send(Err(serial_refusal(r.setting)));
                }
            }
            // between requests: whatever arrives is still read (a late answer counts)
            loop {
                match timeout_at(next, link.recv()).await {
                    Err(_) => break,
                    Ok(None) => {
                        return Ok(Outcome::Lost(
                            "the serial port closed (adapter unplugged?)".into(),
                        ))
                    }
                    Ok(Some(chunk)) => {
                        self.take(&mut stream, &chunk).await?;
                    }
                }
            }
            next = (next + every).max(Instant::now());
            match serial::ask(link, &mut stream, self.config.response_timeout).await {
                Ok(Some(cells)) => {
                    missed = 0;
                    self.snapshot(cells, &stream).await?;
                }
                Ok(None) => {
                    missed += 1;
                    tracing::warn!(
                        "{}: no answer within {} ms ({missed} in a row, {} corrupt frame(s) so far)",
                        self.name,
                        self.config.response_timeout.as_millis(),
                        stream.rejected
                    );
                    if missed >= serial::MISSED_LIMIT {
                        return Ok(Outcome::Lost(format!(
                            "offline: no answer to {missed} requests in a row"
                        )));
                    }
                }
                Err(ReadError::Disconnected { .. }) => {
                    return Ok(Outcome::Lost(
                        "the serial port closed (adapter unplugged?)".into(),
                    ))
                }
                Err(e) => return Ok(Outcome::Lost(e.to_string())),
            }
        }
    }

    /// Pushes a chunk through the stream and sends a snapshot for every cell reading in it.
    async fn take(&self, stream: &mut FrameStream, chunk: &[u8]) -> Result<Took, Stopped> {
        let mut took = Took::default();
        for event in stream.push(chunk) {
            took.any = true;
            took.settings |= matches!(event, StreamEvent::Settings);
            if let StreamEvent::Cells(cells) = event {
                took.cells = true;
                self.snapshot(*cells, stream).await?;
            }
        }
        Ok(took)
    }

    async fn snapshot(
        &self,
        cells: crate::protocol::CellInfo,
        stream: &FrameStream,
    ) -> Result<(), Stopped> {
        let snapshot = Snapshot::new(
            cells,
            stream.device_info.clone(),
            stream.settings.clone(),
            self.estimator.as_ref(),
        );
        self.emit(EventKind::Snapshot {
            snapshot: Arc::new(snapshot),
            decoded: stream.accepted,
            rejected: stream.rejected,
        })
        .await
    }

    async fn set_state(
        &mut self,
        state: State,
        detail: String,
        retry_in: Option<Duration>,
    ) -> Result<(), Stopped> {
        let from = std::mem::replace(&mut self.state, state);
        let attempt = self.backoff.attempt();
        let name = &self.name;
        match (state, retry_in) {
            (State::Disconnected, Some(wait)) => tracing::info!(
                "{name}: {from} → {state}: {detail}; next attempt in {:.1} s (failed attempts in a row: {attempt})",
                wait.as_secs_f64()
            ),
            _ if detail.is_empty() => tracing::info!("{name}: {from} → {state}"),
            _ => tracing::info!("{name}: {from} → {state}: {detail}"),
        }
        self.emit(EventKind::State {
            state,
            detail,
            retry_in,
            attempt,
        })
        .await
    }

    async fn emit(&self, kind: EventKind) -> Result<(), Stopped> {
        self.events
            .send(SessionEvent {
                battery: self.battery,
                name: self.name.clone(),
                kind,
            })
            .await
            .map_err(|_| Stopped)
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::battery::soc::BmsSoc;
    use crate::transport::sim::{SimConfig, SimConnector};

    fn start(config: SessionConfig) -> mpsc::Receiver<SessionEvent> {
        let (tx, rx) = mpsc::channel(64);
        let session = Session::new(
            0,
            "sim",
            Arc::new(SimConnector(SimConfig::default())),
            config,
            Arc::new(BmsSoc),
            tx,
        );
        tokio::spawn(session.run());
        rx
    }

    fn describe(e: &SessionEvent) -> String {
        match &e.kind {
            EventKind::State { state, .. } => state.to_string(),
            EventKind::Snapshot { .. } => "snapshot".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn persistent_mode_streams_after_the_handshake() {
        let mut rx = start(SessionConfig::default());
        let mut seen = Vec::new();
        while seen.len() < 6 {
            seen.push(describe(&rx.recv().await.unwrap()));
        }
        assert_eq!(
            seen,
            [
                "connecting",
                "handshake",
                "streaming",
                "snapshot",
                "snapshot",
                "snapshot"
            ]
        );
    }

    /// A streaming session on `sim` that takes writes; its events are drained in the
    /// background, the latest snapshot kept.
    fn start_writable(
        sim: SimConfig,
    ) -> (
        control::Writes,
        Arc<std::sync::Mutex<Option<Arc<Snapshot>>>>,
    ) {
        start_writable_with(sim, SessionConfig::default()).0
    }

    /// As [`start_writable`] with `config`; also gives the session's states as they come.
    #[allow(clippy::type_complexity)]
    fn start_writable_with(
        sim: SimConfig,
        config: SessionConfig,
    ) -> (
        (
            control::Writes,
            Arc<std::sync::Mutex<Option<Arc<Snapshot>>>>,
        ),
        mpsc::UnboundedReceiver<State>,
    ) {
        let (tx, mut rx) = mpsc::channel(64);
        let (states_tx, states) = mpsc::unbounded_channel();
        let (writes, taken) = mpsc::channel(4);
        let session = Session::new(
            0,
            "sim",
            Arc::new(SimConnector(sim)),
            config,
            Arc::new(BmsSoc),
            tx,
        )
        .with_writes(taken);
        tokio::spawn(session.run());
        let latest = Arc::new(std::sync::Mutex::new(None));
        let keep = latest.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                match e.kind {
                    EventKind::Snapshot { snapshot, .. } => *keep.lock().unwrap() = Some(snapshot),
                    EventKind::State { state, .. } => {
                        let _ = states_tx.send(state);
                    }
                }
            }
        });
        ((writes, latest), states)
    }

    #[tokio::test(start_paused = true)]
    async fn periodic_mode_connects_at_once_for_a_write_and_lets_go_once_it_is_answered() {
        let set = |s: &str| s.parse::<crate::protocol::control::Setting>().unwrap();
        let every = Duration::from_secs(600);
        let ((writes, latest), mut states) = start_writable_with(
            SimConfig::default(),
            SessionConfig {
                mode: ConnectMode::Periodic,
                poll_interval: every,
                ..SessionConfig::default()
            },
        );
        while states.recv().await != Some(State::Disconnected) {}
        let asked = Instant::now();
        control::set(&writes, 0, set("discharging=off"))
            .await
            .unwrap();
        // not after the ten minutes to the next reading: on a connection opened for it
        assert!(
            asked.elapsed() < Duration::from_secs(30),
            "{:?}",
            asked.elapsed()
        );
        // the session lets the BMS go again once a snapshot shows the new state
        while states.recv().await != Some(State::Disconnected) {}
        let s = latest.lock().unwrap().clone().unwrap();
        assert_eq!(s.settings.as_ref().unwrap().discharge_switch, Some(false));
        assert_eq!(s.cell_info.discharging_enabled, Some(false));
        let between = Instant::now();
        assert_eq!(states.recv().await, Some(State::Connecting));
        assert!(between.elapsed() >= every - Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_waits_for_the_handshake_and_is_confirmed_by_the_next_settings_frame() {
        let set = |s: &str| s.parse::<crate::protocol::control::Setting>().unwrap();
        let (writes, latest) = start_writable(SimConfig::default());
        // asked at once: it waits behind the handshake, then goes out on the session's link
        control::set(&writes, 0, set("charging=off")).await.unwrap();
        let s = latest.lock().unwrap().clone();
        // the snapshots that follow carry the new settings and flags
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = latest.lock().unwrap().clone().unwrap();
        assert_eq!(after.settings.as_ref().unwrap().charge_switch, Some(false));
        assert_eq!(after.cell_info.charging_enabled, Some(false));
        drop(s);
        control::set(&writes, 0, set("heater=on")).await.unwrap();
        control::set(&writes, 0, set("charging=on")).await.unwrap();
        // a switch this board does not have: refused by name, nothing sent
        let (writes24, _) = start_writable(SimConfig {
            variant: crate::protocol::Variant::Jk02_24s,
            ..SimConfig::default()
        });
        let e = control::set(&writes24, 0, set("heater=on"))
            .await
            .unwrap_err();
        assert!(matches!(e, control::WriteError::NotOnThisBoard(_)), "{e}");
    }

    /// The simulated BMS behind a link that hangs up as the first write arrives (once).
    struct DropsOnFirstWrite(Arc<std::sync::atomic::AtomicBool>);

    impl Connector for DropsOnFirstWrite {
        fn connect(
            &self,
            _deadline: Instant,
        ) -> futures_util::future::BoxFuture<'_, Result<Link, crate::transport::TransportError>>
        {
            let armed = self.0.clone();
            Box::pin(async move {
                let (link, mut peer) = Link::pair("drops", 16);
                let mut sim = crate::transport::sim::connect(SimConfig::default());
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            cmd = peer.commands.recv() => {
                                let Some(cmd) = cmd else { return };
                                let write = cmd.len() > 5 && cmd[5] > 0 && cmd[4] != 0xC8;
                                if write && armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                                    return; // the link is gone before the BMS saw the write
                                }
                                if sim.send(&cmd).await.is_err() { return }
                            }
                            chunk = sim.recv() => {
                                let Some(chunk) = chunk else { return };
                                if peer.chunks.send(chunk).await.is_err() { return }
                            }
                        }
                    }
                });
                Ok(link)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_whose_link_drops_is_sent_once_more_after_reconnecting() {
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (tx, mut rx) = mpsc::channel(64);
        let (writes, taken) = mpsc::channel(4);
        let session = Session::new(
            0,
            "drops",
            Arc::new(DropsOnFirstWrite(armed.clone())),
            SessionConfig::default(),
            Arc::new(BmsSoc),
            tx,
        )
        .with_writes(taken);
        tokio::spawn(session.run());
        let connects = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let count = connects.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if matches!(
                    e.kind,
                    EventKind::State {
                        state: State::Connecting,
                        ..
                    }
                ) {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        let setting = "balancer=off".parse().unwrap();
        control::set(&writes, 0, setting).await.unwrap();
        assert!(
            !armed.load(std::sync::atomic::Ordering::SeqCst),
            "the link did drop"
        );
        assert_eq!(
            connects.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "one reconnection"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_battery_that_is_offline_is_never_written() {
        struct Unreachable;
        impl Connector for Unreachable {
            fn connect(
                &self,
                _deadline: Instant,
            ) -> futures_util::future::BoxFuture<'_, Result<Link, crate::transport::TransportError>>
            {
                Box::pin(async { Err(crate::transport::TransportError::Disconnected) })
            }
        }
        let (tx, mut rx) = mpsc::channel(64);
        let (writes, taken) = mpsc::channel(4);
        let session = Session::new(
            0,
            "gone",
            Arc::new(Unreachable),
            SessionConfig::default(),
            Arc::new(BmsSoc),
            tx,
        )
        .with_writes(taken);
        tokio::spawn(session.run());
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let setting = "charging=off".parse().unwrap();
        let e = control::set(&writes, 0, setting).await.unwrap_err();
        assert!(matches!(e, control::WriteError::Offline(_)), "{e}");
        assert!(
            e.to_string().contains("offline: nothing was written"),
            "{e}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_write_is_a_failure_and_the_state_shown_is_the_bmss() {
        let set = |s: &str| s.parse::<crate::protocol::control::Setting>().unwrap();
        let (writes, latest) = start_writable(SimConfig {
            refuse_writes: true,
            ..SimConfig::default()
        });
        let e = control::set(&writes, 0, set("discharging=off"))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            control::WriteError::Refused {
                switch: crate::protocol::control::Switch::Discharging,
                reported: true
            }
        );
        assert!(e.to_string().contains("did not take it"), "{e}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = latest.lock().unwrap().clone().unwrap();
        assert_eq!(after.cell_info.discharging_enabled, Some(true));
    }

    #[tokio::test(start_paused = true)]
    async fn periodic_mode_reads_one_snapshot_then_lets_go_until_the_next_poll() {
        let mut rx = start(SessionConfig {
            mode: ConnectMode::Periodic,
            poll_interval: Duration::from_secs(30),
            ..SessionConfig::default()
        });
        let mut seen = Vec::new();
        let mut disconnected_at = None;
        while seen.len() < 8 {
            let e = rx.recv().await.unwrap();
            if let EventKind::State {
                state: State::Disconnected,
                detail,
                retry_in,
                ..
            } = &e.kind
            {
                assert_eq!(detail, "periodic mode: next reading in 30 s");
                assert_eq!(*retry_in, Some(Duration::from_secs(30)));
                disconnected_at = Some(Instant::now());
            }
            if matches!(
                e.kind,
                EventKind::State {
                    state: State::Connecting,
                    ..
                }
            ) {
                if let Some(t) = disconnected_at {
                    assert!(Instant::now() - t >= Duration::from_secs(30));
                }
            }
            seen.push(describe(&e));
        }
        assert_eq!(
            seen,
            [
                "connecting",
                "handshake",
                "snapshot",
                "disconnected",
                "connecting",
                "handshake",
                "snapshot",
                "disconnected"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_bms_that_never_answers_is_retried_with_backoff() {
        struct Silent;
        impl Connector for Silent {
            fn connect(
                &self,
                _deadline: Instant,
            ) -> futures_util::future::BoxFuture<'_, Result<Link, crate::transport::TransportError>>
            {
                Box::pin(async {
                    let (link, peer) = Link::pair("silent", 4);
                    // The peer stays alive but never answers.
                    std::mem::forget(peer);
                    Ok(link)
                })
            }
        }
        let (tx, mut rx) = mpsc::channel(64);
        let config = SessionConfig {
            connect_timeout: Duration::from_secs(5),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(4),
            ..SessionConfig::default()
        };
        tokio::spawn(
            Session::new(0, "silent", Arc::new(Silent), config, Arc::new(BmsSoc), tx).run(),
        );
        let mut retries = Vec::new();
        while retries.len() < 5 {
            if let EventKind::State {
                state: State::Disconnected,
                retry_in: Some(d),
                detail,
                attempt,
            } = rx.recv().await.unwrap().kind
            {
                assert!(
                    detail.contains("no answer from silent within 5 s"),
                    "{detail}"
                );
                assert_eq!(attempt as usize, retries.len() + 1);
                retries.push(d);
            }
        }
        assert!(retries[0] <= Duration::from_secs(1));
        assert!(retries[4] >= Duration::from_secs(2) && retries[4] <= Duration::from_secs(4));
    }
}
