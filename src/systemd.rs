//! The systemd service protocol (`Type=notify`): `READY=1` once the service runs,
//! `WATCHDOG=1` while its BMS sessions are healthy, `STOPPING=1` on the way out. Plain
//! datagrams to `$NOTIFY_SOCKET`; without that variable (not under systemd) nothing is sent.
//!
//! Layer 1: uses no other module of jkmon.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notify {
    socket: UnixDatagram,
    target: std::os::unix::net::SocketAddr,
    /// `$WATCHDOG_USEC`: systemd restarts the service when no `WATCHDOG=1` comes for this long.
    pub watchdog: Option<Duration>,
}

impl Notify {
    /// `None` when not started by systemd with `Type=notify`.
    pub fn from_env() -> Option<Notify> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_string_lossy().into_owned();
        let target = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
        } else {
            std::os::unix::net::SocketAddr::from_pathname(&path).ok()?
        };
        let socket = UnixDatagram::unbound().ok()?;
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|us| *us > 0)
            .map(Duration::from_micros);
        Some(Notify {
            socket,
            target,
            watchdog,
        })
    }

    pub fn send(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.target) {
            tracing::warn!("systemd: could not send {state:?}: {e}");
        }
    }
}
