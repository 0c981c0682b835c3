//! The RS485 bus as a pure state machine: what the port heard, the writes asked and the time go
//! in; the bytes to send, the packs' state changes, their snapshots and the writes' answers come
//! out. No port and no clock: [`super::BusSession`] passes the time in and carries the
//! [`Action`]s out, and the tests below drive it with made-up times.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{BusMode, BusPack, BusTiming};
use crate::battery::link::State;
use crate::battery::{Snapshot, SocEstimator};
use crate::protocol::assembler::RawFrame;
use crate::protocol::control as protocol_control;
use crate::protocol::control::Rs485SwitchWrite;
use crate::protocol::rs485::{self, Rs485Register};
use crate::protocol::settings::jk02::DEVICE_ADDRESS;
use crate::protocol::{
    Assembler, AssemblerConfig, Decoded, DeviceInfo, FrameType, Item, Settings, StreamDecoder,
};
use crate::session::control::{self, Phase, WriteError, WriteRequest};
use crate::session::serial::MISSED_LIMIT;
use crate::session::SessionConfig;

/// What the driver does for the core, in order.
#[derive(Debug)]
pub enum Action {
    /// Bytes for the port.
    Send(Vec<u8>),
    /// Pack `pack` (its position on this bus) changed state, or says why it keeps it.
    State {
        pack: usize,
        state: State,
        detail: String,
        retry_in: Option<Duration>,
    },
    /// A reading of pack `pack`, with the port's frame counters then.
    Snapshot {
        pack: usize,
        snapshot: Box<Snapshot>,
        decoded: u64,
        rejected: u64,
    },
}

/// jkmon's part on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Listening { until: Instant },
    Master,
    Sniffer,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Listening { .. } => "listening",
            Role::Master => "master",
            Role::Sniffer => "sniffer",
        })
    }
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

impl Wire {
    fn new(now: Instant) -> Wire {
        Wire {
            assembler: Assembler::new(AssemblerConfig::rs485()),
            last_rx: now,
            last_request: None,
            master_seen: None,
            sent: None,
        }
    }
}

/// Who has the floor, and jkmon's part in it: the request it waits an answer to, the requests
/// left in its round, and when the next round starts.
struct Floor {
    role: Role,
    pending: Option<Pending>,
    queue: Vec<(u8, Rs485Register)>,
    next_cycle: Instant,
}

/// Why a write cannot go while another master polls the bus.
fn busy() -> WriteError {
    WriteError::Busy(
        "another master polls this RS485 network: jkmon sends writes only as the master (switch it from that master, or set JK_RS485_MODE=master with no other master on the bus)".into(),
    )
}

/// The bus: its packs, who has the floor, what the wire said and the write under way.
pub struct BusCore {
    name: String,
    packs: Vec<PackState>,
    config: SessionConfig,
    mode: BusMode,
    timing: BusTiming,
    estimator: Arc<dyn SocEstimator>,
    wire: Wire,
    floor: Floor,
    /// The write under way, one at a time; it outlives a port that closes (sent once more).
    write: Option<control::Write>,
    /// When the port was opened last.
    opened: Instant,
    /// Corrupt frames and bytes on this port so far.
    rejected: u64,
    /// Frames decoded on this port so far.
    decoded: u64,
}

impl BusCore {
    pub fn new(
        name: &str,
        packs: Vec<BusPack>,
        config: SessionConfig,
        mode: BusMode,
        timing: BusTiming,
        estimator: Arc<dyn SocEstimator>,
        now: Instant,
    ) -> BusCore {
        let packs = packs
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
            .collect();
        BusCore {
            name: name.to_string(),
            packs,
            config,
            mode,
            timing,
            estimator,
            wire: Wire::new(now),
            floor: Floor {
                role: Role::Sniffer,
                pending: None,
                queue: Vec::new(),
                next_cycle: now,
            },
            write: None,
            opened: now,
            rejected: 0,
            decoded: 0,
        }
    }

    /// The packs' batteries (their position in the configuration) and names, by position here.
    pub fn pack(&self, pack: usize) -> (usize, Arc<str>) {
        let p = &self.packs[pack];
        (p.battery, p.name.clone())
    }

    /// Whether a new write can be taken (one at a time).
    pub fn takes_writes(&self) -> bool {
        self.write.is_none()
    }

    /// Every pack to `state` (the port opening, or closed for `retry_in`).
    pub fn set_all(
        &mut self,
        state: State,
        detail: &str,
        retry_in: Option<Duration>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        for i in 0..self.packs.len() {
            self.set_state(i, state, detail.to_string(), retry_in, &mut out);
        }
        out
    }

    /// The port opened at `now`: every pack in handshake, the counters reset, and the role the
    /// mode starts in.
    pub fn open(&mut self, now: Instant) -> Vec<Action> {
        let out = self.set_all(State::Handshake, "waiting for its first frame", None);
        self.wire = Wire::new(now);
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
        self.floor = Floor {
            role,
            pending: None,
            queue: Vec::new(),
            next_cycle: now,
        };
        out
    }

    /// The port closed: a write it lost goes out once more on the next one; a second loss
    /// ends it.
    pub fn closed(&mut self) {
        if let Some(w) = self.write.as_mut() {
            if !w.lost() {
                let setting = w.setting();
                self.finish_write(Err(WriteError::Dropped(setting)));
            }
        }
    }

    /// Bytes heard at `now`.
    pub fn heard(&mut self, chunk: &[u8], now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.wire.last_rx = now;
        self.wire.assembler.push(chunk);
        self.drain(now, &mut out);
        self.step(now, &mut out);
        out
    }

    /// A write asked at `now`: refused at once where it cannot go (no such pack, the pack
    /// offline, another master on the bus), else queued.
    pub fn asked(&mut self, request: WriteRequest, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.take_write(request);
        self.step(now, &mut out);
        out
    }

    /// Nothing arrived until `now`.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.step(now, &mut out);
        out
    }

    /// After every input: the role, the request waited on, the write, the silent packs, and
    /// jkmon's turn to talk.
    fn step(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.follow_the_master(now);
        if let Some(p) = self.floor.pending.filter(|p| now >= p.until) {
            self.floor.pending = None;
            if p.asked == Asked::Write {
                self.write_unanswered(p.address);
            }
            self.unanswered(p, out);
        }
        self.check_write(now);
        self.expire_silent(now, out);
        if self.floor.pending.is_none() {
            self.take_turn(now, out);
        }
    }

    fn write_pack(&self) -> Option<usize> {
        let battery = self.write.as_ref()?.battery();
        self.packs.iter().position(|p| p.battery == battery)
    }

    /// Why a write to pack `pack`, which is offline, is not sent.
    fn pack_offline(&self, pack: usize) -> WriteError {
        let p = &self.packs[pack];
        WriteError::Offline(format!(
            "{} does not answer on RS485 address {}",
            p.name, p.address
        ))
    }

    fn finish_write(&mut self, result: Result<(), WriteError>) {
        if let Some(w) = self.write.take() {
            w.answer(result);
        }
    }

    fn take_write(&mut self, request: WriteRequest) {
        let Some(pack) = self.packs.iter().position(|p| p.battery == request.battery) else {
            let _ = request.reply.send(Err(WriteError::Stopped));
            return;
        };
        let p = &self.packs[pack];
        let refused = match (p.state, self.floor.role) {
            (State::Disconnected, _) => Some(self.pack_offline(pack)),
            (_, Role::Sniffer) => Some(busy()),
            _ => None,
        };
        if let Some(e) = refused {
            tracing::warn!("{}: {}: {e}", p.name, request.setting);
            let _ = request.reply.send(Err(e));
            return;
        }
        if let Some(earlier) = self.write.replace(control::Write::new(request)) {
            // the driver takes one at a time; should another come, the earlier one yields
            let setting = earlier.setting();
            earlier.answer(Err(WriteError::Dropped(setting)));
        }
    }

    /// The write under way against the clock and the bus: no settings frame in time, or
    /// another master on the bus before it went out.
    fn check_write(&mut self, now: Instant) {
        let (Some(w), Some(pack)) = (self.write.as_ref(), self.write_pack()) else {
            return;
        };
        let waited_on = self.floor.pending.is_some_and(|p| p.asked == Asked::Write);
        match w.phase() {
            // no longer waited for (another master took the floor): as if unanswered
            Phase::Sent if !waited_on => self.write_unanswered(self.packs[pack].address),
            Phase::Confirming { .. } if w.expired(now) => {
                let setting = w.setting();
                self.finish_write(Err(WriteError::unconfirmed(setting)));
            }
            Phase::Queued if self.floor.role == Role::Sniffer => self.finish_write(Err(busy())),
            Phase::Queued if self.packs[pack].state == State::Disconnected => {
                let offline = self.pack_offline(pack);
                self.finish_write(Err(offline));
            }
            _ => {}
        }
    }

    /// The pack at `address` did not echo the write: sent once more, then given up.
    fn write_unanswered(&mut self, address: u8) {
        let Some(pack) = self.write_pack() else {
            return;
        };
        let Some(w) = self.write.as_mut() else { return };
        if w.phase() != Phase::Sent || self.packs[pack].address != address || w.lost() {
            return;
        }
        let setting = w.setting();
        let why = format!(
            "RS485 address {address} did not answer the write of {setting} (sent twice); what it reports is unchanged"
        );
        self.finish_write(Err(WriteError::Unanswered(why)));
    }

    /// Roles change on what was heard: a master on the bus makes jkmon listen; a master gone
    /// silent (or none at all) makes jkmon poll.
    fn follow_the_master(&mut self, now: Instant) {
        let master_recent = self
            .wire
            .master_seen
            .is_some_and(|t| now.duration_since(t) < self.timing.master_gone);
        let auto = self.mode == BusMode::Auto;
        let floor = &mut self.floor;
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
            Role::Sniffer if !master_recent && auto && self.wire.master_seen.is_some() => {
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
    /// missed [`MISSED_LIMIT`] cell-info requests in a row is offline.
    fn unanswered(&mut self, p: Pending, out: &mut Vec<Action>) {
        let dropped = self.wire.assembler.pending();
        if dropped > 0 {
            self.wire.assembler.reset();
            self.rejected += 1;
            tracing::warn!(
                "{}: dropped {dropped} bytes of an unfinished frame",
                self.name
            );
        }
        let Some(i) = self.index_of(p.address) else {
            return;
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
            return;
        }
        let why = format!(
            "offline: no answer to {} requests in a row on RS485 address {}",
            pack.missed, pack.address
        );
        self.set_state(i, State::Disconnected, why, None, out);
    }

    /// jkmon's turn to talk: the queued write (as master), the next request of a master's
    /// round, or one in a sniffer's gap.
    fn take_turn(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.floor.role == Role::Master && self.send_write(now, out) {
            return;
        }
        let floor = &mut self.floor;
        let ask = match floor.role {
            Role::Listening { .. } => None,
            Role::Master => {
                if floor.queue.is_empty() && now >= floor.next_cycle {
                    floor.queue = master_round(&self.packs, &self.timing, now);
                    floor.next_cycle = (floor.next_cycle + self.config.poll_interval).max(now);
                }
                (!floor.queue.is_empty()).then(|| floor.queue.remove(0))
            }
            Role::Sniffer => self.gap_request(now),
        };
        let Some((address, register)) = ask else {
            return;
        };
        let request = rs485::request(address, register);
        out.push(Action::Send(request.to_vec()));
        self.wire.sent = Some((request, now));
        self.wire.last_request = Some((address, now, false));
        if let Some(i) = self.index_of(address) {
            self.packs[i].last_asked = Some(now);
        }
        self.floor.pending = Some(Pending {
            address,
            asked: Asked::Read(register),
            until: now + self.config.response_timeout,
        });
    }

    /// Master: the queued write goes out, once its pack has answered on this port. `true`
    /// when it went.
    fn send_write(&mut self, now: Instant, out: &mut Vec<Action>) -> bool {
        let Some(i) = self.write_pack() else {
            return false;
        };
        let Some(w) = self.write.as_mut() else {
            return false;
        };
        let pack = &self.packs[i];
        if w.phase() != Phase::Queued || pack.state != State::Streaming {
            return false;
        }
        let bytes = match protocol_control::rs485_write(pack.address, w.setting()) {
            Ok(b) => b,
            Err(e) => {
                self.finish_write(Err(e.into()));
                return false;
            }
        };
        tracing::info!(
            "{}: writing {} ({})",
            pack.name,
            w.setting(),
            crate::protocol::hex(&bytes)
        );
        out.push(Action::Send(bytes));
        w.sent(now, true);
        self.wire.last_request = Some((pack.address, now, false));
        self.floor.pending = Some(Pending {
            address: pack.address,
            asked: Asked::Write,
            until: now + self.config.response_timeout,
        });
        true
    }

    /// When the driver must look again if nothing arrives.
    pub fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_millis(500);
        let floor = &self.floor;
        if let Some(p) = floor.pending {
            wake = wake.min(p.until);
        }
        if let Some(until) = self.write.as_ref().and_then(control::Write::deadline) {
            wake = wake.min(until);
        }
        match floor.role {
            Role::Listening { until } => wake = wake.min(until),
            Role::Master if floor.pending.is_none() => wake = wake.min(floor.next_cycle),
            Role::Master => {}
            Role::Sniffer => {
                // only moments still ahead: one already past would spin the loop
                let quiet_at = self.wire.last_rx + self.timing.quiet;
                if quiet_at > now {
                    wake = wake.min(quiet_at);
                }
                if let Some(t) = self.wire.master_seen {
                    let gone_at = t + self.timing.master_gone;
                    if gone_at > now {
                        wake = wake.min(gone_at);
                    }
                }
            }
        }
        wake.max(now + Duration::from_millis(1))
    }

    /// Sniffer mode: a device-info request, when the master is waiting for an absent address
    /// (its request went unanswered and the wire has been quiet) and a pack lacks it.
    fn gap_request(&self, now: Instant) -> Option<(u8, Rs485Register)> {
        let wire = &self.wire;
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
    fn expire_silent(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.floor.role == Role::Master {
            return;
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
                self.set_state(i, State::Disconnected, why, None, out);
            }
        }
    }

    fn index_of(&self, address: u8) -> Option<usize> {
        self.packs.iter().position(|p| p.address == address)
    }

    /// Handles every complete item on the wire.
    fn drain(&mut self, now: Instant, out: &mut Vec<Action>) {
        while let Some(item) = self.wire.assembler.poll() {
            match item {
                Item::Rs485Switch { write, .. } => self.echo(write, now),
                Item::Rs485Request { exchange, .. } => {
                    let ours = self.wire.sent.is_some_and(|(bytes, at)| {
                        now.duration_since(at) < Duration::from_millis(200)
                            && rs485::parse_request(&bytes).ok() == Some(exchange)
                    });
                    if !ours {
                        self.wire.master_seen = Some(now);
                        self.wire.last_request = Some((exchange.address, now, false));
                    }
                }
                Item::Frame { frame, .. } => self.frame(&frame, now, out),
                Item::Rejected { error, .. } => {
                    self.rejected += 1;
                    tracing::warn!(bus = %self.name, %error, "rejected bytes on the bus ({} so far)", self.rejected);
                }
                _ => {}
            }
        }
    }

    /// The pack's echo of jkmon's write: it took the bytes; its settings frame, asked for
    /// next, says whether it took the switch.
    fn echo(&mut self, write: Rs485SwitchWrite, now: Instant) {
        let ours = self.write_pack().is_some_and(|i| {
            self.write.as_ref().is_some_and(|w| {
                w.phase() == Phase::Sent
                    && self.packs[i].address == write.address
                    && w.setting().switch == write.switch
            })
        });
        if write.on.is_some() || !ours {
            return;
        }
        if self.floor.pending.is_some_and(|p| p.asked == Asked::Write) {
            self.floor.pending = None;
        }
        if let Some(w) = self.write.as_mut() {
            w.echoed(now);
        }
        self.floor
            .queue
            .insert(0, (write.address, Rs485Register::Settings));
    }

    /// A frame: named by its tail (or, for settings, byte 270; else the last request), then
    /// decoded for its pack.
    fn frame(&mut self, frame: &RawFrame, now: Instant, out: &mut Vec<Action>) {
        let wire = &mut self.wire;
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
            return;
        };
        // (a write waits for its echo, not for a frame)
        let pending = &mut self.floor.pending;
        if pending.is_some_and(|p| p.address == address && p.asked != Asked::Write) {
            *pending = None;
        }
        let Some(i) = self.index_of(address) else {
            tracing::debug!(
                "{}: a frame from RS485 address {address}, which is not in JK_RS485_ADDRESSES",
                self.name
            );
            return;
        };
        match self.packs[i].decoder.decode_frame(frame) {
            Ok(decoded) => {
                if let Decoded::Settings(s) = &decoded {
                    self.settle_write(i, s);
                }
                self.accept(i, decoded, now, out);
            }
            Err(e) => {
                self.rejected += 1;
                tracing::warn!(bms = %self.packs[i].name, error = %e, "rejected a frame");
            }
        }
    }

    /// A settings frame from pack `i`: it decides the write waiting for it, if any.
    fn settle_write(&mut self, i: usize, settings: &Settings) {
        if self.write_pack() != Some(i) {
            return;
        }
        if let Some(result) = self.write.as_ref().and_then(|w| w.settled_by(settings)) {
            self.finish_write(result);
        }
    }

    fn accept(&mut self, i: usize, decoded: Decoded, now: Instant, out: &mut Vec<Action>) {
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
            }
            Decoded::Settings(s) => pack.settings = Some((s, now)),
            Decoded::CellInfo(cells) => {
                pack.missed = 0;
                if pack.state != State::Streaming {
                    self.set_state(i, State::Streaming, String::new(), None, out);
                }
                let pack = &self.packs[i];
                let snapshot = Snapshot::new(
                    cells,
                    pack.device_info.as_ref().map(|d| d.0.clone()),
                    pack.settings.as_ref().map(|s| s.0.clone()),
                    self.estimator.as_ref(),
                );
                out.push(Action::Snapshot {
                    pack: i,
                    snapshot: Box::new(snapshot),
                    decoded: self.decoded,
                    rejected: self.rejected,
                });
            }
            _ => {}
        }
    }

    fn set_state(
        &mut self,
        i: usize,
        state: State,
        detail: String,
        retry_in: Option<Duration>,
        out: &mut Vec<Action>,
    ) {
        let pack = &mut self.packs[i];
        let from = std::mem::replace(&mut pack.state, state);
        if from != state {
            if detail.is_empty() {
                tracing::info!("{}: {from} → {state}", pack.name);
            } else {
                tracing::info!("{}: {from} → {state}: {detail}", pack.name);
            }
        }
        out.push(Action::State {
            pack: i,
            state,
            detail,
            retry_in,
        });
    }
}

/// Master mode: what to ask in this round, pack by pack.
fn master_round(packs: &[PackState], timing: &BusTiming, now: Instant) -> Vec<(u8, Rs485Register)> {
    let due = |at: Option<Instant>, every: Duration| at.is_none_or(|t| now >= t + every);
    let mut round = Vec::new();
    for p in packs {
        if due(
            p.device_info.as_ref().map(|d| d.1),
            timing.device_info_every,
        ) {
            round.push((p.address, Rs485Register::DeviceInfo));
        }
        if due(p.settings.as_ref().map(|s| s.1), timing.settings_every) {
            round.push((p.address, Rs485Register::Settings));
        }
        round.push((p.address, Rs485Register::CellInfo));
    }
    round
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::battery::soc::BmsSoc;
    use crate::protocol::control::{Setting, Switch};
    use crate::transport::sim::bus::pack_answer;

    const MS: Duration = Duration::from_millis(1);

    fn core(mode: BusMode, addresses: &[u8], t0: Instant) -> BusCore {
        let packs = addresses
            .iter()
            .enumerate()
            .map(|(battery, &address)| BusPack {
                battery,
                address,
                name: format!("pack {address}").into(),
            })
            .collect();
        let config = SessionConfig {
            response_timeout: Duration::from_millis(300),
            poll_interval: Duration::from_secs(5),
            stale: Duration::from_secs(30),
            ..SessionConfig::default()
        };
        let estimator = Arc::new(BmsSoc);
        BusCore::new(
            "bus",
            packs,
            config,
            mode,
            BusTiming::default(),
            estimator,
            t0,
        )
    }

    /// The requests among `actions`, as (address, register).
    fn asked(actions: &[Action]) -> Vec<(u8, Rs485Register)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(b) => rs485::parse_request(b)
                    .ok()
                    .map(|e| (e.address, Rs485Register::from_address(e.register).unwrap())),
                _ => None,
            })
            .collect()
    }

    fn states(actions: &[Action]) -> Vec<(usize, State)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::State { pack, state, .. } => Some((*pack, *state)),
                _ => None,
            })
            .collect()
    }

    fn snapshots(actions: &[Action]) -> Vec<usize> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Snapshot { pack, .. } => Some(*pack),
                _ => None,
            })
            .collect()
    }

    /// Runs the bus for `steps` steps: a request to a pack in `present` is answered 20 ms
    /// later; otherwise the clock moves to the core's next wake. Returns the time then and
    /// everything the core did.
    fn serve(
        core: &mut BusCore,
        present: &[u8],
        mut actions: Vec<Action>,
        mut now: Instant,
        steps: usize,
    ) -> (Instant, Vec<Action>) {
        let mut all = Vec::new();
        for _ in 0..steps {
            let request = asked(&actions).first().copied();
            all.append(&mut actions);
            actions = match request {
                Some((address, register)) if present.contains(&address) => {
                    now += 20 * MS;
                    core.heard(&pack_answer(address, register), now)
                }
                _ => {
                    now = core.next_wake(now);
                    core.tick(now)
                }
            };
        }
        all.append(&mut actions);
        (now, all)
    }

    #[test]
    fn a_master_asks_each_pack_in_turn_and_names_each_answer_by_its_tail() {
        let t0 = Instant::now();
        let mut bus = core(BusMode::Master, &[1, 2], t0);
        let opened = bus.open(t0);
        assert_eq!(
            states(&opened),
            [(0, State::Handshake), (1, State::Handshake)]
        );
        let first = bus.tick(t0);
        use Rs485Register::*;
        assert_eq!(asked(&first), [(1, DeviceInfo)], "one request at a time");
        let (_, all) = serve(&mut bus, &[1, 2], first, t0, 6);
        assert_eq!(
            asked(&all),
            [
                (1, DeviceInfo),
                (1, Settings),
                (1, CellInfo),
                (2, DeviceInfo),
                (2, Settings),
                (2, CellInfo)
            ]
        );
        assert_eq!(
            snapshots(&all),
            [0, 1],
            "each cell-info answer is its own pack's"
        );
        assert_eq!(states(&all), [(0, State::Streaming), (1, State::Streaming)]);
    }

    #[test]
    fn the_next_round_waits_for_the_poll_interval_and_asks_only_for_cells() {
        let t0 = Instant::now();
        let mut bus = core(BusMode::Master, &[1], t0);
        bus.open(t0);
        let first = bus.tick(t0);
        let (now, _) = serve(&mut bus, &[1], first, t0, 3);
        assert!(asked(&bus.tick(now + Duration::from_secs(1))).is_empty());
        let wake = bus.next_wake(now + Duration::from_secs(1));
        assert!(wake <= t0 + Duration::from_secs(5));
        assert_eq!(
            asked(&bus.tick(t0 + Duration::from_secs(5))),
            [(1, Rs485Register::CellInfo)]
        );
    }

    #[test]
    fn a_pack_that_misses_three_cell_requests_in_a_row_is_offline_and_the_others_stay() {
        let t0 = Instant::now();
        let mut bus = core(BusMode::Master, &[1, 2], t0);
        bus.open(t0);
        let first = bus.tick(t0);
        // bounded: some 40 requests and timeouts, over three rounds
        let (_, all) = serve(&mut bus, &[2], first, t0, 60);
        let offline: Vec<_> = states(&all)
            .into_iter()
            .filter(|s| s.1 == State::Disconnected)
            .collect();
        assert_eq!(offline, [(0, State::Disconnected)], "pack 1 only, once");
        assert!(snapshots(&all).iter().all(|p| *p == 1));
    }

    #[test]
    fn auto_listens_first_then_polls_when_nobody_else_does() {
        let t0 = Instant::now();
        let mut bus = core(BusMode::Auto, &[1], t0);
        bus.open(t0);
        assert!(asked(&bus.tick(t0 + Duration::from_secs(1))).is_empty());
        assert!(bus.next_wake(t0 + Duration::from_secs(1)) <= t0 + Duration::from_secs(2));
        assert_eq!(
            asked(&bus.tick(t0 + Duration::from_secs(2))),
            [(1, Rs485Register::DeviceInfo)]
        );
    }

    #[test]
    fn auto_hears_a_master_and_only_listens_until_it_has_been_silent_for_five_seconds() {
        let t0 = Instant::now();
        let mut bus = core(BusMode::Auto, &[1], t0);
        bus.open(t0);
        // the pack at address 0 asks pack 1 for its cells, and pack 1 answers
        let request = rs485::request(1, Rs485Register::CellInfo);
        let heard = bus.heard(&request, t0 + 100 * MS);
        assert!(asked(&heard).is_empty());
        let answer = pack_answer(1, Rs485Register::CellInfo);
        let answered = bus.heard(&answer, t0 + 150 * MS);
        assert_eq!(
            snapshots(&answered),
            [0],
            "a sniffer reads the master's exchanges"
        );
        // bounded: 40 quiet ticks of 100 ms, none of them a request of jkmon's
        for n in 2..40 {
            assert!(
                asked(&bus.tick(t0 + n * 100 * MS)).is_empty(),
                "asked at {n}00 ms"
            );
        }
        let polls = bus.tick(t0 + 100 * MS + Duration::from_secs(5));
        assert!(!asked(&polls).is_empty(), "polls once the master is gone");
    }

    #[test]
    fn a_sniffer_asks_for_device_info_only_in_the_silence_after_an_unanswered_request() {
        let t0 = Instant::now();
        let mut bus = core(BusMode::Sniffer, &[1], t0);
        bus.open(t0);
        // the master asks absent address 5, nobody answers
        assert!(asked(&bus.heard(&rs485::request(5, Rs485Register::CellInfo), t0)).is_empty());
        assert!(
            asked(&bus.tick(t0 + 100 * MS)).is_empty(),
            "not before 150 ms of quiet"
        );
        assert_eq!(
            asked(&bus.tick(t0 + 150 * MS)),
            [(1, Rs485Register::DeviceInfo)]
        );
    }

    fn write(
        switch: Switch,
        on: bool,
    ) -> (WriteRequest, oneshot::Receiver<Result<(), WriteError>>) {
        let (reply, answer) = oneshot::channel();
        let setting = Setting { switch, on };
        (
            WriteRequest {
                battery: 0,
                setting,
                reply,
            },
            answer,
        )
    }

    /// A master with pack 1 streaming, at the returned time.
    fn streaming_master(t0: Instant) -> (BusCore, Instant) {
        let mut bus = core(BusMode::Master, &[1], t0);
        bus.open(t0);
        let first = bus.tick(t0);
        let (now, _) = serve(&mut bus, &[1], first, t0, 3);
        (bus, now)
    }

    #[test]
    fn a_write_goes_out_is_echoed_and_is_answered_by_the_settings_frame_asked_next() {
        let t0 = Instant::now();
        let (mut bus, now) = streaming_master(t0);
        let (request, mut answer) = write(Switch::Charging, true);
        let sent = bus.asked(request, now);
        let expected = protocol_control::rs485_write(
            1,
            Setting {
                switch: Switch::Charging,
                on: true,
            },
        )
        .unwrap();
        assert!(
            matches!(&sent[..], [Action::Send(b)] if *b == expected),
            "{sent:?}"
        );
        assert!(!bus.takes_writes(), "one write at a time");
        let echo = protocol_control::rs485_write_answer(1, Switch::Charging).unwrap();
        let next = bus.heard(&echo, now + 30 * MS);
        assert_eq!(
            asked(&next),
            [(1, Rs485Register::Settings)],
            "the settings frame is asked next"
        );
        assert!(answer.try_recv().is_err(), "the echo is no proof");
        bus.heard(&pack_answer(1, Rs485Register::Settings), now + 60 * MS);
        assert_eq!(answer.try_recv().unwrap(), Ok(()));
        assert!(bus.takes_writes());
    }

    #[test]
    fn a_write_that_is_never_echoed_goes_out_twice_then_is_answered_unanswered() {
        let t0 = Instant::now();
        let (mut bus, mut now) = streaming_master(t0);
        let (request, mut answer) = write(Switch::Balancer, false);
        let mut writes = usize::from(!bus.asked(request, now).is_empty());
        // bounded: 10 timeouts of the 300 ms response time
        for _ in 0..10 {
            now += Duration::from_millis(300);
            let actions = bus.tick(now);
            writes += actions
                .iter()
                .filter(
                    |a| matches!(a, Action::Send(b) if protocol_control::could_be_rs485_write(b)),
                )
                .count();
            if let Ok(result) = answer.try_recv() {
                assert!(
                    matches!(result, Err(WriteError::Unanswered(_))),
                    "{result:?}"
                );
                assert_eq!(writes, 2);
                return;
            }
        }
        panic!("the write was never given up");
    }

    #[test]
    fn a_sniffer_refuses_a_write_at_once_and_an_offline_pack_is_never_written() {
        let t0 = Instant::now();
        let mut bus = core(BusMode::Sniffer, &[1], t0);
        bus.open(t0);
        bus.heard(&pack_answer(1, Rs485Register::CellInfo), t0);
        let (request, mut answer) = write(Switch::Charging, false);
        assert!(bus.asked(request, t0).is_empty());
        assert!(matches!(
            answer.try_recv().unwrap(),
            Err(WriteError::Busy(_))
        ));

        let mut bus = core(BusMode::Master, &[1], t0);
        let (request, mut answer) = write(Switch::Charging, false);
        bus.asked(request, t0);
        assert!(matches!(
            answer.try_recv().unwrap(),
            Err(WriteError::Offline(_))
        ));
    }

    #[test]
    fn a_write_the_port_lost_goes_out_once_more_on_the_next_port_and_a_second_loss_drops_it() {
        let t0 = Instant::now();
        let (mut bus, now) = streaming_master(t0);
        let (request, mut answer) = write(Switch::Discharging, true);
        assert!(!bus.asked(request, now).is_empty());
        bus.closed();
        assert!(answer.try_recv().is_err(), "kept for the next port");
        let first = bus.open(now + Duration::from_secs(1));
        let (now, all) = serve(&mut bus, &[1], first, now + Duration::from_secs(1), 2);
        assert!(
            all.iter()
                .any(|a| matches!(a, Action::Send(b) if protocol_control::could_be_rs485_write(b))),
            "sent again"
        );
        let _ = now;
        bus.closed();
        assert!(matches!(
            answer.try_recv().unwrap(),
            Err(WriteError::Dropped(_))
        ));
    }
}
