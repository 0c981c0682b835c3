//! A simulated JK-PB RS485 network (§4): packs at DIP-switch addresses 1-15 that answer the
//! Modbus FC 0x10 triggers with a 300-byte frame plus the 8-byte tail, and optionally a master
//! pack at address 0 that polls cell info from 1 to 15 in turn (waiting for absent addresses as a
//! real master does) and broadcasts its own cell info and settings.
//!
//! The wire is half-duplex, so the simulation keeps time: every transmission occupies the bus
//! for its bytes at 115200 baud (10 bits a byte), and anything that starts while another
//! transmission or a master's exchange is in progress counts as a collision. jkmon must never
//! cause one; the tests read [`BusStats::collisions`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::model::{Rng, SimBattery};
use super::{device_info, settings, SimConfig};
use crate::protocol::cell_info::{encode_jk02, JK02_32S};
use crate::protocol::rs485::{self, Rs485Register};
use crate::protocol::{device_info as device_frame, settings as settings_frame, Variant};
use crate::protocol::{Assembler, AssemblerConfig, Item};
use crate::transport::{Link, Peer};

/// The simulated network.
#[derive(Debug, Clone)]
pub struct BusSimConfig {
    /// Slave packs (1-15).
    pub slaves: Vec<u8>,
    /// A master pack at address 0 that polls and broadcasts.
    pub master: bool,
    /// How long the master waits for an address that does not answer.
    pub absent_wait: Duration,
    /// The master's pause after an answered request.
    pub master_gap: Duration,
    /// A slave starts answering this long after a request.
    pub answer_latency: Duration,
    /// The packs' battery model (each pack gets its own seed).
    pub battery: SimConfig,
}

impl Default for BusSimConfig {
    fn default() -> Self {
        BusSimConfig {
            slaves: vec![1, 2, 3],
            master: false,
            absent_wait: Duration::from_millis(300),
            master_gap: Duration::from_millis(20),
            answer_latency: Duration::from_millis(5),
            battery: SimConfig::default(),
        }
    }
}

/// What happened on the simulated bus; shared with whoever runs it.
#[derive(Debug, Default)]
pub struct BusStats {
    pub collisions: AtomicU64,
    /// What collided with what, for the message of a failing test.
    pub collision_log: Mutex<Vec<String>>,
    /// Requests jkmon sent, as (address, register).
    pub client_requests: Mutex<Vec<(u8, u16)>>,
    /// Switch writes jkmon sent, as (address, setting) — `charging=off`.
    pub client_writes: Mutex<Vec<(u8, String)>>,
    /// Requests the simulated master sent.
    pub master_requests: AtomicU64,
    /// Frames the packs sent (answers and broadcasts).
    pub frames: AtomicU64,
    /// Addresses that do not answer (tests silence a pack at run time).
    pub silent: Mutex<HashSet<u8>>,
    /// Every n-th answer is corrupted (0 = never).
    pub corrupt_every: AtomicU64,
    /// The master pack polls (tests switch it on and off at run time).
    pub master_enabled: AtomicBool,
}

impl BusStats {
    pub fn collisions(&self) -> u64 {
        self.collisions.load(Ordering::SeqCst)
    }
    fn collided(&self, what: String) {
        self.collisions.fetch_add(1, Ordering::SeqCst);
        self.collision_log.lock().unwrap().push(what);
    }
    pub fn collision_log(&self) -> Vec<String> {
        self.collision_log.lock().unwrap().clone()
    }
    pub fn client_requests(&self) -> Vec<(u8, u16)> {
        self.client_requests.lock().unwrap().clone()
    }
    pub fn client_writes(&self) -> Vec<(u8, String)> {
        self.client_writes.lock().unwrap().clone()
    }
    pub fn set_master(&self, on: bool) {
        self.master_enabled.store(on, Ordering::SeqCst);
    }
    pub fn silence(&self, address: u8, silent: bool) {
        let mut s = self.silent.lock().unwrap();
        if silent {
            s.insert(address);
        } else {
            s.remove(&address);
        }
    }
}

/// Time `n` bytes occupy the wire at 115200 baud, 8N1.
fn wire_time(n: usize) -> Duration {
    Duration::from_micros((n as u64 * 10 * 1_000_000) / 115_200)
}

struct Pack {
    address: u8,
    config: SimConfig,
    battery: SimBattery,
    rng: Rng,
    counter: u8,
}

impl Pack {
    fn new(address: u8, base: &SimConfig) -> Pack {
        let config = SimConfig {
            seed: base.seed.wrapping_add(u64::from(address) * 7919),
            variant: Variant::Jk02_32s,
            ..base.clone()
        };
        let mut rng = Rng::new(config.seed);
        let battery = SimBattery::new(&config, &mut rng);
        Pack {
            address,
            config,
            battery,
            rng,
            counter: 0,
        }
    }

    /// The frame behind `register`, followed by the tail with this pack's address.
    fn answer(&mut self, register: Rs485Register, now_s: f64) -> Vec<u8> {
        self.counter = self.counter.wrapping_add(1);
        let frame = match register {
            Rs485Register::CellInfo => {
                self.battery.step(now_s, &mut self.rng);
                encode_jk02(&self.battery.cell_info(self.counter), &JK02_32S)
            }
            Rs485Register::Settings => {
                let mut s = settings(&self.config, &self.battery.switches);
                s.device_address = Some(self.address);
                settings_frame::encode_jk02(&s, self.counter)
            }
            Rs485Register::DeviceInfo => {
                let mut info = device_info(&self.config);
                info.device_name = format!("jkmon-sim-{}", self.address);
                info.serial_number = format!("SIMPB{:05}", self.address);
                info.uptime_s = Some(self.battery.uptime_s());
                device_frame::encode(&info, self.counter)
            }
        };
        let mut bytes = frame.to_vec();
        bytes.extend(rs485::tail(self.address, register));
        bytes
    }
}

/// What pack `address` of a simulated bus answers to `register`: the frame and its tail (for
/// tests that drive the bus logic without a port).
pub fn pack_answer(address: u8, register: Rs485Register) -> Vec<u8> {
    Pack::new(address, &SimConfig::default()).answer(register, 0.0)
}

struct Bus {
    config: BusSimConfig,
    packs: Vec<Pack>,
    master_pack: Pack,
    stats: Arc<BusStats>,
    /// The wire (or a master's exchange) is taken until then.
    busy_until: Instant,
    started: Instant,
    answers: u64,
    /// To the delivery task: (when the last byte is through, bytes).
    out: mpsc::Sender<(Instant, Vec<u8>)>,
}

impl Bus {
    fn now_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Puts bytes on the wire: a collision when the wire is taken. The receiver gets them when
    /// their last byte is through, as on a real line.
    async fn transmit(&mut self, bytes: Vec<u8>) -> bool {
        let now = Instant::now();
        if now < self.busy_until {
            self.stats.collided(format!(
                "at {:.3} s a pack started {} bytes ({:02x?}…) {:.1} ms before the wire was free",
                self.now_s(),
                bytes.len(),
                &bytes[..4],
                (self.busy_until - now).as_secs_f64() * 1000.0
            ));
        }
        self.busy_until = self.busy_until.max(now) + wire_time(bytes.len());
        self.out.send((self.busy_until, bytes)).await.is_ok()
    }

    /// A slave's answer to a request, unless it is absent or silenced.
    fn answer_of(&mut self, address: u8, register: Rs485Register) -> Option<Vec<u8>> {
        if self.stats.silent.lock().unwrap().contains(&address) {
            return None;
        }
        let now_s = self.now_s();
        let pack = self.packs.iter_mut().find(|p| p.address == address)?;
        let mut bytes = pack.answer(register, now_s);
        self.answers += 1;
        self.stats.frames.fetch_add(1, Ordering::SeqCst);
        let every = self.stats.corrupt_every.load(Ordering::SeqCst);
        if every > 0 && self.answers.is_multiple_of(every) {
            bytes[150] ^= 0x5A; // the frame's checksum no longer matches
            bytes.splice(0..0, [0x03, 0x10, 0x55]); // and junk before it
        }
        Some(bytes)
    }
}

/// Starts the simulated bus on `peer` (bytes from jkmon arrive as its commands). It runs until
/// jkmon hangs up.
pub fn serve(config: BusSimConfig, peer: Peer) -> Arc<BusStats> {
    let stats = Arc::new(BusStats::default());
    stats
        .corrupt_every
        .store(u64::from(config.battery.corrupt_every), Ordering::SeqCst);
    stats.set_master(config.master);
    tokio::spawn(run(config, peer, stats.clone()));
    stats
}

/// An in-process bus behind a [`Link`] (for tests and the demo of the RS485 transport).
pub fn connect(config: BusSimConfig) -> (Link, Arc<BusStats>) {
    let (link, peer) = Link::pair("simulated RS485 bus", 64);
    (link, serve(config, peer))
}

async fn run(config: BusSimConfig, mut peer: Peer, stats: Arc<BusStats>) {
    let packs = config
        .slaves
        .iter()
        .filter(|a| (1..=rs485::MAX_ADDRESS).contains(*a))
        .map(|a| Pack::new(*a, &config.battery))
        .collect();
    let master_pack = Pack::new(0, &config.battery);
    let (out, mut delivery) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let chunks = peer.chunks.clone();
    tokio::spawn(async move {
        while let Some((at, bytes)) = delivery.recv().await {
            sleep_until(at).await;
            if chunks.send(bytes).await.is_err() {
                return;
            }
        }
    });
    let mut bus = Bus {
        packs,
        master_pack,
        stats,
        busy_until: Instant::now(),
        started: Instant::now(),
        answers: 0,
        out,
        config,
    };
    let mut assembler = Assembler::new(AssemblerConfig::rs485());
    let mut master = Master {
        next: Instant::now() + Duration::from_millis(50),
        address: 0,
        cycles: 0,
    };
    loop {
        let going = tokio::select! {
            bytes = peer.commands.recv() => match bytes {
                Some(bytes) => bus.hear_client(&bytes, &mut assembler).await,
                None => false,
            },
            _ = sleep_until(master.next) => bus.master_step(&mut master).await,
        };
        if !going {
            return;
        }
    }
}

/// The simulated master's schedule: when it talks next, the address it asks next (0: its
/// own broadcasts), and how many rounds it made.
struct Master {
    next: Instant,
    address: u8,
    cycles: u64,
}

impl Bus {
    /// jkmon talks: a collision when the wire is busy; each whole request gets its pack's
    /// answer. `false` once jkmon is gone.
    async fn hear_client(&mut self, bytes: &[u8], assembler: &mut Assembler) -> bool {
        let now = Instant::now();
        if now < self.busy_until {
            self.stats.collided(format!(
                "at {:.3} s jkmon sent {:02x?} {:.1} ms before the wire was free",
                self.now_s(),
                bytes,
                (self.busy_until - now).as_secs_f64() * 1000.0
            ));
        }
        self.busy_until = self.busy_until.max(Instant::now()) + wire_time(bytes.len());
        assembler.push(bytes);
        while let Some(item) = assembler.poll() {
            if let Item::Rs485Switch { write, .. } = item {
                if !self.hear_write(write).await {
                    return false;
                }
                continue;
            }
            let Item::Rs485Request { exchange, .. } = item else {
                continue;
            };
            self.stats
                .client_requests
                .lock()
                .unwrap()
                .push((exchange.address, exchange.register));
            let Some(register) = Rs485Register::from_address(exchange.register) else {
                continue;
            };
            if let Some(answer) = self.answer_of(exchange.address, register) {
                // the answer follows the request it belongs to: its own exchange
                let start = Instant::now().max(self.busy_until) + self.config.answer_latency;
                self.busy_until = start;
                sleep_until(start).await;
                if !self.transmit(answer).await {
                    return false;
                }
            }
        }
        true
    }

    /// A switch write from jkmon: the pack sets its switch (unless it refuses writes: then it
    /// answers and changes nothing, as a BMS that did not take it) and answers with the FC
    /// 0x10 echo. An absent or silenced pack says nothing.
    async fn hear_write(&mut self, write: crate::protocol::control::Rs485SwitchWrite) -> bool {
        let Some(on) = write.on else {
            return true; // an answer: not for the packs
        };
        let setting = crate::protocol::control::Setting {
            switch: write.switch,
            on,
        };
        self.stats
            .client_writes
            .lock()
            .unwrap()
            .push((write.address, setting.to_string()));
        if self.stats.silent.lock().unwrap().contains(&write.address) {
            return true;
        }
        let Some(pack) = self.packs.iter_mut().find(|p| p.address == write.address) else {
            return true;
        };
        if !pack.config.refuse_writes {
            pack.battery.switches.set(write.switch, on);
        }
        let Ok(answer) = crate::protocol::control::rs485_write_answer(write.address, write.switch)
        else {
            return true;
        };
        let start = Instant::now().max(self.busy_until) + self.config.answer_latency;
        self.busy_until = start;
        sleep_until(start).await;
        self.transmit(answer.to_vec()).await
    }

    /// The master's next step: its own broadcasts after a round (cell info, settings every
    /// 4th round), else a cell-info request to the next address and that pack's answer.
    /// `false` once jkmon is gone.
    async fn master_step(&mut self, m: &mut Master) -> bool {
        if !self.stats.master_enabled.load(Ordering::SeqCst) {
            m.next = Instant::now() + Duration::from_millis(50);
            m.address = 0;
            return true;
        }
        if m.address == 0 {
            m.cycles += 1;
            let now_s = self.now_s();
            let master = &mut self.master_pack;
            let mut frames = vec![master.answer(Rs485Register::CellInfo, now_s)];
            if m.cycles % 4 == 1 {
                frames.push(master.answer(Rs485Register::Settings, now_s));
            }
            // back to back: one transmission
            self.stats
                .frames
                .fetch_add(frames.len() as u64, Ordering::SeqCst);
            if !self.transmit(frames.concat()).await {
                return false;
            }
            m.address = 1;
            m.next = self.busy_until + self.config.master_gap;
            return true;
        }
        let address = m.address;
        m.address = if address >= rs485::MAX_ADDRESS {
            0
        } else {
            address + 1
        };
        self.stats.master_requests.fetch_add(1, Ordering::SeqCst);
        let request = rs485::request(address, Rs485Register::CellInfo).to_vec();
        if !self.transmit(request).await {
            return false;
        }
        match self.answer_of(address, Rs485Register::CellInfo) {
            Some(answer) => {
                let start = self.busy_until + self.config.answer_latency;
                self.busy_until = start;
                sleep_until(start).await;
                if !self.transmit(answer).await {
                    return false;
                }
                m.next = self.busy_until + self.config.master_gap;
            }
            // nobody answers: the master waits, the wire is idle meanwhile
            None => m.next = self.busy_until + self.config.absent_wait,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slave_answers_its_own_address_with_frame_and_tail() {
        let (mut link, stats) = connect(BusSimConfig::default());
        link.send(&rs485::request(2, Rs485Register::DeviceInfo))
            .await
            .unwrap();
        let mut assembler = Assembler::new(AssemblerConfig::rs485());
        let frame = loop {
            assembler.push(&link.recv().await.unwrap());
            if let Some(Item::Frame { frame, .. }) = assembler.poll() {
                break frame;
            }
        };
        assert_eq!(frame.rs485_address, Some(2));
        assert_eq!(frame.kind, crate::protocol::FrameType::DeviceInfo);
        assert_eq!(stats.client_requests(), vec![(2, 0x161C)]);
        assert_eq!(stats.collisions(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn talking_over_the_master_is_a_collision() {
        let (link, stats) = connect(BusSimConfig {
            slaves: vec![1],
            master: true,
            ..BusSimConfig::default()
        });
        let mut link = link;
        // wait for the master's request to 1, then talk at once, into its exchange
        let mut assembler = Assembler::new(AssemblerConfig::rs485());
        loop {
            assembler.push(&link.recv().await.unwrap());
            if let Some(Item::Rs485Request { exchange, .. }) = assembler.poll() {
                assert_eq!(exchange.address, 1);
                break;
            }
        }
        link.send(&rs485::request(1, Rs485Register::DeviceInfo))
            .await
            .unwrap();
        // the pack still answers (it cannot hear the collision); its device info is the event
        for _ in 0..100 {
            assembler.push(&link.recv().await.unwrap());
            if let Some(Item::Frame { frame, .. }) = assembler.poll() {
                if frame.kind == crate::protocol::FrameType::DeviceInfo {
                    break;
                }
            }
        }
        assert_eq!(stats.client_requests(), vec![(1, 0x161C)]);
        assert!(stats.collisions() >= 1, "{:?}", stats.collision_log());
    }
}
