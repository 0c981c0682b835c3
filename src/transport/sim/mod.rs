//! A simulated JK BMS behind the same [`Link`] as a real one. It behaves like a JK-PB on BLE:
//! it answers `0x97` with a device-info frame and `0x96` with a settings frame (each followed by
//! the `C8` ack), and once it has seen both it pushes a cell-info frame every
//! [`SimConfig::frame_interval`] (0.5 s by default, as real units do). Every frame is cut the way
//! real modules cut them — 20-byte MTU pieces, 128 + 22 halves, 150 + 150, irregular pieces —
//! with an occasional `AT\r\n`. The numbers come from [`model::SimBattery`].

pub mod bus;
pub mod dongle;
pub mod inverter;
pub mod modbus;
pub mod model;
pub mod plant;
pub mod serial;

use std::time::Duration;

use tokio::time::{self, Instant, MissedTickBehavior};

use super::{Link, Peer};
use crate::protocol::cell_info::{encode_jk02, JK02_24S, JK02_32S};
use crate::protocol::command::{self, CMD_ACK, CMD_CELL_INFO, CMD_DEVICE_INFO};
use crate::protocol::control::{self, Switch};
use crate::protocol::device_info::{self, DeviceInfo, Passcodes, Secret};
use crate::protocol::settings::{self, Settings};
use crate::protocol::Variant;
pub use model::{Rng, SimBattery};
pub use serial::connect as connect_serial;

/// How the simulator cuts frames into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragmentation {
    /// ATT MTU 23: 20-byte notifications.
    Mtu20,
    /// JK-PB: the MCU sends 150-byte halves, the module splits each at 128.
    PbHalves,
    /// A large MTU: 150 + 150.
    Halves,
    /// JK-B5A24S: irregular 60-80-byte pieces.
    Irregular,
    /// A different pattern for each frame, chosen by the simulator's random generator.
    Mixed,
}

impl std::str::FromStr for Fragmentation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mtu20" => Ok(Fragmentation::Mtu20),
            "pb" => Ok(Fragmentation::PbHalves),
            "halves" => Ok(Fragmentation::Halves),
            "irregular" => Ok(Fragmentation::Irregular),
            "mixed" => Ok(Fragmentation::Mixed),
            other => Err(format!(
                "\"{other}\" is not a fragmentation (expected mixed, mtu20, pb, halves or irregular)"
            )),
        }
    }
}

/// Settings of the simulated BMS (`JK_SIM_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// 4-24 cells.
    pub cells: u8,
    pub capacity_ah: u32,
    /// `Jk02_32s` (default) or `Jk02_24s`.
    pub variant: Variant,
    pub seed: u64,
    pub frame_interval: Duration,
    /// One charge / discharge cycle of the current profile.
    pub profile_period: Duration,
    /// `JK_SIM_PERIOD_SEC` was set: the owner wants this cycle, in `run --demo` too (where the
    /// battery otherwise follows the simulated inverter's flow, [`plant`]).
    pub profile_chosen: bool,
    pub fragmentation: Fragmentation,
    /// Send `AT\r\n` noise now and then.
    pub at_noise: bool,
    /// Wired roles: every n-th answer is corrupted (0 = never).
    pub corrupt_every: u32,
    /// Acknowledge switch writes and change nothing (a BMS that refuses them).
    pub refuse_writes: bool,
    /// The demo's shared physics: the current follows the inverter's flow rather than the
    /// profile ([`plant`]).
    pub plant: Option<plant::Plant>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            cells: 16,
            capacity_ah: 280,
            variant: Variant::Jk02_32s,
            seed: 1,
            frame_interval: Duration::from_millis(500),
            profile_period: Duration::from_secs(600),
            profile_chosen: false,
            fragmentation: Fragmentation::Mixed,
            at_noise: true,
            corrupt_every: 0,
            refuse_writes: false,
            plant: None,
        }
    }
}

/// Delay between the settings frame and the first cell-info frame (about 0.45 s on real units).
const FIRST_CELL_INFO_DELAY: Duration = Duration::from_millis(450);

/// Connects to a new simulated BMS: spawns its task on the current tokio runtime. The task ends
/// when the link is dropped.
pub fn connect(config: SimConfig) -> Link {
    let (link, peer) = Link::pair("simulated BMS", 64);
    tokio::spawn(run(config, peer));
    link
}

fn device_info(config: &SimConfig) -> DeviceInfo {
    let (model, hw, sw) = match config.variant {
        Variant::Jk02_24s => ("JK-B2A24S20P", "10.XG", "10.08"),
        _ => ("JK_PB2A16S20P", "15A", "15.38"),
    };
    DeviceInfo {
        model: model.into(),
        hardware_version: hw.into(),
        software_version: sw.into(),
        uptime_s: Some(0),
        power_on_count: Some(1),
        device_name: "jkmon-sim".into(),
        manufacturing_date: "260101".into(),
        // one per seed, so that several simulated BMSs are several devices
        serial_number: format!("SIM{:07}", config.seed % 10_000_000),
        user_data: "simulated".into(),
        passcodes: Passcodes {
            device: Secret::new("1234"),
            passcode: Secret::new("0000"),
            setup: Secret::new("123456"),
        },
    }
}

fn settings(config: &SimConfig, switches: &model::SimSwitches) -> Settings {
    Settings {
        variant: Some(config.variant),
        cell_count: config.cells,
        cell_uvp_mv: Some(2_600),
        cell_uvp_recovery_mv: Some(2_800),
        cell_ovp_mv: Some(3_650),
        cell_ovp_recovery_mv: Some(3_550),
        balance_trigger_mv: Some(5),
        power_off_mv: Some(2_500),
        max_charge_current_ma: Some(config.capacity_ah.saturating_mul(500)),
        max_discharge_current_ma: Some(config.capacity_ah.saturating_mul(1000)),
        max_balance_current_ma: Some(2_000),
        charge_switch: Some(switches.charging),
        discharge_switch: Some(switches.discharging),
        balancer_switch: Some(switches.balancer),
        heating_switch: Some(switches.heater),
        nominal_capacity_mah: Some(config.capacity_ah.saturating_mul(1000)),
        balance_start_mv: Some(3_400),
        device_address: Some(0),
        precharge_time_s: Some(5),
        smart_sleep_h: Some(24),
        ..Settings::default()
    }
}

async fn run(config: SimConfig, mut peer: Peer) {
    let mut rng = Rng::new(config.seed);
    let mut battery = SimBattery::new(&config, &mut rng);
    let started = Instant::now();
    let mut counter: u8 = 0;
    let mut seen_device_info_request = false;
    let mut streaming = false;
    let mut ticker = time::interval_at(
        Instant::now() + Duration::from_secs(3600),
        config.frame_interval,
    );
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ack = ack_frame();
    loop {
        tokio::select! {
            cmd = peer.commands.recv() => {
                let Some(cmd) = cmd else { return };
                let Ok(cmd) = command::parse(&cmd) else {
                    tracing::debug!("simulated BMS ignores a malformed command");
                    continue;
                };
                let mut reply = match cmd.command {
                    CMD_DEVICE_INFO => {
                        seen_device_info_request = true;
                        let mut info = device_info(&config);
                        info.uptime_s = Some(battery.uptime_s());
                        device_info::encode(&info, counter).to_vec()
                    }
                    CMD_CELL_INFO => {
                        let frame = settings::encode_jk02(&settings(&config, &battery.switches), counter)
                            .to_vec();
                        if seen_device_info_request && !streaming {
                            // like newer firmware: no cell stream before 0x97 was seen
                            streaming = true;
                            ticker.reset_at(Instant::now() + FIRST_CELL_INFO_DELAY);
                        }
                        frame
                    }
                    // a switch write: acknowledged; the next frames show it (unless refused)
                    register if cmd.length > 0 => {
                        let switch = Switch::ALL.into_iter().find(|s| {
                            control::ble_register(config.variant, *s) == Ok(register)
                        });
                        match switch {
                            Some(switch) if !config.refuse_writes => {
                                battery.switches.set(switch, cmd.value != 0);
                            }
                            _ => {}
                        }
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
                reply.extend_from_slice(&ack);
                if !send_fragmented(&peer, &reply, &config, &mut rng).await {
                    return;
                }
            }
            _ = ticker.tick(), if streaming => {
                let now_s = started.elapsed().as_secs_f64();
                battery.step(now_s, &mut rng);
                counter = counter.wrapping_add(1);
                let info = battery.cell_info(counter);
                let layout = if config.variant == Variant::Jk02_24s { &JK02_24S } else { &JK02_32S };
                let frame = encode_jk02(&info, layout);
                if !send_fragmented(&peer, &frame, &config, &mut rng).await {
                    return;
                }
            }
        }
    }
}

fn ack_frame() -> [u8; 20] {
    let mut ack = command::request(CMD_ACK);
    ack[5] = 1;
    ack[6] = 1;
    ack[19] = crate::protocol::checksum::sum8(&ack[..19]);
    ack
}

/// Splits `bytes` like a BLE module would and sends the pieces; `false` when jkmon hung up.
async fn send_fragmented(peer: &Peer, bytes: &[u8], config: &SimConfig, rng: &mut Rng) -> bool {
    let pattern = match config.fragmentation {
        Fragmentation::Mixed => match rng.below(4) {
            0 => Fragmentation::Mtu20,
            1 => Fragmentation::PbHalves,
            2 => Fragmentation::Halves,
            _ => Fragmentation::Irregular,
        },
        fixed => fixed,
    };
    let mut chunks = split(bytes, pattern, rng);
    if config.at_noise && rng.below(5) == 0 {
        // the module's AT\r\n: alone or glued in front of the frame
        if rng.below(2) == 0 {
            chunks.insert(0, b"AT\r\n".to_vec());
        } else if let Some(first) = chunks.first_mut() {
            first.splice(0..0, *b"AT\r\n");
        }
    }
    for chunk in chunks {
        if peer.chunks.send(chunk).await.is_err() {
            return false;
        }
    }
    true
}

/// Cuts bytes into notification-sized chunks.
pub fn split(bytes: &[u8], pattern: Fragmentation, rng: &mut Rng) -> Vec<Vec<u8>> {
    match pattern {
        Fragmentation::Mtu20 | Fragmentation::Mixed => {
            bytes.chunks(20).map(<[u8]>::to_vec).collect()
        }
        Fragmentation::PbHalves => bytes
            .chunks(150)
            .flat_map(|half| half.chunks(128).map(<[u8]>::to_vec).collect::<Vec<_>>())
            .collect(),
        Fragmentation::Halves => bytes.chunks(150).map(<[u8]>::to_vec).collect(),
        Fragmentation::Irregular => {
            let mut out = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                let n = (60 + rng.below(21) as usize).min(rest.len());
                out.push(rest[..n].to_vec());
                rest = &rest[n..];
            }
            out
        }
    }
}

/// Connects a fresh simulated BMS each time (the battery model restarts from its seed).
pub struct SimConnector(pub SimConfig);

impl super::Connector for SimConnector {
    fn connect(
        &self,
        _deadline: Instant,
    ) -> futures_util::future::BoxFuture<'_, Result<Link, super::TransportError>> {
        Box::pin(async move { Ok(connect(self.0.clone())) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::control::Setting;
    use crate::protocol::{Assembler, Decoded, Settings, StreamDecoder};

    /// Sends `bytes`, then asks for settings (0x96) and returns the first settings frame and
    /// the next cell info after it.
    async fn after(link: &mut Link, bytes: &[u8]) -> (Settings, crate::protocol::CellInfo) {
        link.send(bytes).await.unwrap();
        link.send(&command::request(CMD_CELL_INFO)).await.unwrap();
        let mut assembler = Assembler::new(crate::protocol::AssemblerConfig::ble());
        let mut decoder = StreamDecoder::new(crate::protocol::VariantChoice::Auto);
        let mut settings = None;
        for _ in 0..200 {
            let chunk = link.recv().await.expect("the simulator answers");
            assembler.push(&chunk);
            while let Some(item) = assembler.poll() {
                match decoder.decode(&item) {
                    Ok(Decoded::Settings(s)) => settings = Some(s),
                    Ok(Decoded::CellInfo(c)) if settings.is_some() => {
                        return (settings.unwrap(), c);
                    }
                    _ => {}
                }
            }
        }
        panic!("no settings and cell info after the write");
    }

    #[tokio::test(start_paused = true)]
    async fn the_simulator_plays_the_switches_and_can_refuse_them() {
        let set = |s: &str| s.parse::<Setting>().unwrap();
        let write = |s: &str| control::ble_write(Variant::Jk02_32s, set(s)).unwrap();
        let mut link = connect(SimConfig::default());
        link.send(&command::request(CMD_DEVICE_INFO)).await.unwrap();
        let (s, c) = after(&mut link, &write("charging=off")).await;
        assert_eq!(s.charge_switch, Some(false));
        assert_eq!(c.charging_enabled, Some(false));
        assert!(
            c.current_ma.unwrap_or(0) <= 0,
            "no charging through an open MOSFET"
        );
        let (s, c) = after(&mut link, &write("heater=on")).await;
        assert_eq!((s.heating_switch, c.heating), (Some(true), Some(true)));
        assert_eq!(s.charge_switch, Some(false), "the others stay");
        let (s, _) = after(&mut link, &write("charging=on")).await;
        assert_eq!(s.charge_switch, Some(true));
        // a BMS that acknowledges and changes nothing
        let mut refusing = connect(SimConfig {
            refuse_writes: true,
            ..SimConfig::default()
        });
        refusing
            .send(&command::request(CMD_DEVICE_INFO))
            .await
            .unwrap();
        let (s, _) = after(&mut refusing, &write("discharging=off")).await;
        assert_eq!(
            control::confirmation(&s, set("discharging=off")),
            control::Confirmation::Refused
        );
    }

    #[test]
    fn splits_like_real_modules() {
        let mut rng = Rng::new(7);
        let bytes = [0u8; 300];
        let sizes = |p| {
            split(&bytes, p, &mut Rng::new(7))
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(Fragmentation::PbHalves), vec![128, 22, 128, 22]);
        assert_eq!(sizes(Fragmentation::Halves), vec![150, 150]);
        assert_eq!(sizes(Fragmentation::Mtu20), vec![20; 15]);
        let irregular = split(&bytes, Fragmentation::Irregular, &mut rng);
        assert_eq!(irregular.iter().map(Vec::len).sum::<usize>(), 300);
        assert!(irregular[..irregular.len() - 1]
            .iter()
            .all(|c| (60..=80).contains(&c.len())));
    }

    #[test]
    fn the_ack_is_the_published_c8_frame() {
        let mut expected = [0u8; 20];
        expected[..7].copy_from_slice(&[0xAA, 0x55, 0x90, 0xEB, 0xC8, 0x01, 0x01]);
        expected[19] = 0x44;
        assert_eq!(ack_frame(), expected);
    }
}
