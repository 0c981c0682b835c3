//! Switch writes through a session: a request travels on the connection the session holds (no
//! second connection), waits behind the handshake, and is answered only by the BMS's own next
//! settings frame — the `C8` acknowledgement is no proof. A link that drops before the answer
//! gets the write once more after it reconnects; a battery that is offline is never written.

use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::protocol::control::{self, Confirmation, ControlError, Setting};
use crate::protocol::Settings;

/// How long the BMS has to show a write in a settings frame.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(5);

/// A write asked of a session; the answer comes on `reply`.
#[derive(Debug)]
pub struct WriteRequest {
    /// The battery, from 0 (an RS485 bus session serves several through one channel).
    pub battery: usize,
    pub setting: Setting,
    pub reply: oneshot::Sender<Result<(), WriteError>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WriteError {
    #[error(transparent)]
    NotOnThisBoard(#[from] ControlError),
    #[error("the BMS is offline: nothing was written ({0})")]
    Offline(String),
    #[error("the BMS acknowledged the write but its settings still show {switch} {}: it did not take it", control::on_off(*reported))]
    Refused {
        switch: control::Switch,
        reported: bool,
    },
    #[error(
        "the BMS sent no settings frame showing {0} within {1} s; what it reports is unchanged"
    )]
    NoConfirmation(Setting, u64),
    #[error("the link to the BMS dropped twice before it confirmed {0}")]
    Dropped(Setting),
    #[error("the session stopped")]
    Stopped,
    /// The link cannot take a write now (another master polls the RS485 network).
    #[error("{0}")]
    Busy(String),
    /// The BMS never answered the write itself (RS485: no FC 0x10 echo, twice).
    #[error("{0}")]
    Unanswered(String),
}

impl WriteError {
    /// No settings frame showed `setting` within [`CONFIRM_WITHIN`].
    pub fn unconfirmed(setting: Setting) -> WriteError {
        WriteError::NoConfirmation(setting, CONFIRM_WITHIN.as_secs())
    }

    /// The word the record keeps for this outcome.
    pub fn outcome(&self) -> &'static str {
        match self {
            WriteError::NotOnThisBoard(_) => "not_on_this_board",
            WriteError::Offline(_) => "offline",
            WriteError::Refused { .. } => "refused",
            WriteError::NoConfirmation(..) => "not_confirmed",
            WriteError::Dropped(_) => "dropped",
            WriteError::Stopped => "stopped",
            WriteError::Busy(_) => "busy",
            WriteError::Unanswered(_) => "unanswered",
        }
    }
}

/// What a settings frame that arrived after the write of `setting` says: `Some(answer)` when
/// it decides it, `None` when it does not carry the switch (wait for the deadline).
pub fn settle(settings: &Settings, setting: Setting) -> Option<Result<(), WriteError>> {
    match control::confirmation(settings, setting) {
        Confirmation::Confirmed => Some(Ok(())),
        Confirmation::Refused => Some(Err(WriteError::Refused {
            switch: setting.switch,
            reported: !setting.on,
        })),
        Confirmation::Unknown => None,
    }
}

/// Waits until `until` for a write asked on `writes`: `Some` as soon as one is, `None` at
/// `until`. A channel nobody sends on any more becomes `None` and the wait goes on.
pub async fn next_write_until(
    writes: &mut Option<mpsc::Receiver<WriteRequest>>,
    until: Instant,
) -> Option<WriteRequest> {
    loop {
        let Some(rx) = writes.as_mut() else {
            tokio::time::sleep_until(until).await;
            return None;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return None,
            request = rx.recv() => match request {
                Some(r) => return Some(r),
                None => *writes = None,
            },
        }
    }
}

/// The sending side: one per battery whose switches may be set (shared by the packs of an
/// RS485 network, whose one session serves them all).
pub type Writes = mpsc::Sender<WriteRequest>;

/// Asks the session behind `writes` to set `setting` on `battery` (from 0); waits for its
/// confirmation.
pub async fn set(writes: &Writes, battery: usize, setting: Setting) -> Result<(), WriteError> {
    let (reply, answer) = oneshot::channel();
    writes
        .send(WriteRequest {
            battery,
            setting,
            reply,
        })
        .await
        .map_err(|_| WriteError::Stopped)?;
    answer.await.unwrap_or(Err(WriteError::Stopped))
}

/// A write sent and waiting for its settings frame.
#[derive(Debug)]
pub struct Pending {
    pub request: WriteRequest,
    pub deadline: Instant,
    /// Connections it was sent on (a second drop gives up).
    pub attempts: u32,
}

impl Pending {
    pub fn new(request: WriteRequest) -> Pending {
        Pending {
            request,
            deadline: Instant::now() + CONFIRM_WITHIN,
            attempts: 1,
        }
    }

    /// A settings frame arrived: `Some(answer)` when it decides the write.
    pub fn settled_by(&self, settings: &Settings) -> Option<Result<(), WriteError>> {
        settle(settings, self.request.setting)
    }

    pub fn answer(self, result: Result<(), WriteError>) {
        let _ = self.request.reply.send(result);
    }
}
