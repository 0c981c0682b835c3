//! The SmartESS Wi-Fi dongle's reverse-connect link to an Easun / ISolar inverter.
//!
//! The dongle serves nothing itself: jkmon tells it over UDP (`set>server=<ip>:<port>;` to its
//! port 58899) where to connect, and the dongle opens a TCP connection *to jkmon*. Modbus reads
//! then travel in the Eybond wrapper over that connection ([`crate::inverter::modbus`]).
//!
//! Unlike the Python client this link:
//! - listens on one port for the whole life of the process (no port creep after a failure),
//!   before it announces itself, so a dongle that dials at once finds it open;
//! - re-announces every few seconds while no dongle is connected, and takes any UDP answer (or
//!   none);
//! - keeps one request in flight, frames answers by their length, skips frames that answer
//!   another TID or are not forwarded inverter answers, and checks every answer
//!   ([`crate::inverter::modbus::eybond_answer`]);
//! - keeps the connection across polls, drops it on EOF or after consecutive timeouts, and lets
//!   a new dial-back replace it;
//! - reads with function 03 and moves to 04 only after an "illegal function" answer.
//!
//! Layer 2: uses `inverter` (the pure protocol).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

use crate::inverter::modbus::{self, FrameError, Function, Read, HEADER_LEN, ILLEGAL_FUNCTION};

/// The dongle's UDP port for `set>server` (fixed in the dongles seen so far).
pub const DONGLE_UDP_PORT: u16 = 58899;
/// The port jkmon listens on for the dongle's connection (the SmartESS app's).
pub const LISTEN_PORT: u16 = 8899;

/// Where the dongle is and how to talk to it.
#[derive(Debug, Clone, PartialEq)]
pub struct DongleConfig {
    /// The dongle's address and UDP port (`INVERTER_IP`, port 58899).
    pub dongle: SocketAddr,
    /// This machine's address on the dongle's network (`LOCAL_IP`): announced, and listened on.
    pub local_ip: IpAddr,
    /// The TCP port announced and listened on (8899; 0 picks a free one, for tests).
    pub listen_port: u16,
    /// The inverter's Modbus unit (1).
    pub unit: u8,
    /// How long one read may take.
    pub read_timeout: Duration,
    /// How long to wait for the dongle to connect back before giving up.
    pub dial_back_timeout: Duration,
    /// How often to re-announce while waiting.
    pub announce_every: Duration,
}

impl DongleConfig {
    pub fn new(dongle_ip: IpAddr, local_ip: IpAddr) -> DongleConfig {
        DongleConfig {
            dongle: SocketAddr::new(dongle_ip, DONGLE_UDP_PORT),
            local_ip,
            listen_port: LISTEN_PORT,
            unit: 1,
            read_timeout: Duration::from_secs(5),
            dial_back_timeout: Duration::from_secs(30),
            announce_every: Duration::from_secs(5),
        }
    }
}

/// What went wrong on the link, each with what to check.
#[derive(Debug, Error)]
pub enum DongleError {
    #[error("cannot listen on {addr} for the dongle's connection: {source}; is another program (the Python poller?) using the port, and is LOCAL_IP ({}) this machine's address?", addr.ip())]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot send the announcement to the dongle at {dongle}: {source}; check INVERTER_IP and this machine's network")]
    Announce {
        dongle: SocketAddr,
        source: std::io::Error,
    },
    #[error("the dongle at {dongle} did not connect back to {listen} within {waited_s} s: check that the firewall lets TCP port {} in, that LOCAL_IP ({}) is this machine's address on the dongle's network, and that the dongle is on that network (its app shows it online)", listen.port(), listen.ip())]
    NoDialBack {
        dongle: SocketAddr,
        listen: SocketAddr,
        waited_s: u64,
    },
    #[error("the dongle closed the connection")]
    Closed,
    #[error("no answer to the read of {count} register(s) from {start} within {timeout_ms} ms")]
    Timeout {
        start: u16,
        count: u16,
        timeout_ms: u64,
    },
    #[error("the read of {count} register(s) from {start} failed: {error}")]
    Frame {
        start: u16,
        count: u16,
        error: FrameError,
    },
    #[error("the connection to the dongle failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Consecutive timeouts after which the connection counts as dead.
const TIMEOUTS_BEFORE_DROP: u32 = 3;

/// The link: one listener for the process's life, at most one dongle connection.
pub struct Dongle {
    config: DongleConfig,
    listener: TcpListener,
    udp: UdpSocket,
    conn: Option<TcpStream>,
    /// The address announced (`local_ip` and the listener's port).
    listen: SocketAddr,
    next_tid: u16,
    function: Function,
    timeouts: u32,
    /// How many times a dongle connected (a reconnection adds one).
    pub connections: u32,
}

impl Dongle {
    /// Listens on `LOCAL_IP:port` (before anything is announced).
    pub async fn bind(config: DongleConfig) -> Result<Dongle, DongleError> {
        let addr = SocketAddr::new(config.local_ip, config.listen_port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| DongleError::Listen { addr, source })?;
        let listen = listener.local_addr()?;
        let udp = UdpSocket::bind(SocketAddr::new(config.local_ip, 0))
            .await
            .map_err(|source| DongleError::Listen { addr, source })?;
        Ok(Dongle {
            config,
            listener,
            udp,
            conn: None,
            listen,
            next_tid: 0x0772,
            function: Function::Holding,
            timeouts: 0,
            connections: 0,
        })
    }

    pub fn config(&self) -> &DongleConfig {
        &self.config
    }

    /// The address announced to the dongle.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Announces this machine until the dongle connects back (or the wait is over).
    pub async fn connect(&mut self) -> Result<(), DongleError> {
        let deadline = Instant::now() + self.config.dial_back_timeout;
        let announce = format!("set>server={}:{};", self.listen.ip(), self.listen.port());
        loop {
            self.udp
                .send_to(announce.as_bytes(), self.config.dongle)
                .await
                .map_err(|source| DongleError::Announce {
                    dongle: self.config.dongle,
                    source,
                })?;
            let wait = (Instant::now() + self.config.announce_every).min(deadline);
            let mut reply = [0u8; 64];
            loop {
                tokio::select! {
                    accepted = timeout_at(wait, self.listener.accept()) => {
                        match accepted {
                            Ok(Ok((stream, peer))) => {
                                tracing::info!("inverter: the dongle connected from {peer}");
                                self.adopt(stream);
                                return Ok(());
                            }
                            Ok(Err(e)) => return Err(DongleError::Io(e)),
                            Err(_) => break,
                        }
                    }
                    // the dongle's `rsp>server=N;` (any content, or none, will do)
                    got = self.udp.recv_from(&mut reply) => {
                        if let Ok((n, from)) = got {
                            let text = String::from_utf8_lossy(&reply[..n]);
                            tracing::debug!("inverter: {from} answered {:?}", text.trim());
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(DongleError::NoDialBack {
                    dongle: self.config.dongle,
                    listen: self.listen,
                    waited_s: self.config.dial_back_timeout.as_secs(),
                });
            }
        }
    }

    /// A new dial-back waiting in the listener replaces the current connection.
    fn take_new_connection(&mut self) {
        use futures_util::FutureExt;
        if let Some(Ok((stream, peer))) = self.listener.accept().now_or_never() {
            tracing::info!(
                "inverter: the dongle connected again from {peer}; using the new connection"
            );
            self.adopt(stream);
        }
    }

    /// `stream` is the dongle's connection from now on, with a fresh start: no timeouts
    /// counted, function 03 first.
    fn adopt(&mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        self.conn = Some(stream);
        self.connections += 1;
        self.timeouts = 0;
        self.function = Function::Holding;
    }

    /// `count` registers from `start`, checked; connects first when needed.
    pub async fn read(&mut self, start: u16, count: u16) -> Result<Vec<u16>, DongleError> {
        self.take_new_connection();
        if self.conn.is_none() {
            self.connect().await?;
        }
        let read = Read {
            unit: self.config.unit,
            function: self.function,
            start,
            count,
        };
        match self.exchange(read).await {
            // function 03 unknown to this firmware: 04 from now on, on this connection
            Err(DongleError::Frame {
                error:
                    FrameError::Exception {
                        code: ILLEGAL_FUNCTION,
                        ..
                    },
                ..
            }) if self.function == Function::Holding => {
                tracing::info!("inverter: function 03 refused; reading input registers (04)");
                self.function = Function::Input;
                let read = Read {
                    function: Function::Input,
                    ..read
                };
                self.exchange(read).await
            }
            other => other,
        }
    }

    /// One request and its answer; drops the connection when it is dead.
    async fn exchange(&mut self, read: Read) -> Result<Vec<u16>, DongleError> {
        let tid = self.next_tid;
        self.next_tid = self.next_tid.wrapping_add(1);
        let deadline = Instant::now() + self.config.read_timeout;
        let timeout = || DongleError::Timeout {
            start: read.start,
            count: read.count,
            timeout_ms: self.config.read_timeout.as_millis() as u64,
        };
        let Some(conn) = self.conn.as_mut() else {
            return Err(DongleError::Closed);
        };
        let result = async {
            conn.write_all(&read.eybond(tid)).await?;
            loop {
                let frame = read_frame(conn).await?;
                match modbus::eybond_answer(&read, tid, &frame) {
                    // a late answer to an earlier request, or a collector frame: not ours
                    Err(FrameError::Tid { .. } | FrameError::NotForwarded(..)) => continue,
                    Err(error) => {
                        return Ok(Err(DongleError::Frame {
                            start: read.start,
                            count: read.count,
                            error,
                        }))
                    }
                    Ok(regs) => return Ok(Ok(regs)),
                }
            }
        };
        match timeout_at(deadline, result).await {
            Ok(Ok(answer)) => {
                self.timeouts = 0;
                answer
            }
            Ok(Err(e)) => {
                // EOF, a reset, or a length no answer has: the stream is gone or out of step
                self.conn = None;
                match e {
                    FrameReadError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        Err(DongleError::Closed)
                    }
                    FrameReadError::Io(e) => Err(DongleError::Io(e)),
                    FrameReadError::Frame(error) => Err(DongleError::Frame {
                        start: read.start,
                        count: read.count,
                        error,
                    }),
                }
            }
            Err(_) => {
                self.timeouts += 1;
                if self.timeouts >= TIMEOUTS_BEFORE_DROP {
                    tracing::warn!(
                        "inverter: {TIMEOUTS_BEFORE_DROP} reads in a row unanswered; waiting for the dongle to connect again"
                    );
                    self.conn = None;
                }
                Err(timeout())
            }
        }
    }
}

#[derive(Debug)]
enum FrameReadError {
    Io(std::io::Error),
    Frame(FrameError),
}

impl From<std::io::Error> for FrameReadError {
    fn from(e: std::io::Error) -> Self {
        FrameReadError::Io(e)
    }
}

/// One Eybond frame: the 6-byte header, then exactly the LEN bytes it announces.
async fn read_frame(conn: &mut TcpStream) -> Result<Vec<u8>, FrameReadError> {
    let mut header = [0u8; HEADER_LEN];
    conn.read_exact(&mut header).await?;
    let len = modbus::eybond_len(&header).map_err(FrameReadError::Frame)?;
    let mut frame = vec![0u8; HEADER_LEN + len];
    frame[..HEADER_LEN].copy_from_slice(&header);
    conn.read_exact(&mut frame[HEADER_LEN..]).await?;
    Ok(frame)
}
