//! One session for a whole JK-PB RS485 network (§4): one port, up to 16 packs, each a battery
//! of its own (its own events, state, device info and settings).
//!
//! ```text
//!   Disconnected ──► Connecting ──► Listening ──┬─► Master  (nobody else polls: jkmon asks
//!        ▲               (port)     (auto mode)  │            each address in turn)
//!        │                                       └─► Sniffer (a pack at address 0 polls: jkmon
//!        └──── port lost / closed ◄──────────────────         listens, and asks only for device
//!                                                             info, only in the master's gaps)
//! ```
//!
//! - **master**: every `poll_interval` each pack is asked for cell info; device info and
//!   settings when missing and then now and then. The answer's tail names its sender. A pack
//!   that leaves [`MISSED_LIMIT`] requests in a row unanswered is offline.
//! - **sniffer**: every frame is attributed by its tail (settings frames also carry the address
//!   at byte 270; a frame without either belongs to the address the last request named). The
//!   master never broadcasts device info, so jkmon asks a pack for it, but only in the silence
//!   after a request nobody answered (the master then waits for an absent address), never while
//!   an exchange is under way. A pack silent for `stale` is offline.
//! - **auto** (default) listens for [`BusTiming::listen`] first; a request jkmon did not send
//!   means a master is there. It becomes master when the master stays silent for
//!   [`BusTiming::master_gone`], and sniffer again as soon as a master speaks.

//!
//! The bus's logic is [`core::BusCore`], a pure state machine that takes the time as input;
//! [`BusSession`] owns the port, the clock and the channels and carries out what it decides.

mod core;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use self::core::{Action, BusCore};
use super::{control, Backoff, EventKind, SessionConfig, SessionEvent, State, Stopped};
use crate::battery::SocEstimator;
use crate::transport::{connect_by, Connector, Link};

/// `JK_RS485_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BusMode {
    #[default]
    Auto,
    Master,
    Sniffer,
}

impl FromStr for BusMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BusMode::Auto),
            "master" => Ok(BusMode::Master),
            "sniffer" => Ok(BusMode::Sniffer),
            other => Err(format!(
                "\"{other}\" is not an RS485 mode (expected auto, master or sniffer)"
            )),
        }
    }
}

impl fmt::Display for BusMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BusMode::Auto => "auto",
            BusMode::Master => "master",
            BusMode::Sniffer => "sniffer",
        })
    }
}

/// The bus's timing; the defaults follow what works on real JK-PB networks (§4.4).
#[derive(Debug, Clone, PartialEq)]
pub struct BusTiming {
    /// Auto mode: listen this long for a master before polling.
    pub listen: Duration,
    /// Sniffer: the master silent this long means it is gone.
    pub master_gone: Duration,
    /// Sniffer: silence after an unanswered request before jkmon may ask.
    pub quiet: Duration,
    /// Ask again for device info / settings after this long.
    pub device_info_every: Duration,
    pub settings_every: Duration,
    /// Sniffer: at least this long between two requests to the same pack.
    pub same_pack_gap: Duration,
}

impl Default for BusTiming {
    fn default() -> Self {
        BusTiming {
            listen: Duration::from_secs(2),
            master_gone: Duration::from_secs(5),
            quiet: Duration::from_millis(150),
            device_info_every: Duration::from_secs(3_600),
            settings_every: Duration::from_secs(600),
            same_pack_gap: Duration::from_millis(2_500),
        }
    }
}

/// One pack on the bus.
pub struct BusPack {
    /// Position in the configuration, from 0.
    pub battery: usize,
    pub address: u8,
    pub name: Arc<str>,
}

/// The session of one RS485 network: the port, the clock and the channels around a
/// [`BusCore`].
pub struct BusSession {
    core: BusCore,
    connector: Arc<dyn Connector>,
    connect_timeout: Duration,
    events: mpsc::Sender<SessionEvent>,
    backoff: Backoff,
    name: String,
    /// Switch writes asked of the packs (each names its battery), where control is on.
    writes: Option<mpsc::Receiver<control::WriteRequest>>,
}

impl BusSession {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        packs: Vec<BusPack>,
        connector: Arc<dyn Connector>,
        config: SessionConfig,
        mode: BusMode,
        timing: BusTiming,
        estimator: Arc<dyn SocEstimator>,
        events: mpsc::Sender<SessionEvent>,
    ) -> BusSession {
        let backoff = Backoff::new(config.retry_min, config.retry_max, 0x6a6b_7273_3438);
        let connect_timeout = config.connect_timeout;
        let core = BusCore::new(name, packs, config, mode, timing, estimator, Instant::now());
        BusSession {
            core,
            connector,
            connect_timeout,
            events,
            backoff,
            name: name.to_string(),
            writes: None,
        }
    }

    /// Takes switch writes for the packs from `writes` (each names its battery).
    pub fn with_writes(mut self, writes: mpsc::Receiver<control::WriteRequest>) -> BusSession {
        self.writes = Some(writes);
        self
    }

    /// Runs until the receiver of the events is dropped.
    pub async fn run(mut self) {
        let Err(Stopped) = self.serve().await;
    }

    async fn serve(&mut self) -> Result<std::convert::Infallible, Stopped> {
        loop {
            let connecting = self.core.set_all(State::Connecting, "", None);
            self.emit_all(connecting).await?;
            let deadline = Instant::now() + self.connect_timeout;
            let why = match connect_by(self.connector.as_ref(), deadline).await {
                None => format!(
                    "could not open {} within {} s",
                    self.name,
                    self.connect_timeout.as_secs_f64()
                ),
                Some(Err(e)) => e.to_string(),
                Some(Ok(mut link)) => {
                    let why = self.on_bus(&mut link).await?;
                    self.backoff.reset();
                    why
                }
            };
            let wait = self.backoff.next_delay();
            tracing::warn!(
                "{}: {why}; next attempt in {:.1} s",
                self.name,
                wait.as_secs_f64()
            );
            self.core.closed();
            let closed = self.core.set_all(State::Disconnected, &why, Some(wait));
            self.emit_all(closed).await?;
            self.sleep_refusing_writes(wait, &why).await;
        }
    }

    /// Waits `wait` while the port is closed, answering every write asked meanwhile.
    async fn sleep_refusing_writes(&mut self, wait: Duration, why: &str) {
        let until = Instant::now() + wait;
        while let Some(r) = control::next_write_until(&mut self.writes, until).await {
            let _ = r
                .reply
                .send(Err(control::WriteError::Offline(why.to_string())));
        }
    }

    /// The port is open: what it hears, the writes asked and the clock go to the core, and
    /// what the core decides is carried out. Returns why the port ended.
    async fn on_bus(&mut self, link: &mut Link) -> Result<String, Stopped> {
        let mut actions = self.core.open(Instant::now());
        loop {
            if let Some(why) = self.carry_out(link, actions).await? {
                return Ok(why);
            }
            let wake = self.core.next_wake(Instant::now());
            let takes_writes = self.core.takes_writes() && self.writes.is_some();
            actions = tokio::select! {
                chunk = link.recv() => match chunk {
                    Some(chunk) => self.core.heard(&chunk, Instant::now()),
                    None => return Ok("the serial port closed (adapter unplugged?)".into()),
                },
                request = async { self.writes.as_mut().unwrap().recv().await }, if takes_writes => {
                    match request {
                        Some(request) => self.core.asked(request, Instant::now()),
                        None => {
                            self.writes = None;
                            Vec::new()
                        }
                    }
                }
                _ = sleep_until(wake) => self.core.tick(Instant::now()),
            };
        }
    }

    /// Sends what is to be sent and tells what happened, in order. `Some(why)` when the port
    /// failed.
    async fn carry_out(
        &mut self,
        link: &mut Link,
        actions: Vec<Action>,
    ) -> Result<Option<String>, Stopped> {
        for action in actions {
            match action {
                Action::Send(bytes) => {
                    if let Err(e) = link.send(&bytes).await {
                        return Ok(Some(e.to_string()));
                    }
                }
                told => self.emit(told).await?,
            }
        }
        Ok(None)
    }

    async fn emit_all(&self, actions: Vec<Action>) -> Result<(), Stopped> {
        for action in actions {
            self.emit(action).await?;
        }
        Ok(())
    }

    async fn emit(&self, action: Action) -> Result<(), Stopped> {
        let (pack, kind) = match action {
            Action::State {
                pack,
                state,
                detail,
                retry_in,
            } => {
                let attempt = self.backoff.attempt();
                let kind = EventKind::State {
                    state,
                    detail,
                    retry_in,
                    attempt,
                };
                (pack, kind)
            }
            Action::Snapshot {
                pack,
                snapshot,
                decoded,
                rejected,
            } => {
                let kind = EventKind::Snapshot {
                    snapshot: Arc::from(snapshot),
                    decoded,
                    rejected,
                };
                (pack, kind)
            }
            Action::Send(_) => return Ok(()),
        };
        let (battery, name) = self.core.pack(pack);
        let event = SessionEvent {
            battery,
            name,
            kind,
        };
        self.events.send(event).await.map_err(|_| Stopped)
    }
}
