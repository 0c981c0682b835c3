//! The demo's made-up history (`jkmon fill-demo`): the simulator's batteries, each on a
//! one-day cycle, and the simulated SMG-II 11K's values through the day, as the store's
//! [`Invented`] source. The store writes them as if jkmon had run all along; it never imports
//! the simulator itself.
//!
//! Layer 5: may use `store` (what it fills), `battery`, `inverter` and `transport::sim`.

use chrono::{DateTime, Local, Timelike};
use serde_json::{Map, Value};

use crate::battery::soc::{estimator, SocSource, VoltageCurve};
use crate::battery::{Snapshot, SocEstimator};
use crate::inverter::{payload, registers::SMG_II_11K};
use crate::store::backfill::Invented;
use crate::transport::sim::inverter::values_at;
use crate::transport::sim::{Rng, SimBattery, SimConfig};

/// How often the simulated batteries are read (the store's history rows).
const BMS_EVERY_S: i64 = 30;

/// The simulated installation: `batteries` simulated packs and the simulated inverter.
pub struct SimulatedHistory {
    models: Vec<(SimBattery, Rng)>,
    estimator: Box<dyn SocEstimator>,
    inverter_rng: Rng,
}

impl SimulatedHistory {
    pub fn new(batteries: usize) -> SimulatedHistory {
        let models = (0..batteries)
            .map(|i| {
                let config = SimConfig {
                    profile_period: std::time::Duration::from_secs(86_400),
                    ..SimConfig::default()
                };
                let mut rng = Rng::new(7 + i as u64);
                (SimBattery::new(&config, &mut rng), rng)
            })
            .collect();
        SimulatedHistory {
            models,
            estimator: estimator(SocSource::Curve, &VoltageCurve::default()),
            inverter_rng: Rng::new(99),
        }
    }
}

impl Invented for SimulatedHistory {
    fn batteries_at(&mut self, t: i64, elapsed_s: f64) -> Vec<Snapshot> {
        self.models
            .iter_mut()
            .map(|(model, rng)| {
                model.step(elapsed_s, rng);
                Snapshot::new(
                    model.cell_info((t / BMS_EVERY_S) as u8),
                    None,
                    None,
                    self.estimator.as_ref(),
                )
            })
            .collect()
    }

    fn inverter_at(&mut self, when: DateTime<Local>) -> Map<String, Value> {
        let hour = f64::from(when.num_seconds_from_midnight()) / 3600.0;
        // the row jkmon's own poller writes for the simulated inverter's registers
        let values = values_at(&SMG_II_11K, hour, true, &mut self.inverter_rng);
        payload::payload(&values)
            .ok()
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_default()
    }
}
