//! systemd's watchdog: fed while the batteries deliver.

use tokio::time::Instant;

use crate::session::Liveness;

/// systemd's watchdog, fed at half its interval while a BMS delivered a snapshot within that
/// interval (or always, when this process runs no sessions).
pub(super) struct SystemdWatchdog<'a> {
    notify: Option<&'a crate::systemd::Notify>,
    every: Option<std::time::Duration>,
    tick: Option<tokio::time::Interval>,
    pub(super) last_snapshot: Instant,
    /// How long jkmon itself waits for the next snapshot without worry: in periodic mode a
    /// whole cycle (it may be longer than `WatchdogSec`), else nothing beyond the watchdog.
    expected_gap: std::time::Duration,
}

impl<'a> SystemdWatchdog<'a> {
    pub(super) fn new(notify: Option<&'a crate::systemd::Notify>, liveness: Liveness) -> Self {
        let every = notify.and_then(|n| n.watchdog).map(|w| w / 2);
        let expected_gap = match liveness.mode {
            crate::session::ConnectMode::Periodic => liveness.freshness,
            crate::session::ConnectMode::Persistent => std::time::Duration::ZERO,
        };
        SystemdWatchdog {
            notify,
            every,
            tick: every.map(tokio::time::interval),
            last_snapshot: Instant::now(),
            expected_gap,
        }
    }

    /// Waits for the next feeding time; never returns without a watchdog.
    pub(super) async fn due(&mut self) {
        match self.tick.as_mut() {
            Some(t) => {
                t.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    pub(super) fn feed(&self, sessions: bool) {
        let limit = (self.every.unwrap_or_default() * 2).max(self.expected_gap);
        if !sessions || self.last_snapshot.elapsed() < limit {
            if let Some(n) = self.notify {
                n.send("WATCHDOG=1");
            }
        }
    }
}
