//! What the service knows of each battery, for the publisher: the latest snapshot and whether
//! the session says the battery is gone. A `watch` channel: the service overwrites it and never
//! waits, the publisher sees the newest value whenever it looks.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::inverter::InverterFeed;
use crate::battery::link::{EventKind, Liveness, SessionEvent};
use crate::battery::Snapshot;
use crate::inverter::poll::InverterEvent;
use crate::store::energy::{Counters, InverterEnergy};

/// One battery as the publisher sees it.
#[derive(Debug, Clone, Default)]
pub struct BatteryFeed {
    pub snapshot: Option<Arc<Snapshot>>,
    /// When `snapshot` arrived.
    pub taken_at: Option<Instant>,
    /// Counts snapshots, so the publisher can tell a new one from the one it sent.
    pub seq: u64,
    /// A persistent session lost its BMS (the battery is offline whatever the age of its
    /// last snapshot).
    pub lost: bool,
    /// The battery's energy counters as of the snapshot before (the writer counts them).
    pub energy: Option<Counters>,
}

/// The sending side, kept by the service.
#[derive(Debug, Clone)]
pub struct Feed {
    tx: Arc<watch::Sender<Vec<BatteryFeed>>>,
    /// jkmon's own inverter poller, where it runs.
    inverter: Arc<watch::Sender<Option<InverterFeed>>>,
}

impl Feed {
    pub fn new(batteries: usize) -> Feed {
        Feed {
            tx: Arc::new(watch::channel(vec![BatteryFeed::default(); batteries]).0),
            inverter: Arc::new(watch::channel(None).0),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Vec<BatteryFeed>> {
        self.tx.subscribe()
    }

    pub fn subscribe_inverter(&self) -> watch::Receiver<Option<InverterFeed>> {
        self.inverter.subscribe()
    }

    /// Takes in an event of jkmon's own inverter poller, with today's energy as counted so far.
    /// Never waits.
    pub fn record_inverter(&self, event: &InverterEvent, energy_today: Option<InverterEnergy>) {
        self.inverter.send_modify(|feed| match event {
            InverterEvent::State {
                state,
                detail,
                model,
                link,
                ..
            } => {
                let f = feed.get_or_insert_with(|| InverterFeed {
                    model,
                    link: link.clone(),
                    state: *state,
                    detail: detail.clone(),
                    poll: None,
                    seq: 0,
                    energy_today: None,
                });
                f.state = *state;
                f.detail = detail.clone();
                f.link = link.clone();
            }
            InverterEvent::Poll(poll) => {
                if let Some(f) = feed.as_mut() {
                    f.poll = Some(Arc::clone(poll));
                    f.energy_today = energy_today;
                    f.seq += 1;
                }
            }
        });
    }

    /// Takes in a session event, and the battery's energy counters. Never waits. `liveness`
    /// says which states mean the battery is gone (in periodic mode sessions disconnect
    /// between readings).
    pub fn record(
        &self,
        event: &SessionEvent,
        liveness: Liveness,
        now: Instant,
        energy: Option<Counters>,
    ) {
        self.tx.send_if_modified(|all| {
            let Some(b) = all.get_mut(event.battery) else {
                return false;
            };
            match &event.kind {
                EventKind::Snapshot { snapshot, .. } => {
                    b.snapshot = Some(Arc::clone(snapshot));
                    b.taken_at = Some(now);
                    b.energy = energy;
                    b.seq += 1;
                    let was_lost = std::mem::replace(&mut b.lost, false);
                    // wake the publisher for the first snapshot and a battery that came back;
                    // the others go out at its own pace
                    b.seq == 1 || was_lost
                }
                // lost until the next snapshot: reconnecting is not being back
                EventKind::State { state, .. } if liveness.lost(*state) => {
                    !std::mem::replace(&mut b.lost, true)
                }
                EventKind::State { .. } => false,
            }
        });
    }
}
