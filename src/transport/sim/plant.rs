//! The demo's one physics, shared by the simulated inverter and the simulated BMSs of
//! `jkmon run --demo`, so that every number the demo shows agrees with the others:
//!
//! ```text
//!   battery W = PV W − load W − LOSS_W + grid import W − grid export W
//! ```
//!
//! The sun and the house's load follow the local time of day (the same day every day, with a
//! little weather and a wandering load that depend on the minute of the day and the seed); the
//! battery takes what the PV leaves over and covers what it lacks (the inverter's SBU priority)
//! until it is nearly empty, when the grid takes over; a full battery tapers, and the PV it
//! cannot take goes to the grid. The battery's state of charge and voltage come from the
//! simulated BMS itself ([`Plant::report_battery`]), which takes its current from
//! [`Plant::flow_at`]; the inverter's registers show the same flow.
//!
//! Counters only grow, across restarts too: the inverter's PV energy is the integral of its PV
//! power from midnight (today's) and over every day since [`EPOCH`] (the total), a function of
//! the wall clock alone.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Local, NaiveDate, Timelike};

/// What the inverter itself draws (W): the difference between the two sides of the balance.
/// Real SMG-II units draw 30–80 W.
pub const LOSS_W: f64 = 40.0;
/// The PV array's peak (W).
const PV_PEAK_W: f64 = 3_000.0;
/// Below this state of charge the inverter leaves the battery and runs on the grid.
const LOW_SOC: f64 = 0.20;
/// Above this the battery takes less and less (absorption), none at full.
const TAPER_SOC: f64 = 0.95;
/// The day the simulated inverter's total PV energy starts counting from.
pub const EPOCH: (i32, u32, u32) = (2024, 1, 1);
/// The total PV energy on [`EPOCH`] (kWh).
const TOTAL_BASE_KWH: f64 = 1_234.5;

/// The flow of power at one moment (W); the grid positive when imported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flow {
    pub pv_w: f64,
    pub load_w: f64,
    pub grid_import_w: f64,
    pub grid_export_w: f64,
    /// Into the battery (+) or out of it (−).
    pub battery_w: f64,
    /// The inverter's working mode (register 201): 2 while power flows to or from the grid,
    /// 3 (off-grid, battery first) while it does not.
    pub mode: u16,
    /// The battery as its BMS last reported it.
    pub battery_v: f64,
    pub soc: f64,
}

impl Flow {
    /// The grid's power as the inverter's register has it: + imported, − exported.
    pub fn grid_w(&self) -> f64 {
        self.grid_import_w - self.grid_export_w
    }
}

/// The battery as its simulated BMS reports it.
#[derive(Debug, Clone, Copy)]
struct Battery {
    soc: f64,
    volts: f64,
    /// The MOSFETs: a battery that may not charge is full to the inverter, one that may not
    /// discharge is empty.
    charging: bool,
    discharging: bool,
}

struct Inner {
    seed: u64,
    /// How many simulated BMSs share the battery's side (each takes its part).
    batteries: usize,
    battery: Mutex<Battery>,
    /// The PV energy of one whole day (Wh): every day is the same day.
    day_wh: f64,
}

/// Shared by the simulators of one demo. Cloning shares.
#[derive(Clone)]
pub struct Plant(Arc<Inner>);

impl std::fmt::Debug for Plant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Plant(seed {}, {} batteries)",
            self.0.seed, self.0.batteries
        )
    }
}

/// Two handles are equal when they share one plant.
impl PartialEq for Plant {
    fn eq(&self, other: &Plant) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A number in [0, 1) from `seed` and `n` alone (splitmix64).
fn noise(seed: u64, n: u64) -> f64 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// `f` at minute `m` of the day (fractional), between its values at whole minutes.
fn between_minutes(m: f64, f: impl Fn(u64) -> f64) -> f64 {
    let k = m.floor();
    let a = f(k as u64 % 1440);
    let b = f((k as u64 + 1) % 1440);
    a + (b - a) * (m - k)
}

impl Plant {
    /// A plant whose weather and load follow `seed`, its battery side shared by `batteries`
    /// simulated BMSs.
    pub fn new(seed: u64, batteries: usize) -> Plant {
        let mut plant = Inner {
            seed,
            batteries: batteries.max(1),
            battery: Mutex::new(Battery {
                soc: 0.55,
                volts: 52.8,
                charging: true,
                discharging: true,
            }),
            day_wh: 0.0,
        };
        plant.day_wh = (0..1440)
            .map(|k| pv_w(seed, f64::from(k) + 0.5) / 60.0)
            .sum();
        Plant(Arc::new(plant))
    }

    /// How many simulated BMSs share the battery's side.
    pub fn batteries(&self) -> usize {
        self.0.batteries
    }

    /// The simulated BMS's state: its state of charge (0–1), its voltage and its MOSFETs.
    pub fn report_battery(&self, soc: f64, volts: f64, charging: bool, discharging: bool) {
        if let Ok(mut b) = self.0.battery.lock() {
            *b = Battery {
                soc,
                volts,
                charging,
                discharging,
            };
        }
    }

    /// The flow at `t`.
    pub fn flow_at(&self, t: DateTime<Local>) -> Flow {
        let battery = self.0.battery.lock().map(|b| *b).unwrap_or(Battery {
            soc: 0.5,
            volts: 52.0,
            charging: true,
            discharging: true,
        });
        let m = minute_of_day(t);
        let pv_w = pv_w(self.0.seed, m).round();
        let load_w = load_w(self.0.seed, m).round();
        let surplus = pv_w - load_w - LOSS_W;
        let (battery_w, grid_import_w, grid_export_w) = if surplus >= 0.0 {
            let taken = if battery.charging {
                surplus * ((1.0 - battery.soc) / (1.0 - TAPER_SOC)).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let taken = taken.round();
            (taken, 0.0, surplus - taken)
        } else if battery.discharging && battery.soc > LOW_SOC {
            (surplus, 0.0, 0.0)
        } else {
            (0.0, -surplus, 0.0)
        };
        Flow {
            pv_w,
            load_w,
            grid_import_w,
            grid_export_w,
            battery_w,
            mode: if grid_import_w > 0.0 || grid_export_w > 0.0 {
                2
            } else {
                3
            },
            battery_v: battery.volts,
            soc: battery.soc,
        }
    }

    /// One BMS's current at `t` (A): its part of the battery's power at `volts`.
    pub fn battery_current_a(&self, t: DateTime<Local>, volts: f64) -> f64 {
        let flow = self.flow_at(t);
        flow.battery_w / self.0.batteries as f64 / volts.max(1.0)
    }

    /// The PV energy from local midnight to `t` (kWh): the integral of the PV power.
    pub fn pv_today_kwh(&self, t: DateTime<Local>) -> f64 {
        let m = minute_of_day(t);
        let whole = m.floor() as u32;
        let wh: f64 = (0..whole)
            .map(|k| pv_w(self.0.seed, f64::from(k) + 0.5) / 60.0)
            .sum::<f64>()
            + pv_w(self.0.seed, m) * (m - m.floor()) / 60.0;
        wh / 1000.0
    }

    /// The inverter's total PV energy at `t` (kWh): every day since [`EPOCH`], and today's.
    pub fn pv_total_kwh(&self, t: DateTime<Local>) -> f64 {
        let epoch = NaiveDate::from_ymd_opt(EPOCH.0, EPOCH.1, EPOCH.2).unwrap_or_default();
        let days = (t.date_naive() - epoch).num_days().max(0) as f64;
        TOTAL_BASE_KWH + days * self.0.day_wh / 1000.0 + self.pv_today_kwh(t)
    }
}

/// Minutes since local midnight, with their fraction.
fn minute_of_day(t: DateTime<Local>) -> f64 {
    f64::from(t.num_seconds_from_midnight()) / 60.0
        + f64::from(t.nanosecond() % 1_000_000_000) / 60e9
}

/// The PV array at minute `m` of the day: the sun from 6:00 to 18:00, a little weather.
fn pv_w(seed: u64, m: f64) -> f64 {
    let hour = m / 60.0;
    let sun = ((hour - 6.0) / 12.0 * std::f64::consts::PI).sin().max(0.0);
    let weather = between_minutes(m, |k| 0.85 + 0.15 * noise(seed ^ 0x5EED, k));
    PV_PEAK_W * sun * weather
}

/// The house at minute `m`: a base load that wanders, more in the evening.
fn load_w(seed: u64, m: f64) -> f64 {
    between_minutes(m, |k| {
        let evening = if (18 * 60..22 * 60).contains(&k) {
            600.0
        } else {
            0.0
        };
        350.0 + 250.0 * noise(seed, k) + evening
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Local> {
        Local
            .with_ymd_and_hms(2026, 6, 21, h, m, 0)
            .earliest()
            .unwrap()
    }

    #[test]
    fn the_flow_balances_at_every_minute_and_every_state_of_charge() {
        let plant = Plant::new(7, 1);
        for soc in [0.05, 0.19, 0.21, 0.5, 0.96, 0.99, 1.0] {
            for (charging, discharging) in [(true, true), (false, true), (true, false)] {
                plant.report_battery(soc, 52.0, charging, discharging);
                for minute in (0..1440).step_by(7) {
                    let f = plant.flow_at(at(minute / 60, minute % 60));
                    let balance = f.pv_w - f.load_w - LOSS_W + f.grid_import_w - f.grid_export_w;
                    assert!(
                        (f.battery_w - balance).abs() < 1e-9,
                        "{soc} {minute}: {f:?}"
                    );
                    assert!(f.pv_w >= 0.0 && f.load_w > 0.0);
                    assert!(f.grid_import_w >= 0.0 && f.grid_export_w >= 0.0);
                    // the grid flows only one way, and the mode says whether it flows
                    assert!(f.grid_import_w == 0.0 || f.grid_export_w == 0.0);
                    assert_eq!(
                        f.mode == 2,
                        f.grid_import_w + f.grid_export_w > 0.0,
                        "{f:?}"
                    );
                    if !charging {
                        assert!(f.battery_w <= 0.0);
                    }
                    if !discharging {
                        assert!(f.battery_w >= 0.0);
                    }
                }
            }
        }
        // night: the battery covers the load while it can, then the grid does
        plant.report_battery(0.5, 52.0, true, true);
        let night = plant.flow_at(at(2, 0));
        assert_eq!((night.pv_w, night.grid_import_w, night.mode), (0.0, 0.0, 3));
        assert!(night.battery_w < 0.0);
        plant.report_battery(0.1, 48.0, true, true);
        let low = plant.flow_at(at(2, 0));
        assert_eq!((low.battery_w, low.mode), (0.0, 2));
        assert!(low.grid_import_w > 0.0);
        // noon with a full battery: the PV it cannot take goes to the grid
        plant.report_battery(1.0, 55.0, true, true);
        let noon = plant.flow_at(at(12, 0));
        assert_eq!(noon.battery_w, 0.0);
        assert!(noon.grid_export_w > 1_500.0, "{noon:?}");
        assert_eq!(plant.battery_current_a(at(12, 0), 52.0), 0.0);
        let night = plant.flow_at(at(2, 0));
        assert_eq!(
            plant.battery_current_a(at(2, 0), 50.0),
            night.battery_w / 50.0
        );
        // two BMSs share the battery's side
        let two = Plant::new(7, 2);
        two.report_battery(0.5, 52.0, true, true);
        assert_eq!(
            two.battery_current_a(at(2, 0), 50.0),
            two.flow_at(at(2, 0)).battery_w / 2.0 / 50.0
        );
    }

    #[test]
    fn the_pv_energy_integrates_the_pv_power_and_only_grows() {
        let plant = Plant::new(3, 1);
        // the integral over an hour at noon: about the power times one hour
        let (a, b) = (at(11, 30), at(12, 30));
        let kwh = plant.pv_today_kwh(b) - plant.pv_today_kwh(a);
        let noon_kw = plant.flow_at(at(12, 0)).pv_w / 1000.0;
        assert!((kwh - noon_kw).abs() < 0.15 * noon_kw, "{kwh} vs {noon_kw}");
        assert_eq!(plant.pv_today_kwh(at(5, 0)), 0.0, "no sun before six");
        // today's and the total never fall within a day, and the total not across midnight
        let mut last_today = 0.0;
        let mut last_total = 0.0;
        for minute in 0..1440 {
            let t = at(minute / 60, minute % 60);
            let (today, total) = (plant.pv_today_kwh(t), plant.pv_total_kwh(t));
            assert!(today >= last_today && total >= last_total, "{minute}");
            (last_today, last_total) = (today, total);
        }
        let tomorrow = Local
            .with_ymd_and_hms(2026, 6, 22, 0, 0, 1)
            .earliest()
            .unwrap();
        assert!(plant.pv_total_kwh(tomorrow) >= last_total);
        assert!(plant.pv_today_kwh(tomorrow) < 0.001, "today's starts again");
        // a second plant (a restart) with the same seed says the same
        assert_eq!(Plant::new(3, 1).pv_total_kwh(b), plant.pv_total_kwh(b));
    }
}
