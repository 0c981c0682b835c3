//! Capped exponential backoff with jitter between reconnection attempts: the first retry comes
//! quickly, a BMS that stays away is asked ever less often (never more than once per `max`), and
//! several sessions that failed together do not retry in lockstep.

use std::time::Duration;

use crate::transport::sim::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: Rng,
}

impl Backoff {
    /// `seed` varies the jitter between sessions.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            min: min.min(max),
            max,
            attempt: 0,
            rng: Rng::new(seed),
        }
    }

    /// Failed attempts since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt: `min · 2^attempt`, capped at `max`, then scaled by a
    /// random factor in [0.5, 1] — so it never exceeds `max` and never drops below `min / 2`.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let factor = 0.75 + 0.25 * self.rng.unit();
        nominal.mul_f64(factor)
    }

    /// After a connection that delivered data: start again from `min`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_stays_under_the_cap_with_jitter() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let mut b = Backoff::new(min, max, 7);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let nominal = min.saturating_mul(1 << i).min(max);
            assert!(*d <= nominal && *d >= nominal / 2, "attempt {i}: {d:?}");
        }
        assert!(delays[11] >= Duration::from_secs(1), "{delays:?}");
        // Jitter: the capped delays are not all equal.
        assert!(delays[6..].windows(2).any(|w| w[0] != w[1]), "{delays:?}");
        b.reset();
        assert!(b.next_delay() <= min);
    }

    #[test]
    fn different_sessions_jitter_differently() {
        let mk = |seed| {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), seed);
            (0..5).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_ne!(mk(1), mk(2));
    }
}
