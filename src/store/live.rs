//! The newest snapshot of each battery, as the sessions deliver it (about two a second), kept
//! in memory for the views of the process that runs the sessions (`jkmon run`). The database
//! keeps its own pace (one commit per `JK_BMS_POLL_INTERVAL`), so an SD card is written no more
//! often; a process that only reads the file (`jkmon web`, `jkmon bot`) has no `Live` and shows
//! what the file holds.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use super::energy::{Counters, InverterEnergy};
use crate::battery::Snapshot;
use crate::inverter::poll::{InverterPoll, InverterState};

/// A snapshot and when it was taken.
pub type Taken = (Arc<Snapshot>, DateTime<Utc>);

/// Shared between the service (which records) and the readers (which overlay it on the
/// database's view). Cloning shares.
#[derive(Clone, Default)]
pub struct Live {
    /// By battery position.
    newest: Arc<RwLock<BTreeMap<usize, Taken>>>,
    /// By battery position: the energy counters with the newest snapshot counted.
    energy: Arc<RwLock<BTreeMap<usize, Counters>>>,
    /// jkmon's own inverter poller, where it runs.
    inverter: Arc<RwLock<Option<InverterLive>>>,
    /// The inverter's energy today as the writer counted it after its newest row.
    inverter_energy: Arc<RwLock<Option<InverterEnergy>>>,
}

/// The inverter as jkmon's own poller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct InverterLive {
    pub state: InverterState,
    /// Why (the last error while offline; the model while online).
    pub detail: String,
    /// When the state began.
    pub since: DateTime<Utc>,
    /// The newest poll.
    pub last: Option<Arc<InverterPoll>>,
}

impl Live {
    /// Battery `position`'s snapshot, taken `at`. Never waits on a reader for long: the lock
    /// is held for one map insert.
    pub fn record(&self, position: usize, snapshot: Arc<Snapshot>, at: DateTime<Utc>) {
        if let Ok(mut newest) = self.newest.write() {
            newest.insert(position, (snapshot, at));
        }
    }

    /// Battery `position`'s energy counters (the writer records them with each snapshot).
    pub fn record_energy(&self, position: usize, counters: Counters) {
        if let Ok(mut energy) = self.energy.write() {
            energy.insert(position, counters);
        }
    }

    /// Battery `position`'s newest energy counters.
    pub fn energy(&self, position: usize) -> Option<Counters> {
        self.energy.read().ok()?.get(&position).copied()
    }

    /// The inverter poller's state changed (at `at`).
    pub fn record_inverter_state(&self, state: InverterState, detail: &str, at: DateTime<Utc>) {
        if let Ok(mut inverter) = self.inverter.write() {
            let last = inverter.as_ref().and_then(|i| i.last.clone());
            *inverter = Some(InverterLive {
                state,
                detail: detail.to_string(),
                since: at,
                last,
            });
        }
    }

    /// The inverter poller's newest poll.
    pub fn record_inverter_poll(&self, poll: Arc<InverterPoll>) {
        if let Ok(mut inverter) = self.inverter.write() {
            match inverter.as_mut() {
                Some(i) => i.last = Some(poll),
                None => {
                    *inverter = Some(InverterLive {
                        state: poll.state,
                        detail: String::new(),
                        since: poll.at,
                        last: Some(poll),
                    })
                }
            }
        }
    }

    /// The inverter's energy today, counted from the rows up to the newest.
    pub fn record_inverter_energy(&self, today: InverterEnergy) {
        if let Ok(mut e) = self.inverter_energy.write() {
            *e = Some(today);
        }
    }

    /// The inverter's energy today, as of the newest row the writer committed.
    pub fn inverter_energy(&self) -> Option<InverterEnergy> {
        *self.inverter_energy.read().ok()?
    }

    /// The inverter as jkmon's own poller sees it; `None` where another program polls it.
    pub fn inverter(&self) -> Option<InverterLive> {
        self.inverter.read().ok()?.clone()
    }

    /// Battery `position`'s newest snapshot and when it was taken.
    pub fn get(&self, position: usize) -> Option<Taken> {
        self.newest.read().ok()?.get(&position).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::battery::SocSource;
    use crate::protocol::CellInfo;

    #[test]
    fn the_newest_snapshot_of_each_battery_wins() {
        let live = Live::default();
        let snap = |mv: u32| {
            let mut c = CellInfo::example();
            c.total_voltage_mv = mv;
            Arc::new(Snapshot {
                cell_info: c,
                device_info: None,
                settings: None,
                soc_effective_pct: None,
                soc_source: SocSource::Bms,
            })
        };
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        live.record(1, snap(52_000), t0);
        live.record(1, snap(52_100), t0 + chrono::Duration::seconds(1));
        live.record(2, snap(48_000), t0);
        assert_eq!(live.get(1).unwrap().0.cell_info.total_voltage_mv, 52_100);
        assert_eq!(live.get(2).unwrap().1, t0);
        assert!(live.get(3).is_none());
    }
}
