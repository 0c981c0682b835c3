//! Guessing `WEB_AUTH_TOKEN` is slowed to a crawl: a client (an IP address) that sends
//! [`FAILURES`] wrong tokens within [`WINDOW`] — on the login form, as a bearer token or as
//! the cookie — is refused (429, `Retry-After`) for [`LOCKOUT`], with a log line naming it.
//! Other clients are not affected. A client with no token at all is no failure (a browser
//! before its login).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens a client may send within [`WINDOW`].
pub const FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long a client that used up its tries is refused.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// Clients remembered at most (older entries are dropped first).
const REMEMBERED: usize = 4_096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

#[derive(Default)]
pub struct Throttle {
    clients: Mutex<HashMap<IpAddr, Entry>>,
}

impl Throttle {
    /// `Err(wait)` while `ip` is locked out.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let clients = self.clients.lock().expect("throttle lock");
        match clients.get(&ip).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// A wrong token from `ip` (`how`: "on the login form", "as a bearer token", …).
    pub fn failed(&self, ip: IpAddr, how: &str, now: Instant) {
        let mut clients = self.clients.lock().expect("throttle lock");
        if clients.len() >= REMEMBERED && !clients.contains_key(&ip) {
            clients.retain(|_, e| {
                now.duration_since(e.since) < WINDOW || e.locked_until.is_some_and(|u| u > now)
            });
            if clients.len() >= REMEMBERED {
                clients.clear();
            }
        }
        let entry = clients.entry(ip).or_insert(Entry {
            failures: 0,
            since: now,
            locked_until: None,
        });
        if now.duration_since(entry.since) > WINDOW || entry.locked_until.is_some() {
            *entry = Entry {
                failures: 0,
                since: now,
                locked_until: None,
            };
        }
        entry.failures += 1;
        tracing::debug!("web: wrong access token from {ip} {how}");
        if entry.failures >= FAILURES {
            entry.locked_until = Some(now + LOCKOUT);
            tracing::warn!(
                "web: {FAILURES} wrong access tokens from {ip} within {} s (the last {how}): its requests are refused for {} s",
                WINDOW.as_secs(),
                LOCKOUT.as_secs()
            );
        }
    }

    /// The right token from `ip`: its count starts again.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut clients = self.clients.lock().expect("throttle lock");
        if clients.get(&ip).is_some_and(|e| e.locked_until.is_none()) {
            clients.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_locked_out_after_its_tries_and_others_are_not() {
        let t = Throttle::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let now = Instant::now();
        for i in 0..FAILURES {
            assert!(t.check(a, now).is_ok(), "try {i}");
            t.failed(a, "as a bearer token", now);
        }
        let wait = t.check(a, now).unwrap_err();
        assert_eq!(wait, LOCKOUT);
        assert!(t.check(b, now).is_ok());
        // the right token does not lift a lockout
        t.succeeded(a);
        assert!(t.check(a, now + Duration::from_secs(1)).is_err());
        assert!(t.check(a, now + LOCKOUT).is_ok(), "over after the lockout");
        // failures far apart never lock
        let later = now + LOCKOUT;
        for i in 0..10u64 {
            t.failed(b, "on the login form", later + WINDOW * (i as u32 + 1) * 2);
        }
        assert!(t.check(b, later + WINDOW * 25).is_ok());
    }
}
