//! jkmon's own inverter poller: every `POLL_INTERVAL` it reads the model's register blocks over
//! the configured link and hands the poll on — its values, the working mode, and the `readings`
//! row the Python poller would write for them (or its error row).
//!
//! ```text
//!   Connecting ──► Online ──► Offline ──► Online …
//!                  (a poll read a block)  (OFFLINE_AFTER polls in a row read nothing)
//! ```
//!
//! Unlike the Python poller it keeps one link for its whole life (the dongle's listener, the
//! serial port, the TCP connection are reused and re-established by the link itself), polls at a
//! fixed rate rather than sleeping after each cycle, never exits after failures, and runs on the
//! async runtime beside the BMS sessions without holding them up: a poll is bounded, and the
//! events go through a channel that never waits.
//!
//! Layer 3: uses `transport` (the links) and `inverter` (the pure protocol).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::inverter::payload;
pub use crate::inverter::poll::{InverterEvent, InverterPoll, InverterState};
use crate::inverter::registers::{Decoded, Model};
use crate::transport::inverter::{self, InverterConfig, Link, LinkConfig};

/// Polls in a row that read nothing before the inverter counts as offline (30 s at 10 s).
pub const OFFLINE_AFTER: u32 = 3;
/// Polls in a row with a block not read before it is a warning rather than a note.
pub const PARTIAL_BEFORE_WARNING: u32 = 3;

/// The poller's settings.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    pub inverter: InverterConfig,
    /// `POLL_INTERVAL`.
    pub interval: Duration,
}

/// Runs until `stop` is cancelled or nobody listens. A link that cannot even be opened (the
/// dongle's port taken) is tried again at the next poll; each poll that read nothing is an
/// error row.
pub async fn run(
    config: PollerConfig,
    events: mpsc::Sender<InverterEvent>,
    stop: CancellationToken,
) {
    let model = config.inverter.model;
    let mut link_config = config.inverter.link.clone();
    // a dongle that does not dial back within two intervals (the Python poller's cycle bound)
    // makes an error row rather than a silent gap, and a read slower than the poll interval is
    // a failed read
    match &mut link_config {
        LinkConfig::Dongle(d) => {
            d.dial_back_timeout = (config.interval * 2).max(Duration::from_secs(5));
            d.read_timeout = d.read_timeout.min(config.interval);
        }
        LinkConfig::Modbus(m) => m.read_timeout = m.read_timeout.min(config.interval),
    }
    let _ = events.try_send(InverterEvent::State {
        state: InverterState::Connecting,
        detail: format!("reaching the {}", model.description),
        model: model.key,
        link: link_config.describe(),
        interval: config.interval,
    });
    let mut poller = Poller {
        model,
        link: None,
        interval: config.interval,
        link_config,
        state: InverterState::Connecting,
        failed_in_a_row: 0,
        partial_in_a_row: 0,
        events,
    };
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let poll = tokio::select! {
            _ = stop.cancelled() => return,
            poll = poller.poll() => poll,
        };
        if poller
            .events
            .try_send(InverterEvent::Poll(Arc::new(poll)))
            .is_err()
            && poller.events.is_closed()
        {
            return;
        }
    }
}

struct Poller {
    model: &'static Model,
    link: Option<Link>,
    interval: Duration,
    link_config: LinkConfig,
    state: InverterState,
    failed_in_a_row: u32,
    partial_in_a_row: u32,
    events: mpsc::Sender<InverterEvent>,
}

impl Poller {
    async fn poll(&mut self) -> InverterPoll {
        let started = Instant::now();
        let (decoded, errors) = match self.link.as_mut() {
            Some(link) => inverter::poll(link, self.model).await,
            None => match Link::open(&self.link_config).await {
                Ok(link) => {
                    tracing::info!("inverter: {} ({})", link.describe(), self.model.key);
                    let link = self.link.insert(link);
                    inverter::poll(link, self.model).await
                }
                Err(e) => (Decoded::default(), vec![e]),
            },
        };
        let Decoded {
            values,
            implausible,
        } = decoded;
        if !implausible.is_empty() {
            let named: Vec<String> = implausible.iter().map(ToString::to_string).collect();
            tracing::warn!(
                "inverter: {} value(s) outside what an inverter can show, taken as not read this poll: {}",
                named.len(),
                named.join("; ")
            );
        }
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let row = payload::payload(&values).map_err(|no_values| {
            let mut text = no_values.to_string();
            if let Some(first) = errors.first() {
                text = format!("{text}: {first}");
            }
            text
        });
        self.next_state(&row, &errors);
        InverterPoll {
            model: self.model,
            at: Utc::now(),
            mode: payload::mode(&values),
            values,
            row,
            errors,
            took: started.elapsed(),
            state: self.state,
        }
    }

    /// Online at the first poll that read something; offline after [`OFFLINE_AFTER`] that
    /// read nothing (or the first, before it was ever online). Each change is logged and sent.
    fn next_state(&mut self, row: &Result<String, String>, errors: &[String]) {
        let next = match row {
            Ok(_) => {
                self.failed_in_a_row = 0;
                match errors.first() {
                    // a lost answer now and then is a Wi-Fi link's life; a block that keeps
                    // failing is a fault to look at
                    Some(e) => {
                        self.partial_in_a_row += 1;
                        let n = errors.len();
                        if self.partial_in_a_row >= PARTIAL_BEFORE_WARNING {
                            tracing::warn!(
                                "inverter: {n} block(s) not read in {} polls in a row (their values are N/A in those rows): {e}",
                                self.partial_in_a_row
                            );
                        } else {
                            tracing::info!(
                                "inverter: {n} block(s) not read this poll (their values are N/A in this row): {e}"
                            );
                        }
                    }
                    None => self.partial_in_a_row = 0,
                }
                InverterState::Online
            }
            Err(why) => {
                self.failed_in_a_row += 1;
                if self.state == InverterState::Online && self.failed_in_a_row < OFFLINE_AFTER {
                    tracing::warn!("inverter: nothing read this poll: {why}");
                    InverterState::Online
                } else {
                    if self.state == InverterState::Offline {
                        tracing::debug!("inverter: still nothing read: {why}");
                    }
                    InverterState::Offline
                }
            }
        };
        if next == self.state {
            return;
        }
        let detail = match (next, row) {
            (InverterState::Online, _) => format!("reading the {}", self.model.description),
            (_, Err(why)) => why.clone(),
            _ => String::new(),
        };
        match next {
            InverterState::Offline => tracing::warn!("inverter offline: {detail}"),
            _ => tracing::info!("inverter online: {detail}"),
        }
        self.state = next;
        let link = self
            .link
            .as_ref()
            .map_or_else(|| self.link_config.describe(), Link::describe);
        let _ = self.events.try_send(InverterEvent::State {
            state: next,
            detail,
            model: self.model.key,
            link,
            interval: self.interval,
        });
    }
}
