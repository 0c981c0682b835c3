//! A simulated SmartESS Wi-Fi dongle with an SMG-II inverter behind it, speaking the real frames
//! on the loopback: it takes `set>server=<ip>:<port>;` on UDP, answers `rsp>server=1;`, connects
//! back over TCP and answers Eybond-wrapped Modbus reads from the model's register image. Faults
//! come by request number, so tests know which read met which (a dropped request, a bad CRC, an
//! exception, a closed connection); the grid can be cut to play a grid loss.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::inverter::modbus::{self, Function, Read, HEADER_LEN, MAX_COUNT};
use crate::inverter::registers::{Model, Values};

/// Faults by request number (every n-th request; 0 = never).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub drop_every: u32,
    pub bad_crc_every: u32,
    pub exception_every: u32,
    pub close_every: u32,
}

#[derive(Debug, Clone)]
pub struct SimDongleConfig {
    pub model: &'static Model,
    pub faults: Faults,
    /// Connect back after a `set>server` (false: a dongle on another network).
    pub dial_back: bool,
    /// Answer function 04 only (a firmware that refuses 03).
    pub input_registers_only: bool,
}

impl SimDongleConfig {
    pub fn new(model: &'static Model) -> SimDongleConfig {
        SimDongleConfig {
            model,
            faults: Faults::default(),
            dial_back: true,
            input_registers_only: false,
        }
    }
}

/// What the simulated dongle saw and did, for tests to compare with.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Announced(String),
    Connected(SocketAddr),
    Answered(Read),
    Dropped(Read),
    BadCrc(Read),
    Exception(Read, u8),
    Closed,
}

struct State {
    model: &'static Model,
    values: Values,
    grid: bool,
    requests: u32,
    events: Vec<Event>,
}

/// The running simulated dongle; dropped, it stops.
pub struct SimDongle {
    /// Where it takes `set>server` (the dongle's address and UDP port).
    pub udp_addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for SimDongle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SimDongle {
    /// Starts on a free loopback UDP port.
    pub async fn start(config: SimDongleConfig) -> std::io::Result<SimDongle> {
        let udp = UdpSocket::bind("127.0.0.1:0").await?;
        let udp_addr = udp.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            model: config.model,
            values: image_values(config.model, true),
            grid: true,
            requests: 0,
            events: Vec::new(),
        }));
        let task = tokio::spawn(run(config, udp, state.clone()));
        Ok(SimDongle {
            udp_addr,
            state,
            task,
        })
    }

    /// The inverter's values as its registers hold them now.
    pub fn values(&self) -> Values {
        self.state.lock().expect("sim dongle").values.clone()
    }

    /// Cuts the grid (the inverter goes off-grid) or brings it back.
    pub fn set_grid(&self, on: bool) {
        let mut s = self.state.lock().expect("sim dongle");
        s.grid = on;
        s.values = image_values(s.model, on);
    }

    pub fn events(&self) -> Vec<Event> {
        self.state.lock().expect("sim dongle").events.clone()
    }
}

/// Plausible values of `model` on mains or off-grid: only the names its map has.
pub fn image_values(model: &Model, grid: bool) -> Values {
    let all: [(&str, f64); 34] = [
        ("operating_mode", if grid { 2.0 } else { 3.0 }),
        ("grid_voltage_v", if grid { 230.3 } else { 0.0 }),
        ("grid_frequency_hz", if grid { 50.01 } else { 0.0 }),
        ("grid_power_w", if grid { 1163.0 } else { 0.0 }),
        ("grid_current_a", if grid { 5.1 } else { 0.0 }),
        ("output_voltage_v", 230.0),
        ("output_current_a", 5.4),
        ("output_frequency_hz", 50.0),
        ("output_power_w", 1148.0),
        ("output_apparent_power_va", 1200.0),
        ("load_pct", 23.0),
        ("battery_voltage_v", 52.8),
        ("battery_current_a", if grid { 42.5 } else { -21.7 }),
        ("battery_current_legacy_a", if grid { 42.5 } else { -21.7 }),
        ("battery_power_w", if grid { 2219.0 } else { -1146.0 }),
        ("battery_soc_pct", 65.0),
        ("pv1_voltage_v", 343.9),
        ("pv1_current_a", 6.7),
        ("pv1_power_w", 2294.0),
        ("pv2_voltage_v", 0.0),
        ("pv2_current_a", 0.0),
        ("pv2_power_w", 0.0),
        ("pv_power_w", 2294.0),
        ("pv_charging_power_w", 2200.0),
        ("pv_charging_current_a", 42.0),
        ("dcdc_temperature_c", 36.0),
        ("inverter_temperature_c", 40.0),
        ("pv_temperature_c", -3.0),
        ("clock_year", 2026.0),
        ("clock_month", 11.0),
        ("clock_day", 27.0),
        ("clock_hour", 13.0),
        ("pv_energy_today_kwh", 12.34),
        ("pv_energy_total_kwh", 98_765.43),
    ];
    let mut out: Values = all
        .into_iter()
        .filter(|(name, _)| model.registers.iter().any(|r| r.name == *name))
        .collect();
    for r in model.registers {
        out.entry(r.name).or_insert(0.0);
    }
    out
}

/// The register image of `values` under `model`'s map (0 where it has nothing).
fn image(model: &Model, values: &Values) -> std::collections::BTreeMap<u16, u16> {
    let mut regs = std::collections::BTreeMap::new();
    for r in model.registers {
        let raw = (values.get(r.name).copied().unwrap_or(0.0) / r.scale).round() as i64;
        if r.words == 2 {
            let v = raw as u32;
            regs.insert(r.address, (v >> 16) as u16);
            regs.insert(r.address + 1, v as u16);
        } else {
            regs.insert(r.address, raw as u16);
        }
    }
    regs
}

async fn run(config: SimDongleConfig, udp: UdpSocket, state: Arc<Mutex<State>>) {
    let mut buf = [0u8; 256];
    let mut link: Option<JoinHandle<()>> = None;
    loop {
        let Ok((n, from)) = udp.recv_from(&mut buf).await else {
            return;
        };
        let text = String::from_utf8_lossy(&buf[..n]).trim().to_string();
        let Some(target) = text
            .strip_prefix("set>server=")
            .map(|t| t.trim_end_matches(';'))
            .and_then(|t| t.parse::<SocketAddr>().ok())
        else {
            continue;
        };
        state
            .lock()
            .expect("sim dongle")
            .events
            .push(Event::Announced(text.clone()));
        let _ = udp.send_to(b"rsp>server=1;", from).await;
        if !config.dial_back {
            continue;
        }
        // a new announcement while connected: the new address replaces the old link
        if let Some(old) = link.take() {
            old.abort();
        }
        link = Some(tokio::spawn(serve(config.clone(), target, state.clone())));
    }
}

/// Connects to `target` (retrying a little while it refuses) and answers its reads.
async fn serve(config: SimDongleConfig, target: SocketAddr, state: Arc<Mutex<State>>) {
    let mut conn = None;
    for _ in 0..100 {
        match TcpStream::connect(target).await {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let Some(mut conn) = conn else { return };
    state
        .lock()
        .expect("sim dongle")
        .events
        .push(Event::Connected(target));
    loop {
        let mut header = [0u8; HEADER_LEN];
        if conn.read_exact(&mut header).await.is_err() {
            return;
        }
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let mut frame = header.to_vec();
        frame.resize(HEADER_LEN + len, 0);
        if conn.read_exact(&mut frame[HEADER_LEN..]).await.is_err() {
            return;
        }
        // not a well-formed read: a real inverter stays silent
        let Some((tid, read)) = modbus::parse_eybond_request(&frame) else {
            continue;
        };
        let answer = {
            let mut s = state.lock().expect("sim dongle");
            s.requests += 1;
            let n = s.requests;
            let every = |k: u32| k != 0 && n.is_multiple_of(k);
            let f = config.faults;
            if every(f.close_every) {
                s.events.push(Event::Closed);
                None
            } else if every(f.drop_every) {
                s.events.push(Event::Dropped(read));
                Some(Vec::new())
            } else if every(f.exception_every) {
                s.events.push(Event::Exception(read, 0x02));
                Some(modbus::rtu_exception(&read, 0x02))
            } else if (read.function == Function::Holding) == config.input_registers_only {
                s.events.push(Event::Exception(read, 0x01));
                Some(modbus::rtu_exception(&read, 0x01))
            } else if read.count == 0 || read.count > MAX_COUNT {
                s.events.push(Event::Exception(read, 0x03));
                Some(modbus::rtu_exception(&read, 0x03))
            } else {
                let image = image(config.model, &s.values);
                let regs: Vec<u16> = (read.start..read.start + read.count)
                    .map(|a| image.get(&a).copied().unwrap_or(0))
                    .collect();
                let mut rtu = modbus::rtu_answer(&read, &regs);
                if every(f.bad_crc_every) {
                    let last = rtu.len() - 1;
                    rtu[last] ^= 0x5A;
                    s.events.push(Event::BadCrc(read));
                } else {
                    s.events.push(Event::Answered(read));
                }
                Some(rtu)
            }
        };
        match answer {
            None => return,
            Some(rtu) if rtu.is_empty() => continue,
            Some(rtu) => {
                if conn
                    .write_all(&modbus::eybond_wrap(tid, &rtu))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
