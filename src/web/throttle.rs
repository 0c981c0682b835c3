//! Guessing `WEB_AUTH_TOKEN` is slowed to a crawl:
//!
//! - a client that sends [`FAILURES`] wrong tokens within [`WINDOW`] — on the login form, as a
//!   bearer token or as the cookie — is refused (429, `Retry-After`) for [`LOCKOUT`]. A client
//!   is an IPv4 address or an IPv6 /64 (one home's or one host's addresses; a host that owns
//!   a /64 cannot dodge the count by changing its address);
//! - all clients together may send [`GLOBAL_FAILURES`] wrong tokens per [`WINDOW`]; past that,
//!   every token is refused until the window ends, so guessing from thousands of addresses
//!   gets no further than from one (the owner retries a minute later);
//! - the clients remembered are bounded ([`REMEMBERED`]): when the table is full the oldest
//!   entries that are *not* locked out go first, so a flood of new addresses never lifts a
//!   lockout;
//! - the log gets one line per minute that had wrong tokens (how many, from how many clients,
//!   how many lockouts), not a line per guess.
//!
//! A client with no token at all is no failure (a browser before its login). Pure apart from
//! the lock and the log: the time is always passed in.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens a client may send within [`WINDOW`].
pub const FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long a client that used up its tries is refused.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// Wrong tokens all clients together may send within [`WINDOW`].
pub const GLOBAL_FAILURES: u32 = 100;
/// Clients remembered at most.
pub const REMEMBERED: usize = 4_096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    fn locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|u| u > now)
    }
}

/// The wrong tokens of one minute, for its line in the log.
#[derive(Debug, Default, Clone, PartialEq)]
struct Minute {
    failures: u32,
    clients: u32,
    lockouts: u32,
    global: bool,
}

#[derive(Default)]
struct Inner {
    clients: HashMap<IpAddr, Entry>,
    /// All clients' wrong tokens in the current window, and when it began.
    global: u32,
    global_since: Option<Instant>,
    global_locked_until: Option<Instant>,
    minute: Minute,
    minute_since: Option<Instant>,
}

#[derive(Default)]
pub struct Throttle {
    inner: Mutex<Inner>,
}

/// The client `ip` counts as: an IPv4 address (an IPv4-mapped IPv6 one too), or the /64 an
/// IPv6 address is in.
pub fn client(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !0xFFFF_FFFF_FFFF_FFFF)),
        },
    }
}

impl Throttle {
    /// `Err(wait)` while `ip`'s client is locked out, or while every client is.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut inner = self.inner.lock().expect("throttle lock");
        inner.log_minute(now);
        if let Some(until) = inner.global_locked_until.filter(|u| *u > now) {
            return Err(until - now);
        }
        match inner.clients.get(&client(ip)).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// A wrong token from `ip` (`how`: "on the login form", "as a bearer token", …).
    pub fn failed(&self, ip: IpAddr, how: &str, now: Instant) {
        let key = client(ip);
        let mut inner = self.inner.lock().expect("throttle lock");
        inner.log_minute(now);
        tracing::debug!("web: wrong access token from {ip} {how}");
        inner.minute.failures += 1;
        // everyone's budget
        if inner
            .global_since
            .is_none_or(|t| now.duration_since(t) >= WINDOW)
        {
            inner.global = 0;
            inner.global_since = Some(now);
        }
        inner.global += 1;
        if inner.global >= GLOBAL_FAILURES && inner.global_locked_until.is_none_or(|u| u <= now) {
            let until = inner.global_since.unwrap_or(now) + WINDOW;
            inner.global_locked_until = Some(until.max(now + Duration::from_secs(1)));
            inner.minute.global = true;
        }
        // this client's
        if inner.clients.len() >= REMEMBERED && !inner.clients.contains_key(&key) {
            inner.make_room(now);
        }
        let entry = inner.clients.entry(key).or_insert(Entry {
            failures: 0,
            since: now,
            locked_until: None,
        });
        let new_window = now.duration_since(entry.since) > WINDOW
            || entry.locked_until.is_some_and(|u| u <= now);
        if new_window {
            *entry = Entry {
                failures: 0,
                since: now,
                locked_until: None,
            };
        }
        let first = entry.failures == 0;
        if entry.locked(now) {
            return;
        }
        entry.failures += 1;
        let locked = entry.failures >= FAILURES;
        if locked {
            entry.locked_until = Some(now + LOCKOUT);
            tracing::debug!(
                "web: {FAILURES} wrong access tokens from {key} within {} s (the last {how}): its requests are refused for {} s",
                WINDOW.as_secs(),
                LOCKOUT.as_secs()
            );
        }
        if first {
            inner.minute.clients += 1;
        }
        if locked {
            inner.minute.lockouts += 1;
        }
    }

    /// The right token from `ip`: its count starts again (a lockout stays).
    pub fn succeeded(&self, ip: IpAddr) {
        let mut inner = self.inner.lock().expect("throttle lock");
        let key = client(ip);
        if inner
            .clients
            .get(&key)
            .is_some_and(|e| e.locked_until.is_none())
        {
            inner.clients.remove(&key);
        }
    }

    /// How many clients are remembered (for tests).
    pub fn remembered(&self) -> usize {
        self.inner.lock().expect("throttle lock").clients.len()
    }

    /// Whether `ip`'s own client is locked out (the global budget aside).
    pub fn client_locked(&self, ip: IpAddr, now: Instant) -> bool {
        let inner = self.inner.lock().expect("throttle lock");
        inner
            .clients
            .get(&client(ip))
            .is_some_and(|e| e.locked(now))
    }
}

impl Inner {
    /// Room for one more client: the oldest eighth of the entries that are not locked out
    /// go; only where every entry is locked out, the one whose lockout ends first.
    fn make_room(&mut self, now: Instant) {
        let mut free: Vec<(Instant, IpAddr)> = self
            .clients
            .iter()
            .filter(|(_, e)| !e.locked(now))
            .map(|(k, e)| (e.since, *k))
            .collect();
        if free.is_empty() {
            let first_free = self
                .clients
                .iter()
                .min_by_key(|(_, e)| e.locked_until)
                .map(|(k, _)| *k);
            if let Some(k) = first_free {
                self.clients.remove(&k);
            }
            return;
        }
        free.sort_unstable();
        let n = (REMEMBERED / 8).clamp(1, free.len());
        for (_, k) in free.into_iter().take(n) {
            self.clients.remove(&k);
        }
    }

    /// Once a minute had wrong tokens: its line in the log, when the next minute begins.
    fn log_minute(&mut self, now: Instant) {
        let since = *self.minute_since.get_or_insert(now);
        if now.duration_since(since) < WINDOW {
            return;
        }
        if let Some(line) = summary(&self.minute) {
            tracing::warn!("{line}");
        }
        self.minute = Minute::default();
        self.minute_since = Some(now);
    }
}

/// A minute's line: `None` for a minute without wrong tokens.
fn summary(m: &Minute) -> Option<String> {
    (m.failures > 0).then(|| {
        let mut line = format!(
            "web: {} wrong access token(s) from {} client(s) in the last minute; {} client(s) locked out for {} s",
            m.failures,
            m.clients,
            m.lockouts,
            LOCKOUT.as_secs()
        );
        if m.global {
            line += &format!(
                "; more than {GLOBAL_FAILURES} in a minute from all clients together: every token was refused for the rest of that minute"
            );
        }
        line
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + i))
    }

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

    #[test]
    fn a_full_table_keeps_its_lockouts() {
        let t = Throttle::default();
        let now = Instant::now();
        let locked = v4(0);
        for _ in 0..FAILURES {
            t.failed(locked, "as a bearer token", now);
        }
        // 4,100 addresses × one wrong token each, spread over the lockout (under the global
        // budget per window)
        for i in 1..=4_100u32 {
            let at = now + Duration::from_millis(u64::from(i) * 14);
            t.failed(v4(i), "as a bearer token", at);
            assert!(t.remembered() <= REMEMBERED);
        }
        let end = now + Duration::from_millis(4_100 * 14);
        assert!(end < now + LOCKOUT);
        assert!(
            t.client_locked(locked, end),
            "the lockout survived the flood of new addresses"
        );
    }

    #[test]
    fn all_clients_together_have_one_budget() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..GLOBAL_FAILURES {
            assert!(t.check(v4(i), now).is_ok(), "{i}");
            t.failed(v4(i), "as a bearer token", now);
        }
        // an address never seen is refused too, until the window ends
        let fresh = v4(9_999);
        let wait = t.check(fresh, now + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(t.check(fresh, now + WINDOW).is_ok());
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 1..=FAILURES {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            t.failed(ip, "as a bearer token", now);
        }
        let same: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(t.check(same, now).is_err(), "the whole /64 is locked");
        assert!(t.check(other, now).is_ok());
        // an IPv4-mapped address is its IPv4 address
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_minute_is_one_line() {
        let m = Minute {
            failures: 120,
            clients: 97,
            lockouts: 3,
            global: true,
        };
        let line = summary(&m).unwrap();
        assert!(
            line.starts_with("web: 120 wrong access token(s) from 97 client(s)"),
            "{line}"
        );
        assert!(line.contains("every token was refused"), "{line}");
        assert_eq!(summary(&Minute::default()), None);
    }
}
