//! One poll of the inverter and the poller's state, as every reader sees them: produced by
//! jkmon's own poller ([`crate::session::inverter`]), read by the store and the views without
//! depending on the module that drives the link.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::payload::Mode;
use super::registers::{Model, Values};

/// Where the poller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InverterState {
    Connecting,
    Online,
    Offline,
}

impl InverterState {
    pub fn as_str(self) -> &'static str {
        match self {
            InverterState::Connecting => "connecting",
            InverterState::Online => "online",
            InverterState::Offline => "offline",
        }
    }
}

/// One poll.
#[derive(Debug, Clone, PartialEq)]
pub struct InverterPoll {
    pub model: &'static Model,
    /// When the poll ended (the row's `created_at`).
    pub at: DateTime<Utc>,
    /// The values of the blocks that were read (none from a failed block).
    pub values: Values,
    pub mode: Option<Mode>,
    /// The `readings` payload, or the error row's text.
    pub row: Result<String, String>,
    /// What failed, block by block (empty when all was read).
    pub errors: Vec<String>,
    /// How long the poll took.
    pub took: Duration,
    /// The state after this poll.
    pub state: InverterState,
}

/// What the poller tells the service.
#[derive(Debug, Clone)]
pub enum InverterEvent {
    Poll(Arc<InverterPoll>),
    /// The state changed, and why (the first is `Connecting`, at the start).
    State {
        state: InverterState,
        detail: String,
        /// The model's key and the link in words.
        model: &'static str,
        link: String,
        interval: Duration,
    },
}
