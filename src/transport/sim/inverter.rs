//! A simulated Easun / ISolar SMG-II inverter: its register image and how it answers a Modbus
//! read, with faults by request number so tests know which read met which (a dropped request, a
//! bad CRC, an exception, a closed connection). The links that carry the reads are beside it:
//! the SmartESS dongle's reverse connection ([`super::dongle`]) and plain Modbus RTU and TCP
//! ([`super::modbus`]).
//!
//! Its values stand still (tests compare them register for register) or, for `run --demo`,
//! follow the day: PV with the sun, a wandering load, mains when the sun does not cover it.

use std::f64::consts::PI;
use std::sync::{Arc, Mutex};

use chrono::{Local, Timelike};

use crate::inverter::modbus::{self, Function, Read, MAX_COUNT};
use crate::inverter::registers::{Model, Values};
use crate::transport::sim::Rng;

/// Faults by request number (every n-th request; 0 = never).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub drop_every: u32,
    pub bad_crc_every: u32,
    pub exception_every: u32,
    pub close_every: u32,
}

/// The simulated inverter's settings.
#[derive(Debug, Clone)]
pub struct SimInverterConfig {
    pub model: &'static Model,
    pub faults: Faults,
    /// Answer function 04 only (a firmware that refuses 03).
    pub input_registers_only: bool,
    /// `Some(seed)`: values that follow the local time of day; `None`: fixed values.
    pub day: Option<u64>,
    /// The demo's shared physics (before `day`): the flow the simulated BMS also follows, and
    /// energy registers that integrate the PV power ([`super::plant`]).
    pub plant: Option<super::plant::Plant>,
}

impl SimInverterConfig {
    pub fn new(model: &'static Model) -> SimInverterConfig {
        SimInverterConfig {
            model,
            faults: Faults::default(),
            input_registers_only: false,
            day: None,
            plant: None,
        }
    }
}

/// What the simulated inverter saw and did, for tests to compare with.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Announced(String),
    Connected(std::net::SocketAddr),
    Answered(Read),
    Dropped(Read),
    BadCrc(Read),
    Exception(Read, u8),
    Closed,
}

/// What to do with one request.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// Send this RTU answer (or exception).
    Rtu(Vec<u8>),
    /// Say nothing (a dropped request).
    Silent,
    /// Close the connection.
    Close,
}

struct State {
    config: SimInverterConfig,
    values: Values,
    grid: bool,
    /// Answers nothing (the inverter is off while its dongle stays up).
    silent: bool,
    /// The start of a block answered with an exception every time (a gateway that refuses
    /// part of the map).
    refused: Option<u16>,
    requests: u32,
    events: Vec<Event>,
    rng: Option<Rng>,
}

/// The inverter, shared by the link that serves it and the test that watches it.
#[derive(Clone)]
pub struct SimInverter {
    state: Arc<Mutex<State>>,
}

impl SimInverter {
    pub fn new(config: SimInverterConfig) -> SimInverter {
        let rng = config
            .day
            .or(config.plant.as_ref().map(|_| 0))
            .map(|seed| Rng::new(seed ^ 0x1a7e_47e2));
        let values = image_values(config.model, true);
        let mut s = State {
            config,
            values,
            grid: true,
            silent: false,
            refused: None,
            requests: 0,
            events: Vec::new(),
            rng,
        };
        s.follow_the_day();
        SimInverter {
            state: Arc::new(Mutex::new(s)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn model(&self) -> &'static Model {
        self.lock().config.model
    }

    /// The inverter's values as its registers hold them now.
    pub fn values(&self) -> Values {
        self.lock().values.clone()
    }

    /// Cuts the grid (the inverter goes off-grid) or brings it back.
    pub fn set_grid(&self, on: bool) {
        let mut s = self.lock();
        s.grid = on;
        s.values = image_values(s.config.model, on);
        s.follow_the_day();
    }

    /// Sets one value as the registers hold it (until the grid changes or the day moves on).
    pub fn set_value(&self, name: &'static str, value: f64) {
        self.lock().values.insert(name, value);
    }

    /// Answers reads of the block starting at `start` with an exception (illegal address), as
    /// a Modbus gateway that refuses part of the map does; `None` answers them again.
    pub fn refuse_block(&self, start: Option<u16>) {
        self.lock().refused = start;
    }

    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    /// Stops answering (the inverter switched off behind a live dongle) or starts again.
    pub fn set_silent(&self, silent: bool) {
        self.lock().silent = silent;
    }

    pub(crate) fn record(&self, event: Event) {
        self.lock().events.push(event);
    }

    /// The answer to `read`, faults included.
    pub fn answer(&self, read: &Read) -> Reply {
        let mut s = self.lock();
        s.requests += 1;
        let n = s.requests;
        let every = |k: u32| k != 0 && n.is_multiple_of(k);
        let f = s.config.faults;
        if every(f.close_every) {
            s.events.push(Event::Closed);
            return Reply::Close;
        }
        if every(f.drop_every) || s.silent {
            s.events.push(Event::Dropped(*read));
            return Reply::Silent;
        }
        let exception = if every(f.exception_every) || s.refused == Some(read.start) {
            Some(0x02)
        } else if (read.function == Function::Holding) == s.config.input_registers_only {
            Some(0x01)
        } else if read.count == 0 || read.count > MAX_COUNT {
            Some(0x03)
        } else {
            None
        };
        if let Some(code) = exception {
            s.events.push(Event::Exception(*read, code));
            return Reply::Rtu(modbus::rtu_exception(read, code));
        }
        // the day moves on between polls, not within one: one read of the first block
        if read.start == crate::inverter::registers::blocks(s.config.model)[0].start {
            s.follow_the_day();
        }
        let image = image(s.config.model, &s.values);
        let regs: Vec<u16> = (read.start..read.start + read.count)
            .map(|a| image.get(&a).copied().unwrap_or(0))
            .collect();
        let mut rtu = modbus::rtu_answer(read, &regs);
        if every(f.bad_crc_every) {
            let last = rtu.len() - 1;
            rtu[last] ^= 0x5A;
            s.events.push(Event::BadCrc(*read));
        } else {
            s.events.push(Event::Answered(*read));
        }
        Reply::Rtu(rtu)
    }
}

impl State {
    /// With a plant or `day` set, the values of this moment of the local day.
    fn follow_the_day(&mut self) {
        if let (Some(plant), Some(rng)) = (&self.config.plant, self.rng.as_mut()) {
            let now = Local::now();
            let model = self.config.model;
            let mut values = image_values(model, self.grid);
            for (name, v) in plant_values(plant, now, rng) {
                if let Some(slot) = values.get_mut(name) {
                    *slot = v;
                }
            }
            self.values = values;
            return;
        }
        let Some(rng) = self.rng.as_mut() else {
            return;
        };
        let hour = f64::from(Local::now().num_seconds_from_midnight()) / 3600.0;
        self.values = values_at(self.config.model, hour, self.grid, rng);
    }
}

/// The values of `model` at `hour` (0–24, local) of the demo's day.
pub fn values_at(model: &Model, hour: f64, grid: bool, rng: &mut Rng) -> Values {
    let mut values = image_values(model, grid);
    for (name, v) in day_values(hour, grid, rng) {
        if let Some(slot) = values.get_mut(name) {
            *slot = v;
        }
    }
    values
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

/// The values at `hour` (0–24, local): PV follows the sun, the load wanders, the inverter runs
/// off-grid while the sun covers the load (or the grid is cut) and on mains otherwise.
fn day_values(hour: f64, grid: bool, rng: &mut Rng) -> Vec<(&'static str, f64)> {
    let sun = ((hour - 6.0) / 12.0 * PI).sin().max(0.0);
    let pv_w = (3_000.0 * sun * (0.85 + 0.15 * rng.unit().abs())).round();
    let evening = if (18.0..22.0).contains(&hour) {
        600.0
    } else {
        0.0
    };
    let load_w = (350.0 + 250.0 * rng.unit().abs() + evening).round();
    let mains = grid && pv_w < load_w;
    let grid_v = if grid { 228.0 + 4.0 * rng.unit() } else { 0.0 };
    let grid_w = if mains { load_w - pv_w } else { 0.0 };
    let out_v = 230.0 + rng.unit();
    let battery_v = 52.4 + 0.6 * sun + 0.1 * rng.unit();
    let battery_w = if mains { 0.0 } else { pv_w - load_w };
    let pv_v = if pv_w > 0.0 { 380.0 + 20.0 * sun } else { 0.0 };
    vec![
        ("operating_mode", if mains { 2.0 } else { 3.0 }),
        ("grid_voltage_v", grid_v),
        ("grid_frequency_hz", if grid { 50.0 } else { 0.0 }),
        ("grid_power_w", grid_w),
        ("grid_current_a", if grid { grid_w / grid_v } else { 0.0 }),
        ("output_voltage_v", out_v),
        ("output_frequency_hz", 50.0 + 0.02 * rng.unit()),
        ("output_power_w", load_w),
        ("output_apparent_power_va", (load_w * 1.05).round()),
        ("output_current_a", load_w / out_v),
        ("load_pct", (load_w / 60.0).round()),
        ("battery_voltage_v", battery_v),
        ("battery_current_a", battery_w / battery_v),
        ("battery_current_legacy_a", battery_w / battery_v),
        ("battery_power_w", battery_w),
        ("battery_soc_pct", (60.0 + 30.0 * sun).round()),
        ("pv1_voltage_v", pv_v),
        ("pv1_power_w", pv_w),
        ("pv1_current_a", if pv_v > 0.0 { pv_w / pv_v } else { 0.0 }),
        ("pv_power_w", pv_w),
        ("inverter_temperature_c", (27.0 + 5.0 * sun).round()),
        ("dcdc_temperature_c", (25.0 + 5.0 * sun).round()),
    ]
}

/// The registers at `now` as the plant's flow makes them: the same PV, load, grid and battery
/// the simulated BMS follows, the energy registers integrating the PV power, the clock.
fn plant_values(
    plant: &super::plant::Plant,
    now: chrono::DateTime<Local>,
    rng: &mut Rng,
) -> Vec<(&'static str, f64)> {
    use chrono::Datelike;
    let f = plant.flow_at(now);
    let grid_v = 228.0 + 4.0 * rng.unit();
    let out_v = 230.0 + rng.unit();
    let pv_v = if f.pv_w > 0.0 {
        380.0 + 20.0 * (f.pv_w / 3_000.0)
    } else {
        0.0
    };
    let battery_a = f.battery_w / f.battery_v.max(1.0);
    vec![
        ("operating_mode", f64::from(f.mode)),
        ("grid_voltage_v", grid_v),
        ("grid_frequency_hz", 50.0),
        ("grid_power_w", f.grid_w()),
        ("grid_current_a", f.grid_w() / grid_v),
        ("output_voltage_v", out_v),
        ("output_frequency_hz", 50.0 + 0.02 * rng.unit()),
        ("output_power_w", f.load_w),
        ("output_apparent_power_va", (f.load_w * 1.05).round()),
        ("output_current_a", f.load_w / out_v),
        ("load_pct", (f.load_w / 110.0).round()),
        ("battery_voltage_v", f.battery_v),
        ("battery_current_a", battery_a),
        ("battery_current_legacy_a", battery_a),
        ("battery_power_w", f.battery_w),
        ("battery_soc_pct", (f.soc * 100.0).round()),
        ("pv1_voltage_v", pv_v),
        ("pv1_power_w", f.pv_w),
        (
            "pv1_current_a",
            if pv_v > 0.0 { f.pv_w / pv_v } else { 0.0 },
        ),
        ("pv_power_w", f.pv_w),
        ("pv_charging_power_w", f.battery_w.max(0.0).min(f.pv_w)),
        (
            "pv_charging_current_a",
            f.battery_w.max(0.0).min(f.pv_w) / f.battery_v.max(1.0),
        ),
        ("inverter_temperature_c", (27.0 + f.pv_w / 600.0).round()),
        ("dcdc_temperature_c", (25.0 + f.pv_w / 600.0).round()),
        ("pv_energy_today_kwh", plant.pv_today_kwh(now)),
        ("pv_energy_total_kwh", plant.pv_total_kwh(now)),
        ("clock_year", f64::from(now.year())),
        ("clock_month", f64::from(now.month())),
        ("clock_day", f64::from(now.day())),
        ("clock_hour", f64::from(now.hour())),
        ("clock_minute", f64::from(now.minute())),
        ("clock_second", f64::from(now.second())),
    ]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inverter::registers::SMG_II_11K;

    #[test]
    fn the_demo_day_runs_on_mains_at_night_and_off_grid_at_noon() {
        let mut rng = Rng::new(7);
        let mode = |v: &[(&str, f64)]| v.iter().find(|(n, _)| *n == "operating_mode").unwrap().1;
        let pv = |v: &[(&str, f64)]| v.iter().find(|(n, _)| *n == "pv_power_w").unwrap().1;
        let night = day_values(1.0, true, &mut rng);
        assert_eq!((mode(&night), pv(&night)), (2.0, 0.0));
        let noon = day_values(12.0, true, &mut rng);
        assert_eq!(mode(&noon), 3.0);
        assert!(pv(&noon) > 2_000.0);
        let cut = day_values(1.0, false, &mut rng);
        assert_eq!(mode(&cut), 3.0, "no grid: off-grid even at night");
    }

    #[test]
    fn faults_come_by_request_number() {
        let mut config = SimInverterConfig::new(&SMG_II_11K);
        config.faults.drop_every = 2;
        config.faults.close_every = 3;
        let inverter = SimInverter::new(config);
        let read = Read {
            unit: 1,
            function: Function::Holding,
            start: 201,
            count: 3,
        };
        assert!(matches!(inverter.answer(&read), Reply::Rtu(_)));
        assert_eq!(inverter.answer(&read), Reply::Silent);
        assert_eq!(inverter.answer(&read), Reply::Close);
    }
}
