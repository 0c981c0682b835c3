//! The process watchdog (`BMS_TIMEOUT_SEC`): when no BMS at all has delivered a valid frame for
//! that long, something below jkmon is wedged (most often BlueZ) and the best cure is a restart
//! by systemd or Docker. One BMS that is away does not trip it while another still reports.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Watchdog {
    limit: Option<Duration>,
    last_frame: Instant,
    seen_any: bool,
}

impl Watchdog {
    /// `limit` `None` disables it. The clock starts now: a service that never hears a BMS trips
    /// it too.
    pub fn new(limit: Option<Duration>, now: Instant) -> Watchdog {
        Watchdog {
            limit,
            last_frame: now,
            seen_any: false,
        }
    }

    /// A valid frame arrived from any BMS.
    pub fn feed(&mut self, now: Instant) {
        self.last_frame = now;
        self.seen_any = true;
    }

    /// When it trips if nothing is fed; `None` when disabled.
    pub fn deadline(&self) -> Option<Instant> {
        self.limit.map(|l| self.last_frame + l)
    }

    /// The error that explains the exit.
    pub fn explain(&self) -> String {
        let secs = self.limit.map(|l| l.as_secs_f64()).unwrap_or_default();
        if self.seen_any {
            format!("watchdog: no BMS delivered a valid frame for {secs:.0} s (BMS_TIMEOUT_SEC); exiting so that systemd or Docker restarts jkmon. If this repeats, check the adapter (`bluetoothctl show`) and restart bluetoothd")
        } else {
            format!("watchdog: no BMS delivered a valid frame in the {secs:.0} s since start (BMS_TIMEOUT_SEC); exiting so that systemd or Docker restarts jkmon. Check JK_BMS_ADDRESS, that the BMS is in range and that the phone app is closed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_only_after_the_limit_since_the_last_frame() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Some(Duration::from_secs(60)), t0);
        assert_eq!(w.deadline(), Some(t0 + Duration::from_secs(60)));
        assert!(w.explain().contains("since start"));
        w.feed(t0 + Duration::from_secs(50));
        assert_eq!(w.deadline(), Some(t0 + Duration::from_secs(110)));
        assert!(w.explain().contains("for 60 s"));
        assert_eq!(Watchdog::new(None, t0).deadline(), None);
    }
}
