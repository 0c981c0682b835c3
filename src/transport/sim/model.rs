//! The battery behind the simulated BMS: a LiFePO4 pack with a configurable cell count and
//! capacity, a slow charge / discharge current profile, cells that drift apart and a balancer
//! that pulls them together, temperatures that follow the current, and a little noise.

use std::f64::consts::TAU;

use super::SimConfig;
use crate::protocol::alarms::{AlarmTable, Alarms};
use crate::protocol::cell_info::{
    Balancing, CellInfo, ChargeStatus, DryContacts, Extended, Temperatures,
};
use crate::protocol::Variant;

/// The simulators' random numbers: fastrand's generator with a seed, so that a seed replays
/// the same battery (no need for cryptographic quality).
#[derive(Debug, Clone)]
pub struct Rng(fastrand::Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.u64(..)
    }
    /// Uniform in `0..n` (`0` when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.u64(..n.max(1))
    }
    /// Uniform in `[-1, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0.f64() * 2.0 - 1.0
    }
}

/// Open-circuit voltage of a LiFePO4 cell (mV) over state of charge (0-1): flat in the middle,
/// steep at both ends, as real cells are.
const OCV: [(f64, f64); 8] = [
    (0.00, 2_800.0),
    (0.05, 3_150.0),
    (0.10, 3_200.0),
    (0.30, 3_260.0),
    (0.70, 3_300.0),
    (0.90, 3_330.0),
    (0.98, 3_400.0),
    (1.00, 3_500.0),
];

fn ocv_mv(soc: f64) -> f64 {
    let soc = soc.clamp(0.0, 1.0);
    for w in OCV.windows(2) {
        let ((s0, v0), (s1, v1)) = (w[0], w[1]);
        if soc <= s1 {
            return v0 + (v1 - v0) * (soc - s0) / (s1 - s0);
        }
    }
    OCV[OCV.len() - 1].1
}

/// Internal resistance per cell, Ω (a 280 Ah prismatic cell is about 0.2 mΩ; with busbars more).
const CELL_IR_OHM: f64 = 0.000_8;
const BALANCE_CURRENT_MA: i32 = 600;
const BALANCE_START_MV: f64 = 3_350.0;
const BALANCE_TRIGGER_MV: f64 = 5.0;

/// The simulated BMS's switches, as the writes left them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimSwitches {
    pub charging: bool,
    pub discharging: bool,
    pub balancer: bool,
    pub heater: bool,
}

impl Default for SimSwitches {
    fn default() -> Self {
        SimSwitches {
            charging: true,
            discharging: true,
            balancer: true,
            heater: false,
        }
    }
}

impl SimSwitches {
    /// Sets `switch`; `false` when it already was so.
    pub fn set(&mut self, switch: crate::protocol::control::Switch, on: bool) -> bool {
        use crate::protocol::control::Switch;
        let slot = match switch {
            Switch::Charging => &mut self.charging,
            Switch::Discharging => &mut self.discharging,
            Switch::Balancer => &mut self.balancer,
            Switch::Heater => &mut self.heater,
        };
        std::mem::replace(slot, on) != on
    }
}

pub struct SimBattery {
    /// What the writes set; the current, the balancer and the flags follow them.
    pub switches: SimSwitches,
    variant: Variant,
    capacity_ah: f64,
    period_s: f64,
    soc: f64,
    /// Each cell's SOC offset from the pack (imbalance), which the balancer shrinks.
    cell_offsets: Vec<f64>,
    wire_resistance_mohm: Vec<u16>,
    current_a: f64,
    last_s: f64,
    throughput_ah: f64,
    uptime_s: f64,
    balancing: bool,
    mos_c: f64,
    /// The demo's shared physics, where the current comes from.
    plant: Option<super::plant::Plant>,
    /// What the cycle capacity counted before this start (Ah).
    cycle_base_ah: f64,
}

/// The most current a simulated pack carries (A): the plant's 3 kW of PV less the base load,
/// at the lowest voltage. Used as the rate of the cycle-capacity base, so that a restart never
/// counts less than the run before it could have.
const MAX_CURRENT_A: f64 = 60.0;

/// The cycle capacity a simulated pack of the demo had counted when it starts at `now`: the
/// most it could have counted since [`CYCLE_EPOCH`], so it never goes back across restarts.
fn cycle_base_ah(now: chrono::DateTime<chrono::Local>) -> f64 {
    let epoch = chrono::NaiveDate::from_ymd_opt(CYCLE_EPOCH.0, CYCLE_EPOCH.1, CYCLE_EPOCH.2)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    let hours = (now.naive_local() - epoch).num_seconds().max(0) as f64 / 3600.0;
    MAX_CURRENT_A * hours
}

/// Where the demo's cycle counters start (the u32 mAh field holds 8 years from here).
const CYCLE_EPOCH: (i32, u32, u32) = (2026, 1, 1);

impl SimBattery {
    pub fn new(config: &SimConfig, rng: &mut Rng) -> SimBattery {
        let cells = usize::from(config.cells.clamp(1, 32));
        SimBattery {
            switches: SimSwitches::default(),
            variant: config.variant,
            capacity_ah: f64::from(config.capacity_ah.max(1)),
            period_s: config.profile_period.as_secs_f64().max(1.0),
            soc: 0.55,
            cell_offsets: (0..cells).map(|_| rng.unit() * 0.02).collect(),
            wire_resistance_mohm: (0..cells).map(|_| 50 + rng.below(30) as u16).collect(),
            current_a: 0.0,
            last_s: 0.0,
            throughput_ah: 0.0,
            uptime_s: 3_600.0 * 24.0 * 30.0,
            balancing: false,
            mos_c: 22.0,
            cycle_base_ah: if config.plant.is_some() {
                cycle_base_ah(chrono::Local::now())
            } else {
                6_720.0
            },
            plant: config.plant.clone(),
        }
    }

    /// The pack's voltage without noise (V).
    fn pack_v(&self) -> f64 {
        self.cell_offsets
            .iter()
            .map(|o| ocv_mv(self.soc + o) + self.current_a * CELL_IR_OHM * 1000.0)
            .sum::<f64>()
            / 1000.0
    }

    pub fn uptime_s(&self) -> u32 {
        self.uptime_s as u32
    }

    /// Advances the model to `now_s` seconds after start.
    pub fn step(&mut self, now_s: f64, rng: &mut Rng) {
        let dt = (now_s - self.last_s).clamp(0.0, 60.0);
        self.last_s = now_s;
        self.uptime_s += dt;
        let mut i = match &self.plant {
            // the demo: what the inverter's flow puts into the battery (or takes out)
            Some(plant) => plant.battery_current_a(chrono::Local::now(), self.pack_v()),
            None => {
                // 0.2 C charging in one half of the period, discharging in the other, plus noise
                let amplitude = 0.2 * self.capacity_ah;
                let mut i = amplitude * (TAU * now_s / self.period_s).sin() + rng.unit() * 0.3;
                if self.soc > 0.97 && i > 0.0 {
                    i *= (1.0 - self.soc) / 0.03; // absorption: the charger tapers off
                }
                if self.soc < 0.08 && i < 0.0 {
                    i *= self.soc / 0.08; // the inverter cuts the load near empty
                }
                i
            }
        };
        // a switched-off MOSFET lets no current through that way
        if (i > 0.0 && !self.switches.charging) || (i < 0.0 && !self.switches.discharging) {
            i = 0.0;
        }
        self.current_a = i;
        self.soc = (self.soc + i * dt / 3600.0 / self.capacity_ah).clamp(0.0, 1.0);
        self.throughput_ah += i.abs() * dt / 3600.0;
        let volts = self.cell_mv(rng);
        let max = volts.iter().cloned().fold(f64::MIN, f64::max);
        let min = volts.iter().cloned().fold(f64::MAX, f64::min);
        let avg = volts.iter().sum::<f64>() / volts.len() as f64;
        self.balancing = self.switches.balancer
            && i > 0.0
            && avg > BALANCE_START_MV
            && max - min > BALANCE_TRIGGER_MV;
        if self.balancing {
            for o in &mut self.cell_offsets {
                *o *= 1.0 - 0.02 * dt;
            }
        } else {
            // cells drift apart a little over time
            for o in &mut self.cell_offsets {
                *o += rng.unit() * 0.000_02 * dt;
            }
        }
        self.mos_c += (22.0 + 0.04 * i.abs() - self.mos_c) * (dt / 120.0).min(1.0);
        if let Some(plant) = &self.plant {
            plant.report_battery(
                self.soc,
                self.pack_v(),
                self.switches.charging,
                self.switches.discharging,
            );
        }
    }

    fn cell_mv(&self, rng: &mut Rng) -> Vec<f64> {
        self.cell_offsets
            .iter()
            .map(|o| ocv_mv(self.soc + o) + self.current_a * CELL_IR_OHM * 1000.0 + rng.unit())
            .collect()
    }

    /// The cell-info values at this moment.
    pub fn cell_info(&self, counter: u8) -> CellInfo {
        let mut rng = Rng::new(u64::from(counter) + 1);
        let cells: Vec<u32> = self
            .cell_mv(&mut rng)
            .iter()
            .map(|mv| (mv.round().clamp(0.0, 5_000.0) as u32) * 1000)
            .collect();
        let total_mv: u32 = cells.iter().sum::<u32>() / 1000;
        let current_ma = (self.current_a * 1000.0).round() as i32;
        let temp = |base: f64| Some((base * 10.0).round() as i16);
        CellInfo {
            variant: self.variant,
            counter,
            cell_resistances_uohm: self
                .wire_resistance_mohm
                .iter()
                .map(|r| u32::from(*r) * 1000)
                .collect(),
            cell_voltages_uv: cells,
            total_voltage_mv: total_mv,
            current_ma: Some(current_ma),
            bms_power_mw: Some(
                (i64::from(total_mv) * i64::from(current_ma) / 1000).unsigned_abs() as u32,
            ),
            soc_pct: Some((self.soc * 100.0).round() as u8),
            remaining_capacity_mah: Some((self.soc * self.capacity_ah * 1000.0) as u32),
            nominal_capacity_mah: Some((self.capacity_ah * 1000.0) as u32),
            cycle_count: Some(
                ((self.cycle_base_ah - 6_720.0).max(0.0) + self.throughput_ah) as u32
                    / (2 * self.capacity_ah as u32).max(1)
                    + 12,
            ),
            cycle_capacity_mah: Some(((self.cycle_base_ah + self.throughput_ah) * 1000.0) as u32),
            soh_pct: Some(100),
            temperatures: Temperatures {
                mos_dc: temp(self.mos_c),
                sensors_dc: [
                    temp(self.mos_c - 3.0),
                    temp(self.mos_c - 3.5),
                    None,
                    None,
                    None,
                ],
            },
            balance_current_ma: Some(if self.balancing {
                BALANCE_CURRENT_MA
            } else {
                0
            }),
            balancing: if self.balancing {
                Balancing::Charging
            } else {
                Balancing::Off
            },
            charging_enabled: Some(self.switches.charging),
            discharging_enabled: Some(self.switches.discharging),
            heating: Some(self.switches.heater),
            extended: self.extended(),
            alarms: Alarms::none(AlarmTable::Ble),
            uptime_s: Some(self.uptime_s as u32),
            bms_cell_avg_uv: None,
            bms_cell_delta_uv: None,
        }
    }
}

impl SimBattery {
    /// A JK-PB's last values: its charger's stage from the state of charge, the heater's
    /// current while it heats, both dry contacts open, no precharge.
    fn extended(&self) -> Extended {
        let charging = self.current_a > 0.0;
        let charge_status = if self.soc >= 0.99 {
            ChargeStatus::Float
        } else if self.soc > 0.97 && charging {
            ChargeStatus::Absorption
        } else {
            ChargeStatus::Bulk
        };
        Extended {
            precharging: Some(false),
            heating_current_ma: Some(if self.switches.heater { 500 } else { 0 }),
            charge_status: Some(charge_status),
            dry_contacts: Some(DryContacts {
                dry1: false,
                dry2: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pack_charges_then_discharges_and_stays_plausible() {
        let config = SimConfig {
            cells: 8,
            ..SimConfig::default()
        };
        let mut rng = Rng::new(3);
        let mut b = SimBattery::new(&config, &mut rng);
        let period = config.profile_period.as_secs_f64();
        let mut socs = Vec::new();
        for step in 1..=1200 {
            b.step(step as f64 * period / 1200.0, &mut rng);
            let info = b.cell_info(step as u8);
            assert_eq!(info.cell_count(), 8);
            assert!(info
                .cell_voltages_uv
                .iter()
                .all(|v| (2_500_000..=3_700_000).contains(v)));
            socs.push(info.soc_pct.unwrap());
        }
        let (first, peak, last) = (socs[0], *socs.iter().max().unwrap(), *socs.last().unwrap());
        assert!(peak > first, "charges in the first half: {first} → {peak}");
        assert!(
            last < peak,
            "discharges in the second half: {peak} → {last}"
        );
    }

    #[test]
    fn ocv_is_monotonic() {
        let mut prev = 0.0;
        for i in 0..=100 {
            let v = ocv_mv(f64::from(i) / 100.0);
            assert!(v >= prev);
            prev = v;
        }
    }
}
