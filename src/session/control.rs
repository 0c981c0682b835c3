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

/// Where a write is on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Asked, or to go out once more after the link dropped: not on the wire yet.
    Queued,
    /// On the wire, waiting for the link's own echo of it (RS485's FC 0x10 answer).
    Sent,
    /// Waiting until then for a settings frame that shows it.
    Confirming { until: Instant },
}

/// One switch write on its way, the same on every link (BLE stream, serial poll, RS485 bus):
/// queued → sent → confirming → answered. A write whose link drops (or whose echo never comes)
/// goes out once more; the second loss gives up. The time is always the caller's.
#[derive(Debug)]
pub struct Write {
    request: WriteRequest,
    phase: Phase,
    /// Times it went out.
    attempts: u32,
}

impl Write {
    pub fn new(request: WriteRequest) -> Write {
        Write {
            request,
            phase: Phase::Queued,
            attempts: 0,
        }
    }

    pub fn setting(&self) -> Setting {
        self.request.setting
    }

    pub fn battery(&self) -> usize {
        self.request.battery
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// It went out at `now`. A link that echoes writes (`awaits_echo`) waits for that first;
    /// otherwise the wait for the settings frame starts now.
    pub fn sent(&mut self, now: Instant, awaits_echo: bool) {
        self.attempts += 1;
        self.phase = if awaits_echo {
            Phase::Sent
        } else {
            Phase::Confirming {
                until: now + CONFIRM_WITHIN,
            }
        };
    }

    /// The link echoed it at `now`: the wait for the settings frame starts.
    pub fn echoed(&mut self, now: Instant) {
        if self.phase == Phase::Sent {
            self.phase = Phase::Confirming {
                until: now + CONFIRM_WITHIN,
            };
        }
    }

    /// A settings frame arrived: `Some(answer)` when it decides the write (only once the write
    /// is out and waiting for it).
    pub fn settled_by(&self, settings: &Settings) -> Option<Result<(), WriteError>> {
        match self.phase {
            Phase::Confirming { .. } => settle(settings, self.request.setting),
            _ => None,
        }
    }

    /// The settings frame did not come in time.
    pub fn expired(&self, now: Instant) -> bool {
        matches!(self.phase, Phase::Confirming { until } if now >= until)
    }

    /// When it stops waiting, if it waits for the clock.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Confirming { until } => Some(until),
            _ => None,
        }
    }

    /// The link dropped, or the echo never came: `true` when it goes out once more (queued
    /// again), `false` when this was its second try. A write not yet out stays queued.
    pub fn lost(&mut self) -> bool {
        if self.phase == Phase::Queued {
            return true;
        }
        if self.attempts < 2 {
            self.phase = Phase::Queued;
            return true;
        }
        false
    }

    /// Answers whoever asked (the controller logs the outcome, with who asked).
    pub fn answer(self, result: Result<(), WriteError>) {
        let _ = self.request.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::control::Switch;
    use crate::protocol::Settings;

    fn write() -> (Write, oneshot::Receiver<Result<(), WriteError>>) {
        let (reply, answer) = oneshot::channel();
        let setting = Setting {
            switch: Switch::Charging,
            on: false,
        };
        let request = WriteRequest {
            battery: 0,
            setting,
            reply,
        };
        (Write::new(request), answer)
    }

    #[test]
    fn a_write_waits_for_its_echo_then_for_the_settings_frame_until_its_deadline() {
        let t0 = Instant::now();
        let (mut w, _answer) = write();
        w.sent(t0, true);
        assert_eq!(w.phase(), Phase::Sent);
        assert_eq!(w.deadline(), None, "no clock runs before the echo");
        assert!(
            w.settled_by(&Settings::default()).is_none(),
            "a frame before the echo decides nothing"
        );
        w.echoed(t0 + Duration::from_millis(80));
        let until = t0 + Duration::from_millis(80) + CONFIRM_WITHIN;
        assert_eq!(w.deadline(), Some(until));
        assert!(!w.expired(until - Duration::from_millis(1)));
        assert!(w.expired(until));
    }

    #[test]
    fn a_lost_write_goes_out_once_more_then_gives_up() {
        let t0 = Instant::now();
        let (mut w, _answer) = write();
        assert!(w.lost(), "a queued write waits for the next link");
        w.sent(t0, false);
        assert!(w.lost());
        assert_eq!(w.phase(), Phase::Queued);
        w.sent(t0 + Duration::from_secs(3), false);
        assert!(!w.lost(), "the second loss gives up");
    }

    #[tokio::test]
    async fn the_answer_reaches_whoever_asked() {
        let (w, answer) = write();
        w.answer(Err(WriteError::Stopped));
        assert_eq!(answer.await.unwrap(), Err(WriteError::Stopped));
    }
}
