//! One session for a whole JK-PB RS485 network (§4): one port, up to 16 packs, each a battery
//! of its own (its own events, state, device info and settings).
//!
//! ```text
//!   Disconnected ──► Connecting ──► Listening ──┬─► Master  (nobody else polls: jkmon asks
//!        ▲               (port)     (auto mode)  │            each address in turn)
//!        │                                       └─► Sniffer (a pack at address 0 polls: jkmon
//!        └──── port lost / closed ◄──────────────────         listens, and asks only for device
//!                                                             info, only in the master's gaps)
//! ```
//!
//! - **master**: every `poll_interval` each pack is asked for cell info; device info and
//!   settings when missing and then now and then. The answer's tail names its sender. A pack
//!   that leaves [`MISSED_LIMIT`] requests in a row unanswered is offline.
//! - **sniffer**: every frame is attributed by its tail (settings frames also carry the address
//!   at byte 270; a frame without either belongs to the address the last request named). The
//!   master never broadcasts device info, so jkmon asks a pack for it, but only in the silence
//!   after a request nobody answered (the master then waits for an absent address), never while
//!   an exchange is under way. A pack silent for `stale` is offline.
//! - **auto** (default) listens for [`BusTiming::listen`] first; a request jkmon did not send
//!   means a master is there. It becomes master when the master stays silent for
//!   [`BusTiming::master_gone`], and sniffer again as soon as a master speaks.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::control;
use super::serial::MISSED_LIMIT;
use super::{Backoff, EventKind, SessionConfig, SessionEvent, State};
use crate::battery::{Snapshot, SocEstimator};
use crate::protocol::control as protocol_control;
use crate::protocol::rs485::{self, Rs485Register};
use crate::protocol::settings::jk02::DEVICE_ADDRESS;
use crate::protocol::{
    Assembler, AssemblerConfig, Decoded, DeviceInfo, FrameType, Item, Settings, StreamDecoder,
};
use crate::transport::{connect_by, Connector, Link};

/// `JK_RS485_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BusMode {
    #[default]
    Auto,
    Master,
    Sniffer,
}

impl FromStr for BusMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BusMode::Auto),
            "master" => Ok(BusMode::Master),
            "sniffer" => Ok(BusMode::Sniffer),
            other => Err(format!(
                "\"{other}\" is not an RS485 mode (expected auto, master or sniffer)"
            )),
        }
    }
}

impl fmt::Display for BusMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BusMode::Auto => "auto",
            BusMode::Master => "master",
            BusMode::Sniffer => "sniffer",
        })
    }
}

/// The bus's timing; the defaults follow what works on real JK-PB networks (§4.4).
#[derive(Debug, Clone, PartialEq)]
pub struct BusTiming {
    /// Auto mode: listen this long for a master before polling.
    pub listen: Duration,
    /// Sniffer: the master silent this long means it is gone.
    pub master_gone: Duration,
    /// Sniffer: silence after an unanswered request before jkmon may ask.
    pub quiet: Duration,
    /// Ask again for device info / settings after this long.
    pub device_info_every: Duration,
    pub settings_every: Duration,
    /// Sniffer: at least this long between two requests to the same pack.
    pub same_pack_gap: Duration,
}

impl Default for BusTiming {
    fn default() -> Self {
        BusTiming {
            listen: Duration::from_secs(2),
            master_gone: Duration::from_secs(5),
            quiet: Duration::from_millis(150),
            device_info_every: Duration::from_secs(3_600),
            settings_every: Duration::from_secs(600),
            same_pack_gap: Duration::from_millis(2_500),
        }
    }
}

/// One pack on the bus.
pub struct BusPack {
    /// Position in the configuration, from 0.
    pub battery: usize,
    pub address: u8,
    pub name: Arc<str>,
}

struct PackState {
    battery: usize,
    address: u8,
    name: Arc<str>,
    decoder: StreamDecoder,
    device_info: Option<(DeviceInfo, Instant)>,
    settings: Option<(Settings, Instant)>,
    state: State,
    last_valid: Option<Instant>,
    last_asked: Option<Instant>,
    missed: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Listening { until: Instant },
    Master,
    Sniffer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Listening { .. } => "listening",
            Role::Master => "master",
            Role::Sniffer => "sniffer",
        })
    }
}

/// A request jkmon is waiting on.
#[derive(Debug, Clone, Copy)]
struct Pending {
    address: u8,
    asked: Asked,
    until: Instant,
}

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Read(Rs485Register),
    /// A switch write (answered by the FC 0x10 echo).
    Write,
}

/// A switch write on its way: queued until jkmon is master and the pack answers, sent, then
/// waiting for the pack's settings frame to show it.
struct BusWrite {
    pack: usize,
    request: control::WriteRequest,
    /// Times it was sent (a second unanswered send, or a second lost port, gives up).
    attempts: u32,
    phase: WritePhase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WritePhase {
    Queued,
    Sent,
    Confirming { until: Instant },
}

/// Who has the floor on the bus, and jkmon's part in it: the request it waits an answer to,
/// the requests left in its round, and when the next round starts.
struct Floor {
    role: Role,
    pending: Option<Pending>,
    queue: Vec<(u8, Rs485Register)>,
    next_cycle: Instant,
}

/// Why a write cannot go while another master polls the bus.
fn busy() -> control::WriteError {
    control::WriteError::Busy(
        "another master polls this RS485 network: jkmon sends writes only as the master (switch it from that master, or set JK_RS485_MODE=master with no other master on the bus)".into(),
    )
}

/// The session of one RS485 network.
pub struct BusSession {
    packs: Vec<PackState>,
    connector: Arc<dyn Connector>,
    config: SessionConfig,
    mode: BusMode,
    timing: BusTiming,
    estimator: Arc<dyn SocEstimator>,
    events: mpsc::Sender<SessionEvent>,
    backoff: Backoff,
    name: String,
    /// When the port was opened last.
    opened: Instant,
    /// Corrupt frames and bytes on this port so far.
    rejected: u64,
    /// Frames decoded on this port so far.
    decoded: u64,
    /// Switch writes asked of the packs (pack index, request), where control is on.
    writes: Option<mpsc::Receiver<control::WriteRequest>>,
    /// The write under way, one at a time; it outlives a port that closes (sent once more).
    write: Option<BusWrite>,
}

/// What the bus said since the port opened.
struct Wire {
    assembler: Assembler,
    /// The last byte arrived then.
    last_rx: Instant,
    /// The last request heard (jkmon's own included) and whether a frame followed it.
    last_request: Option<(u8, Instant, bool)>,
    /// A request jkmon did not send was heard then.
    master_seen: Option<Instant>,
    /// jkmon's own last request (some adapters echo what they send).
    sent: Option<([u8; rs485::REQUEST_LEN], Instant)>,
}

impl BusSession {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        packs: Vec<BusPack>,
        connector: Arc<dyn Connector>,
        config: SessionConfig,
        mode: BusMode,
        timing: BusTiming,
        estimator: Arc<dyn SocEstimator>,
        events: mpsc::Sender<SessionEvent>,
    ) -> BusSession {
        let backoff = Backoff::new(config.retry_min, config.retry_max, 0x6a6b_7273_3438);
        BusSession {
            packs: packs
                .into_iter()
                .map(|p| PackState {
                    battery: p.battery,
                    address: p.address,
                    name: p.name,
                    decoder: StreamDecoder::new(config.variant),
                    device_info: None,
                    settings: None,
                    state: State::Disconnected,
                    last_valid: None,
                    last_asked: None,
                    missed: 0,
                })
                .collect(),
            connector,
            config,
            mode,
            timing,
            estimator,
            events,
            backoff,
            name: name.to_string(),
            opened: Instant::now(),
            rejected: 0,
            decoded: 0,
            writes: None,
            write: None,
        }
    }

    /// Takes switch writes for the packs from `writes` (each names its battery).
    pub fn with_writes(mut self, writes: mpsc::Receiver<control::WriteRequest>) -> BusSession {
        self.writes = Some(writes);
        self
    }

    /// Why a write to pack `pack`, which is offline, is not sent.
    fn pack_offline(&self, pack: usize) -> control::WriteError {
        let p = &self.packs[pack];
        control::WriteError::Offline(format!(
            "{} does not answer on RS485 address {}",
            p.name, p.address
        ))
    }

    /// Answers the write under way (the controller logs the outcome, with who asked).
    fn finish_write(&mut self, result: Result<(), control::WriteError>) {
        if let Some(w) = self.write.take() {
            let _ = w.request.reply.send(result);
        }
    }

    /// A write asked: refused at once where it cannot go (no such pack, the pack offline,
    /// another master on the bus), else queued.
    fn take_write(&mut self, request: control::WriteRequest, role: Role) {
        let Some(pack) = self.packs.iter().position(|p| p.battery == request.battery) else {
            let _ = request.reply.send(Err(control::WriteError::Stopped));
            return;
        };
        let p = &self.packs[pack];
        let refused = match (p.state, role) {
            (State::Disconnected, _) => Some(self.pack_offline(pack)),
            (_, Role::Sniffer) => Some(busy()),
            _ => None,
        };
        if let Some(e) = refused {
            tracing::warn!("{}: {}: {e}", p.name, request.setting);
            let _ = request.reply.send(Err(e));
            return;
        }
        self.write = Some(BusWrite {
            pack,
            request,
            attempts: 0,
            phase: WritePhase::Queued,
        });
    }

    /// Waits `wait` while the port is closed, answering every write asked meanwhile.
    async fn sleep_refusing_writes(&mut self, wait: Duration, why: &str) {
        let until = Instant::now() + wait;
        while let Some(r) = control::next_write_until(&mut self.writes, until).await {
            let _ = r
                .reply
                .send(Err(control::WriteError::Offline(why.to_string())));
        }
    }

    /// Runs until the receiver of the events is dropped.
    pub async fn run(mut self) {
        loop {
            for i in 0..self.packs.len() {
                if !self
                    .set_state(i, State::Connecting, String::new(), None)
                    .await
                {
                    return;
                }
            }
            let deadline = Instant::now() + self.config.connect_timeout;
            let why = match connect_by(self.connector.as_ref(), deadline).await {
                None => format!(
                    "could not open {} within {} s",
                    self.name,
                    self.config.connect_timeout.as_secs_f64()
                ),
                Some(Err(e)) => e.to_string(),
                Some(Ok(mut link)) => match self.on_bus(&mut link).await {
                    None => return,
                    Some(why) => {
                        self.backoff.reset();
                        why
                    }
                },
            };
            let wait = self.backoff.next_delay();
            tracing::warn!(
                "{}: {why}; next attempt in {:.1} s",
                self.name,
                wait.as_secs_f64()
            );
            // a write the port lost goes out once more on the next one; a second loss ends it
            match self.write.as_mut() {
                Some(w) if w.attempts < 2 && w.phase != WritePhase::Queued => {
                    w.phase = WritePhase::Queued;
                }
                Some(w) if w.phase != WritePhase::Queued => {
                    let setting = w.request.setting;
                    self.finish_write(Err(control::WriteError::Dropped(setting)));
                }
                _ => {}
            }
            for i in 0..self.packs.len() {
                if !self
                    .set_state(i, State::Disconnected, why.clone(), Some(wait))
                    .await
                {
                    return;
                }
            }
            self.sleep_refusing_writes(wait, &why).await;
        }
    }

    /// The port is open. Returns why it ended, or `None` when nobody listens any more.
    async fn on_bus(&mut self, link: &mut Link) -> Option<String> {
        let (mut wire, mut floor) = self.open_bus().await?;
        loop {
            let wake = self.next_wake(floor.role, &wire, floor.pending, floor.next_cycle);
            let takes_writes = self.write.is_none() && self.writes.is_some();
            tokio::select! {
                chunk = link.recv() => {
                    let Some(chunk) = chunk else {
                        return Some("the serial port closed (adapter unplugged?)".into());
                    };
                    wire.last_rx = Instant::now();
                    wire.assembler.push(&chunk);
                    if !self.drain(&mut wire, &mut floor).await {
                        return None;
                    }
                }
                request = async { self.writes.as_mut().unwrap().recv().await }, if takes_writes => {
                    match request {
                        Some(request) => self.take_write(request, floor.role),
                        None => self.writes = None,
                    }
                }
                _ = sleep_until(wake) => {}
            }
            let now = Instant::now();
            self.follow_the_master(&mut floor, &wire, now);
            if let Some(p) = floor.pending.filter(|p| now >= p.until) {
                floor.pending = None;
                if p.asked == Asked::Write {
                    self.write_unanswered(p.address);
                }
                if !self.unanswered(p, &mut wire).await {
                    return None;
                }
            }
            self.check_write(floor.role, floor.pending, now);
            if !self.expire_silent(floor.role, now).await {
                return None;
            }
            if floor.pending.is_none() {
                if let Err(why) = self.take_turn(link, &mut floor, &mut wire, now).await {
                    return Some(why);
                }
            }
        }
    }

    /// Every pack in handshake, the counters reset, and the role the mode starts in; `None`
    /// when nobody listens any more.
    async fn open_bus(&mut self) -> Option<(Wire, Floor)> {
        for i in 0..self.packs.len() {
            let waiting = "waiting for its first frame".into();
            if !self.set_state(i, State::Handshake, waiting, None).await {
                return None;
            }
        }
        let now = Instant::now();
        let wire = Wire {
            assembler: Assembler::new(AssemblerConfig::rs485()),
            last_rx: now,
            last_request: None,
            master_seen: None,
            sent: None,
        };
        self.opened = now;
        self.rejected = 0;
        self.decoded = 0;
        let role = match self.mode {
            BusMode::Auto => Role::Listening {
                until: now + self.timing.listen,
            },
            BusMode::Master => Role::Master,
            BusMode::Sniffer => Role::Sniffer,
        };
        tracing::info!(
            "{}: on the bus as {role} (JK_RS485_MODE={})",
            self.name,
            self.mode
        );
        for p in &mut self.packs {
            p.last_valid = None;
            p.missed = 0;
        }
        let floor = Floor {
            role,
            pending: None,
            queue: Vec::new(),
            next_cycle: now,
        };
        Some((wire, floor))
    }

    /// The write under way against the clock and the bus: no settings frame in time, or
    /// another master on the bus before it went out.
    fn check_write(&mut self, role: Role, pending: Option<Pending>, now: Instant) {
        let Some(w) = self.write.as_ref() else { return };
        match w.phase {
            // no longer waited for (another master took the floor): as if unanswered
            WritePhase::Sent if pending.is_none_or(|p| p.asked != Asked::Write) => {
                let address = self.packs[w.pack].address;
                self.write_unanswered(address);
            }
            WritePhase::Confirming { until } if now >= until => {
                let setting = w.request.setting;
                self.finish_write(Err(control::WriteError::unconfirmed(setting)));
            }
            WritePhase::Queued if role == Role::Sniffer => self.finish_write(Err(busy())),
            WritePhase::Queued if self.packs[w.pack].state == State::Disconnected => {
                let offline = self.pack_offline(w.pack);
                self.finish_write(Err(offline));
            }
            _ => {}
        }
    }

    /// The pack did not echo the write: sent once more, then given up.
    fn write_unanswered(&mut self, address: u8) {
        let Some(w) = self.write.as_mut() else { return };
        if w.phase != WritePhase::Sent || self.packs[w.pack].address != address {
            return;
        }
        if w.attempts < 2 {
            w.phase = WritePhase::Queued;
            return;
        }
        let setting = w.request.setting;
        let why = format!(
            "RS485 address {address} did not answer the write of {setting} (sent twice); what it reports is unchanged"
        );
        self.finish_write(Err(control::WriteError::Unanswered(why)));
    }

    /// A settings frame from pack `i`: it decides the write waiting for it, if any.
    fn settle_write(&mut self, i: usize, settings: &Settings) {
        let Some(w) = self.write.as_ref() else { return };
        if w.pack != i || !matches!(w.phase, WritePhase::Confirming { .. }) {
            return;
        }
        if let Some(result) = control::settle(settings, w.request.setting) {
            self.finish_write(result);
        }
    }

    /// Roles change on what was heard: a master on the bus makes jkmon listen; a master gone
    /// silent (or none at all) makes jkmon poll.
    fn follow_the_master(&self, floor: &mut Floor, wire: &Wire, now: Instant) {
        let master_recent = wire
            .master_seen
            .is_some_and(|t| now.duration_since(t) < self.timing.master_gone);
        let auto = self.mode == BusMode::Auto;
        match floor.role {
            Role::Listening { .. } if master_recent => {
                tracing::info!(
                    "{}: a master polls this bus; listening (sniffer mode)",
                    self.name
                );
                floor.role = Role::Sniffer;
            }
            Role::Listening { until } if now >= until => {
                tracing::info!(
                    "{}: no master on this bus; jkmon polls (master mode)",
                    self.name
                );
                floor.role = Role::Master;
            }
            Role::Master if master_recent && auto => {
                tracing::warn!("{}: another master started polling; jkmon stops polling and listens (sniffer mode)", self.name);
                floor.role = Role::Sniffer;
                floor.pending = None;
                floor.queue.clear();
            }
            Role::Sniffer if !master_recent && auto && wire.master_seen.is_some() => {
                tracing::warn!(
                    "{}: the master has been silent for {} s; jkmon polls (master mode)",
                    self.name,
                    self.timing.master_gone.as_secs_f64()
                );
                floor.role = Role::Master;
                floor.next_cycle = now;
            }
            _ => {}
        }
    }

    /// A request of jkmon's got no answer in time: the unfinished frame goes, and a pack that
    /// missed [`MISSED_LIMIT`] cell-info requests in a row is offline. `false` when nobody
    /// listens any more.
    async fn unanswered(&mut self, p: Pending, wire: &mut Wire) -> bool {
        let dropped = wire.assembler.pending();
        if dropped > 0 {
            wire.assembler.reset();
            self.rejected += 1;
            tracing::warn!(
                "{}: dropped {dropped} bytes of an unfinished frame",
                self.name
            );
        }
        let Some(i) = self.index_of(p.address) else {
            return true;
        };
        let pack = &mut self.packs[i];
        if p.asked == Asked::Read(Rs485Register::CellInfo) {
            pack.missed += 1;
        }
        tracing::debug!(
            "{}: no {} from #{} within {} ms ({} in a row)",
            pack.name,
            match p.asked {
                Asked::Read(register) => register.name(),
                Asked::Write => "answer to a switch write",
            },
            p.address,
            self.config.response_timeout.as_millis(),
            pack.missed
        );
        if pack.missed < MISSED_LIMIT || pack.state == State::Disconnected {
            return true;
        }
        let why = format!(
            "offline: no answer to {} requests in a row on RS485 address {}",
            pack.missed, pack.address
        );
        self.set_state(i, State::Disconnected, why, None).await
    }

    /// jkmon's turn to talk: the next request of a master's round, or one in a sniffer's gap.
    async fn take_turn(
        &mut self,
        link: &mut Link,
        floor: &mut Floor,
        wire: &mut Wire,
        now: Instant,
    ) -> Result<(), String> {
        if floor.role == Role::Master {
            if let Some(sent) = self.send_write(link, wire, now).await? {
                floor.pending = Some(sent);
                return Ok(());
            }
        }
        let ask = match floor.role {
            Role::Listening { .. } => None,
            Role::Master => {
                if floor.queue.is_empty() && now >= floor.next_cycle {
                    floor.queue = self.master_round(now);
                    floor.next_cycle = (floor.next_cycle + self.config.poll_interval).max(now);
                }
                (!floor.queue.is_empty()).then(|| floor.queue.remove(0))
            }
            Role::Sniffer => self.gap_request(wire, now),
        };
        let Some((address, register)) = ask else {
            return Ok(());
        };
        let request = rs485::request(address, register);
        link.send(&request).await.map_err(|e| e.to_string())?;
        wire.sent = Some((request, now));
        wire.last_request = Some((address, now, false));
        if let Some(i) = self.index_of(address) {
            self.packs[i].last_asked = Some(now);
        }
        floor.pending = Some(Pending {
            address,
            asked: Asked::Read(register),
            until: now + self.config.response_timeout,
        });
        Ok(())
    }

    /// Master: the queued write goes out, once its pack has answered on this port.
    async fn send_write(
        &mut self,
        link: &mut Link,
        wire: &mut Wire,
        now: Instant,
    ) -> Result<Option<Pending>, String> {
        let Some(w) = self.write.as_mut() else {
            return Ok(None);
        };
        let pack = &self.packs[w.pack];
        if w.phase != WritePhase::Queued || pack.state != State::Streaming {
            return Ok(None);
        }
        let bytes = match protocol_control::rs485_write(pack.address, w.request.setting) {
            Ok(b) => b,
            Err(e) => {
                self.finish_write(Err(e.into()));
                return Ok(None);
            }
        };
        tracing::info!(
            "{}: writing {} ({})",
            pack.name,
            w.request.setting,
            crate::protocol::hex(&bytes)
        );
        link.send(&bytes).await.map_err(|e| e.to_string())?;
        w.attempts += 1;
        w.phase = WritePhase::Sent;
        wire.last_request = Some((pack.address, now, false));
        Ok(Some(Pending {
            address: pack.address,
            asked: Asked::Write,
            until: now + self.config.response_timeout,
        }))
    }

    /// When the loop must look again if nothing arrives.
    fn next_wake(
        &self,
        role: Role,
        wire: &Wire,
        pending: Option<Pending>,
        next_cycle: Instant,
    ) -> Instant {
        let now = Instant::now();
        let mut wake = now + Duration::from_millis(500);
        if let Some(p) = pending {
            wake = wake.min(p.until);
        }
        if let Some(WritePhase::Confirming { until }) = self.write.as_ref().map(|w| w.phase) {
            wake = wake.min(until);
        }
        match role {
            Role::Listening { until } => wake = wake.min(until),
            Role::Master if pending.is_none() => wake = wake.min(next_cycle),
            Role::Master => {}
            Role::Sniffer => {
                // only moments still ahead: one already past would spin the loop
                let quiet_at = wire.last_rx + self.timing.quiet;
                if quiet_at > now {
                    wake = wake.min(quiet_at);
                }
                if let Some(t) = wire.master_seen {
                    let gone_at = t + self.timing.master_gone;
                    if gone_at > now {
                        wake = wake.min(gone_at);
                    }
                }
            }
        }
        wake.max(now + Duration::from_millis(1))
    }

    /// Master mode: what to ask in this round, pack by pack.
    fn master_round(&self, now: Instant) -> Vec<(u8, Rs485Register)> {
        let due = |at: Option<Instant>, every: Duration| at.is_none_or(|t| now >= t + every);
        let mut round = Vec::new();
        for p in &self.packs {
            if due(
                p.device_info.as_ref().map(|d| d.1),
                self.timing.device_info_every,
            ) {
                round.push((p.address, Rs485Register::DeviceInfo));
            }
            if due(p.settings.as_ref().map(|s| s.1), self.timing.settings_every) {
                round.push((p.address, Rs485Register::Settings));
            }
            round.push((p.address, Rs485Register::CellInfo));
        }
        round
    }

    /// Sniffer mode: a device-info request, when the master is waiting for an absent address
    /// (its request went unanswered and the wire has been quiet) and a pack lacks it.
    fn gap_request(&self, wire: &Wire, now: Instant) -> Option<(u8, Rs485Register)> {
        let (_, asked_at, answered) = wire.last_request?;
        if answered
            || wire.assembler.pending() > 0
            || now < wire.last_rx.max(asked_at) + self.timing.quiet
        {
            return None;
        }
        self.packs
            .iter()
            .filter(|p| p.address != 0)
            .filter(|p| {
                p.device_info
                    .as_ref()
                    .is_none_or(|d| now >= d.1 + self.timing.device_info_every)
            })
            .filter(|p| {
                p.last_asked
                    .is_none_or(|t| now >= t + self.timing.same_pack_gap)
            })
            .min_by_key(|p| p.last_asked)
            .map(|p| (p.address, Rs485Register::DeviceInfo))
    }

    /// Sniffer (and listening): a pack silent for `stale` is offline.
    async fn expire_silent(&mut self, role: Role, now: Instant) -> bool {
        if role == Role::Master {
            return true;
        }
        for i in 0..self.packs.len() {
            let p = &self.packs[i];
            let since = p.last_valid.unwrap_or(self.opened);
            if p.state != State::Disconnected && now >= since + self.config.stale {
                let why = format!(
                    "offline: no frame from RS485 address {} for {} s (is its DIP-switch address right?)",
                    p.address,
                    self.config.stale.as_secs_f64()
                );
                if !self.set_state(i, State::Disconnected, why, None).await {
                    return false;
                }
            }
        }
        true
    }

    fn index_of(&self, address: u8) -> Option<usize> {
        self.packs.iter().position(|p| p.address == address)
    }

    /// Handles every complete item on the wire. `false` when nobody listens any more.
    #[expect(
        clippy::too_many_lines,
        reason = "the bus session's select! loop; it becomes the pure RS485 core's driver with issue 32"
    )]
    async fn drain(&mut self, wire: &mut Wire, floor: &mut Floor) -> bool {
        let pending = &mut floor.pending;
        while let Some(item) = wire.assembler.poll() {
            let now = Instant::now();
            match item {
                Item::Rs485Switch { write, .. } => {
                    // the pack's echo of jkmon's write: it took the bytes; its settings frame,
                    // asked for next, says whether it took the switch
                    let ours = self.write.as_ref().is_some_and(|w| {
                        w.phase == WritePhase::Sent
                            && self.packs[w.pack].address == write.address
                            && w.request.setting.switch == write.switch
                    });
                    if write.on.is_none() && ours {
                        if pending.is_some_and(|p| p.asked == Asked::Write) {
                            *pending = None;
                        }
                        if let Some(w) = self.write.as_mut() {
                            w.phase = WritePhase::Confirming {
                                until: now + control::CONFIRM_WITHIN,
                            };
                        }
                        floor
                            .queue
                            .insert(0, (write.address, Rs485Register::Settings));
                    }
                }
                Item::Rs485Request { exchange, .. } => {
                    let ours = wire.sent.is_some_and(|(bytes, at)| {
                        now.duration_since(at) < Duration::from_millis(200)
                            && rs485::parse_request(&bytes).ok() == Some(exchange)
                    });
                    if !ours {
                        wire.master_seen = Some(now);
                        wire.last_request = Some((exchange.address, now, false));
                    }
                }
                Item::Frame { frame, .. } => {
                    let address = frame.rs485_address.or_else(|| {
                        (frame.kind == FrameType::Settings)
                            .then(|| frame.bytes[DEVICE_ADDRESS])
                            .filter(|a| *a <= rs485::MAX_ADDRESS)
                    });
                    let address = address.or(wire.last_request.map(|r| r.0));
                    if let Some(r) = wire.last_request.as_mut() {
                        r.2 = true;
                    }
                    if address == Some(0) {
                        wire.master_seen = Some(now);
                    }
                    let Some(address) = address else {
                        tracing::debug!("{}: a frame nobody can be named for", self.name);
                        continue;
                    };
                    // (a write waits for its echo, not for a frame)
                    if pending.is_some_and(|p| p.address == address && p.asked != Asked::Write) {
                        *pending = None;
                    }
                    let Some(i) = self.index_of(address) else {
                        tracing::debug!(
                            "{}: a frame from RS485 address {address}, which is not in JK_RS485_ADDRESSES",
                            self.name
                        );
                        continue;
                    };
                    let decoded = self.packs[i].decoder.decode_frame(&frame);
                    match decoded {
                        Ok(decoded) => {
                            if let Decoded::Settings(s) = &decoded {
                                self.settle_write(i, s);
                            }
                            if !self.accept(i, decoded, now).await {
                                return false;
                            }
                        }
                        Err(e) => {
                            self.rejected += 1;
                            tracing::warn!(bms = %self.packs[i].name, error = %e, "rejected a frame");
                        }
                    }
                }
                Item::Rejected { error, .. } => {
                    self.rejected += 1;
                    tracing::warn!(bus = %self.name, %error, "rejected bytes on the bus ({} so far)", self.rejected);
                }
                _ => {}
            }
        }
        true
    }

    async fn accept(&mut self, i: usize, decoded: Decoded, now: Instant) -> bool {
        self.decoded += 1;
        let pack = &mut self.packs[i];
        pack.last_valid = Some(now);
        match decoded {
            Decoded::DeviceInfo(info, _) => {
                tracing::info!(
                    "{}: {} hw {} sw {} serial {}",
                    pack.name,
                    info.model,
                    info.hardware_version,
                    info.software_version,
                    info.serial_number
                );
                pack.device_info = Some((info, now));
                true
            }
            Decoded::Settings(s) => {
                pack.settings = Some((s, now));
                true
            }
            Decoded::CellInfo(cells) => {
                pack.missed = 0;
                if pack.state != State::Streaming
                    && !self
                        .set_state(i, State::Streaming, String::new(), None)
                        .await
                {
                    return false;
                }
                let pack = &self.packs[i];
                let snapshot = Snapshot::new(
                    cells,
                    pack.device_info.as_ref().map(|d| d.0.clone()),
                    pack.settings.as_ref().map(|s| s.0.clone()),
                    self.estimator.as_ref(),
                );
                self.emit(
                    i,
                    EventKind::Snapshot {
                        snapshot: Arc::new(snapshot),
                        decoded: self.decoded,
                        rejected: self.rejected,
                    },
                )
                .await
            }
            _ => true,
        }
    }

    async fn set_state(
        &mut self,
        i: usize,
        state: State,
        detail: String,
        retry_in: Option<Duration>,
    ) -> bool {
        let pack = &mut self.packs[i];
        let from = std::mem::replace(&mut pack.state, state);
        if from != state {
            if detail.is_empty() {
                tracing::info!("{}: {from} → {state}", pack.name);
            } else {
                tracing::info!("{}: {from} → {state}: {detail}", pack.name);
            }
        }
        let attempt = self.backoff.attempt();
        self.emit(
            i,
            EventKind::State {
                state,
                detail,
                retry_in,
                attempt,
            },
        )
        .await
    }

    async fn emit(&self, i: usize, kind: EventKind) -> bool {
        let pack = &self.packs[i];
        self.events
            .send(SessionEvent {
                battery: pack.battery,
                name: pack.name.clone(),
                kind,
            })
            .await
            .is_ok()
    }
}
