//! The service's own counters, for `/metrics`: frames decoded and rejected, and reconnections,
//! per link (a BMS's Bluetooth connection or serial port, or the one port of an RS485 bus that
//! all its packs share — bytes on a bus cannot always be told apart by pack).
//!
//! Sessions report running totals per connection; this turns them into counters that only
//! grow, across reconnections.
//!
//! It also holds the InfluxDB sink's counters (points written, dropped, refused), which the
//! sink counts and `/metrics` shows.
//!
//! Layer 4: may use `battery` (the sessions' events, `battery::link`); not `session`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::battery::link::{EventKind, SessionEvent, State};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkCounters {
    /// Where the bytes come from: the battery's name, or `RS485 bus on <port>`.
    pub link: String,
    /// The positions (1-based) of the batteries it serves.
    pub batteries: Vec<usize>,
    pub frames_decoded: u64,
    pub frames_rejected: u64,
    /// Retries after a lost connection or a failed attempt (periodic mode's planned
    /// reconnections do not count).
    pub reconnects: u64,
    /// The last running totals of the current connection.
    seen_decoded: u64,
    seen_rejected: u64,
}

#[derive(Debug)]
pub struct Telemetry {
    /// Battery index → link index.
    battery_link: Vec<usize>,
    /// The first battery of each link speaks for it in state changes.
    first_battery: Vec<usize>,
    links: Mutex<Vec<LinkCounters>>,
    /// When the service started, in seconds since the epoch.
    pub started_s: f64,
    /// The InfluxDB sink's counters, where `INFLUX_URL` turned it on.
    pub influx: Option<Arc<SinkCounters>>,
}

/// What the InfluxDB sink did, as counters that only grow (and the points waiting now).
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Points made from snapshots and polls.
    pub made: AtomicU64,
    /// Points InfluxDB took.
    pub written: AtomicU64,
    /// Points dropped because the buffer was full (the oldest first).
    pub dropped: AtomicU64,
    /// Points InfluxDB refused as malformed (never sent again).
    pub rejected: AtomicU64,
    /// Bytes of the bodies InfluxDB took (as sent: compressed where gzip is on).
    pub sent_bytes: AtomicU64,
    /// Writes that failed (InfluxDB away or refusing the configuration).
    pub failed_writes: AtomicU64,
    /// Points in the buffer now, the batch on its way included.
    pub waiting: AtomicU64,
    /// When InfluxDB last took a batch, in ms since the epoch (0: not yet).
    pub last_written_ms: AtomicU64,
}

impl SinkCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

impl Telemetry {
    /// `links[k]` names link k; `battery_link[i]` is the link of battery i.
    pub fn new(links: Vec<String>, battery_link: Vec<usize>) -> Telemetry {
        let first_battery = (0..links.len())
            .map(|k| {
                battery_link
                    .iter()
                    .position(|l| *l == k)
                    .unwrap_or(usize::MAX)
            })
            .collect();
        let links = links
            .into_iter()
            .enumerate()
            .map(|(k, link)| LinkCounters {
                link,
                batteries: (0..battery_link.len())
                    .filter(|i| battery_link[*i] == k)
                    .map(|i| i + 1)
                    .collect(),
                ..LinkCounters::default()
            })
            .collect();
        Telemetry {
            battery_link,
            first_battery,
            links: Mutex::new(links),
            started_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            influx: None,
        }
    }

    /// The same, counting for the InfluxDB sink too.
    pub fn with_influx(mut self) -> Telemetry {
        self.influx = Some(Arc::default());
        self
    }

    /// One link per battery.
    pub fn per_battery(names: &[String]) -> Telemetry {
        Telemetry::new(names.to_vec(), (0..names.len()).collect())
    }

    /// One link shared by every battery (an RS485 bus).
    pub fn shared(link: String, batteries: usize) -> Telemetry {
        Telemetry::new(vec![link], vec![0; batteries])
    }

    pub fn record(&self, event: &SessionEvent) {
        let Some(&k) = self.battery_link.get(event.battery) else {
            return;
        };
        let mut links = self.links.lock().expect("telemetry lock");
        let c = &mut links[k];
        match &event.kind {
            EventKind::Snapshot {
                decoded, rejected, ..
            } => {
                // totals that went down belong to a new connection
                let grow = |total: &mut u64, seen: &mut u64, now: u64| {
                    *total += if now >= *seen { now - *seen } else { now };
                    *seen = now;
                };
                grow(&mut c.frames_decoded, &mut c.seen_decoded, *decoded);
                grow(&mut c.frames_rejected, &mut c.seen_rejected, *rejected);
            }
            // the link itself went (a pack falling silent on a bus has no retry of its own)
            EventKind::State {
                state: State::Disconnected,
                retry_in: Some(_),
                attempt,
                ..
            } if self.first_battery[k] == event.battery && *attempt >= 1 => {
                c.reconnects += 1;
            }
            EventKind::State { .. } => {}
        }
    }

    pub fn links(&self) -> Vec<LinkCounters> {
        self.links.lock().expect("telemetry lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::battery::{Snapshot, SocSource};
    use crate::protocol::CellInfo;

    fn snapshot(battery: usize, decoded: u64, rejected: u64) -> SessionEvent {
        SessionEvent {
            battery,
            name: "b".into(),
            kind: EventKind::Snapshot {
                snapshot: std::sync::Arc::new(Snapshot {
                    soc_effective_pct: None,
                    soc_source: SocSource::Bms,
                    cell_info: CellInfo::example(),
                    device_info: None,
                    settings: None,
                }),
                decoded,
                rejected,
            },
        }
    }

    fn disconnected(battery: usize, attempt: u32) -> SessionEvent {
        SessionEvent {
            battery,
            name: "b".into(),
            kind: EventKind::State {
                state: State::Disconnected,
                detail: String::new(),
                retry_in: Some(std::time::Duration::from_secs(1)),
                attempt,
            },
        }
    }

    #[test]
    fn counters_grow_across_reconnections() {
        let t = Telemetry::per_battery(&["a".into(), "b".into()]);
        t.record(&snapshot(0, 3, 1));
        t.record(&snapshot(0, 5, 1));
        t.record(&disconnected(0, 1));
        // a new connection counts from zero again
        t.record(&snapshot(0, 2, 0));
        t.record(&disconnected(0, 0)); // periodic mode's planned pause
        t.record(&snapshot(1, 4, 2));
        let links = t.links();
        assert_eq!(
            (
                links[0].frames_decoded,
                links[0].frames_rejected,
                links[0].reconnects
            ),
            (7, 1, 1)
        );
        assert_eq!((links[1].frames_decoded, links[1].frames_rejected), (4, 2));
    }

    #[test]
    fn packs_on_one_bus_share_its_counters_without_counting_twice() {
        let t = Telemetry::shared("RS485 bus on /dev/ttyUSB0".into(), 3);
        t.record(&snapshot(0, 2, 1));
        t.record(&snapshot(2, 4, 1));
        t.record(&snapshot(1, 6, 2));
        for i in 0..3 {
            t.record(&disconnected(i, 1)); // every pack hears the port go
        }
        let links = t.links();
        assert_eq!(links.len(), 1);
        assert_eq!(
            (
                links[0].frames_decoded,
                links[0].frames_rejected,
                links[0].reconnects
            ),
            (6, 2, 1)
        );
    }
}
