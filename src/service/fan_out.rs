//! The fan-out: every session and inverter event to the writer, the counters, the MQTT feed
//! and the InfluxDB sink, without ever holding the sessions up; and the watch over every part.

use super::{Parts, EXIT_WATCHDOG};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Local, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::watchdog::SystemdWatchdog;
use crate::session::inverter::InverterEvent;
use crate::session::{EventKind, Liveness, SessionEvent, Watchdog};
use crate::store::live::Live;
use crate::store::writer::Message;

impl Parts {
    /// Hands every session event to the writer, the counters, MQTT and InfluxDB, and watches
    /// the parts, until `stop` or a part fails. Returns the exit code, or why it failed.
    pub(super) async fn fan_out(
        &mut self,
        liveness: Liveness,
        mut watchdog: Watchdog,
        notify: Option<&crate::systemd::Notify>,
        stop: &CancellationToken,
    ) -> anyhow::Result<ExitCode> {
        let sessions = self.events.is_some();
        let mut systemd = SystemdWatchdog::new(notify, liveness);
        loop {
            let deadline = watchdog.deadline();
            tokio::select! {
                event = async { self.events.as_mut().unwrap().recv().await }, if self.events.is_some() => {
                    let Some(event) = event else {
                        return Err(anyhow::anyhow!("every BMS session ended"));
                    };
                    self.route(&event, liveness);
                    if matches!(event.kind, EventKind::Snapshot { .. }) {
                        watchdog.feed(Instant::now());
                        systemd.last_snapshot = Instant::now();
                    }
                }
                event = async { self.inverter.as_mut().unwrap().events.recv().await }, if self.inverter.is_some() => {
                    match event {
                        Some(event) => self.route_inverter(event),
                        // it ends on the signal that stops everything, or not at all
                        None if stop.is_cancelled() => {
                            tracing::info!("stopping");
                            return Ok(ExitCode::SUCCESS);
                        }
                        None => {
                            self.inverter = None;
                            return Err(anyhow::anyhow!("the inverter poller ended"));
                        }
                    }
                }
                _ = systemd.due() => systemd.feed(sessions),
                _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                    tracing::error!("{}", watchdog.explain());
                    return Ok(ExitCode::from(EXIT_WATCHDOG));
                }
                e = async { self.writer.as_mut().unwrap().failed().await }, if self.writer.is_some() => {
                    self.writer = None;
                    return Err(anyhow::Error::new(e).context("the database writer gave up"));
                }
                ended = async { self.web.as_mut().unwrap().await }, if self.web.is_some() => {
                    self.web = None;
                    if stop.is_cancelled() && matches!(ended, Ok(Ok(()))) {
                        tracing::info!("stopping");
                        return Ok(ExitCode::SUCCESS); // it drained on the signal that stops everything
                    }
                    return Err(match ended {
                        Ok(Err(e)) => anyhow::Error::new(e).context("the web server stopped"),
                        _ => anyhow::anyhow!("the web server stopped"),
                    });
                }
                _ = stop.cancelled() => {
                    tracing::info!("stopping");
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }

    /// One session event to everything that follows the batteries; never waits.
    pub(super) fn route(&self, event: &SessionEvent, liveness: Liveness) {
        // one time for the snapshot everywhere: the store, the live views and InfluxDB agree
        let now = Utc::now();
        if let EventKind::Snapshot { snapshot, .. } = &event.kind {
            if let Some(live) = &self.live {
                live.record(event.battery + 1, Arc::clone(snapshot), now);
            }
            if let Some(influx) = &self.influx {
                influx.record(event.battery, snapshot, now);
            }
        }
        if let Some(w) = &self.writer {
            w.send(message(event, liveness, now));
        }
        if let Some(t) = &self.telemetry {
            t.record(event);
        }
        if let Some(f) = &self.feed {
            let energy = self.live.as_ref().and_then(|l| l.energy(event.battery + 1));
            f.record(event, liveness, Instant::now(), energy);
        }
    }

    /// One inverter poller event to InfluxDB, the MQTT feed and the writer (its row, its state).
    pub(super) fn route_inverter(&self, event: InverterEvent) {
        if let (Some(influx), InverterEvent::Poll(poll)) = (&self.influx, &event) {
            influx.record_inverter(poll);
        }
        if let Some(f) = &self.feed {
            let energy_today = self.live.as_ref().and_then(Live::inverter_energy);
            f.record_inverter(&event, energy_today);
        }
        let Some(w) = &self.writer else { return };
        w.send(match event {
            InverterEvent::Poll(poll) => Message::Reading(poll),
            InverterEvent::State {
                state,
                detail,
                model,
                link,
                interval,
            } => Message::InverterState {
                state,
                detail,
                model,
                link,
                interval,
            },
        });
    }
}

/// The writer's view of a session event.
pub(super) fn message(event: &SessionEvent, liveness: Liveness, now: DateTime<Utc>) -> Message {
    let position = event.battery + 1;
    match &event.kind {
        EventKind::Snapshot { snapshot, .. } => Message::Snapshot {
            position,
            snapshot: snapshot.clone(),
            taken_at: now.with_timezone(&Local),
        },
        EventKind::State { state, detail, .. } => Message::State {
            position,
            state: *state,
            detail: detail.clone(),
            offline: liveness.lost(*state),
        },
    }
}
