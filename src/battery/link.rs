//! A battery's link as every reader sees it: where its session is ([`State`]), when the
//! battery counts as online ([`Liveness`], the one rule), and what a session tells the rest
//! of jkmon ([`SessionEvent`]). The session ([`crate::session`]) produces these; the store,
//! the views and the telemetry read them without depending on the module that drives the
//! hardware.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::Snapshot;

/// Where a session is. Stored in `bms_devices.state` and shown in the API as its lowercase
/// name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Disconnected,
    Connecting,
    Handshake,
    Streaming,
}

impl State {
    pub const ALL: [State; 4] = [
        State::Disconnected,
        State::Connecting,
        State::Handshake,
        State::Streaming,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Disconnected => "disconnected",
            State::Connecting => "connecting",
            State::Handshake => "handshake",
            State::Streaming => "streaming",
        }
    }

    /// The state a database row names; a name jkmon does not know (another version wrote
    /// it) reads as disconnected, which claims nothing.
    pub fn from_stored(s: &str) -> State {
        State::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .unwrap_or_default()
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a battery counts as online: the one rule the store's readers, MQTT and the writer
/// share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// A snapshot older than this is stale (`JK_BMS_STALE_SEC`).
    pub freshness: Duration,
    pub mode: ConnectMode,
}

impl Liveness {
    /// Whether `state` ends the battery's presence at once, fresh snapshot or not: a
    /// persistent session that disconnected lost its BMS, while a periodic one disconnects
    /// between every two readings.
    pub fn lost(&self, state: State) -> bool {
        self.mode == ConnectMode::Persistent && state == State::Disconnected
    }

    /// Online: not lost, and the latest snapshot (taken `age` ago) is fresh.
    pub fn online(&self, state: State, age: Option<Duration>) -> bool {
        !self.lost(state) && age.is_some_and(|a| a <= self.freshness)
    }
}

/// `JK_BMS_CONNECT_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectMode {
    #[default]
    Persistent,
    Periodic,
}

impl FromStr for ConnectMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "persistent" => Ok(ConnectMode::Persistent),
            "periodic" => Ok(ConnectMode::Periodic),
            other => Err(format!(
                "\"{other}\" is not a connect mode (expected persistent or periodic)"
            )),
        }
    }
}

/// What a session reports.
#[derive(Debug, Clone)]
pub struct SessionEvent {
    /// Position in the configuration, from 0 (battery 1 is index 0).
    pub battery: usize,
    pub name: Arc<str>,
    pub kind: EventKind,
}

#[derive(Debug, Clone)]
pub enum EventKind {
    State {
        state: State,
        /// Why (for `Disconnected`: what failed), empty when obvious.
        detail: String,
        /// `Disconnected`: when the next attempt comes.
        retry_in: Option<Duration>,
        /// `Disconnected`: attempts that failed in a row, this one included (1 after a
        /// connection that worked and was then lost).
        attempt: u32,
    },
    Snapshot {
        /// Shared: the writer, the live views and MQTT each keep the same one.
        snapshot: Arc<Snapshot>,
        /// Frames decoded on the current connection so far (on an RS485 bus: on the bus).
        decoded: u64,
        /// Corrupt frames rejected on the current connection so far (on an RS485 bus: on the
        /// bus, where bytes cannot always be told apart by pack).
        rejected: u64,
    },
}
