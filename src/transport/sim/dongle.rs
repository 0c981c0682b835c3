//! A simulated SmartESS Wi-Fi dongle with an SMG-II inverter behind it, speaking the real frames
//! on the loopback: it takes `set>server=<ip>:<port>;` on UDP, answers `rsp>server=1;`, connects
//! back over TCP and answers Eybond-wrapped Modbus reads from the model's register image. Faults
//! come by request number, so tests know which read met which (a dropped request, a bad CRC, an
//! exception, a closed connection); the grid can be cut to play a grid loss.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

pub use super::inverter::{Event, Faults};
use super::inverter::{Reply, SimInverter, SimInverterConfig};
use crate::inverter::modbus::{self, HEADER_LEN};
use crate::inverter::registers::{Model, Values};

#[derive(Debug, Clone)]
pub struct SimDongleConfig {
    pub inverter: SimInverterConfig,
    /// Connect back after a `set>server` (false: a dongle on another network).
    pub dial_back: bool,
}

impl SimDongleConfig {
    pub fn new(model: &'static Model) -> SimDongleConfig {
        SimDongleConfig {
            inverter: SimInverterConfig::new(model),
            dial_back: true,
        }
    }
}

/// The running simulated dongle; dropped, it stops.
pub struct SimDongle {
    /// Where it takes `set>server` (the dongle's address and UDP port).
    pub udp_addr: SocketAddr,
    pub inverter: SimInverter,
    task: JoinHandle<()>,
}

impl Drop for SimDongle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SimDongle {
    /// Starts on a free loopback UDP port.
    pub async fn start(config: SimDongleConfig) -> std::io::Result<SimDongle> {
        Self::start_on("127.0.0.1:0".parse().expect("an address"), config).await
    }

    /// Starts on `udp` (the demo's dongle takes a fixed port when it is free).
    pub async fn start_on(udp: SocketAddr, config: SimDongleConfig) -> std::io::Result<SimDongle> {
        let udp = UdpSocket::bind(udp).await?;
        let udp_addr = udp.local_addr()?;
        let inverter = SimInverter::new(config.inverter.clone());
        let task = tokio::spawn(run(config.dial_back, udp, inverter.clone()));
        Ok(SimDongle {
            udp_addr,
            inverter,
            task,
        })
    }

    /// The inverter's values as its registers hold them now.
    pub fn values(&self) -> Values {
        self.inverter.values()
    }

    /// Cuts the grid (the inverter goes off-grid) or brings it back.
    pub fn set_grid(&self, on: bool) {
        self.inverter.set_grid(on);
    }

    pub fn events(&self) -> Vec<Event> {
        self.inverter.events()
    }
}

async fn run(dial_back: bool, udp: UdpSocket, inverter: SimInverter) {
    let mut buf = [0u8; 256];
    let mut link: Option<JoinHandle<()>> = None;
    loop {
        let Ok((n, from)) = udp.recv_from(&mut buf).await else {
            return;
        };
        let text = String::from_utf8_lossy(&buf[..n]).trim().to_string();
        let Some(target) = text
            .strip_prefix("set>server=")
            .map(|t| t.trim_end_matches(';'))
            .and_then(|t| t.parse::<SocketAddr>().ok())
        else {
            continue;
        };
        inverter.record(Event::Announced(text.clone()));
        let _ = udp.send_to(b"rsp>server=1;", from).await;
        if !dial_back {
            continue;
        }
        // a new announcement while connected: the new address replaces the old link
        if let Some(old) = link.take() {
            old.abort();
        }
        link = Some(tokio::spawn(serve(target, inverter.clone())));
    }
}

/// Connects to `target` (retrying a little while it refuses) and answers its reads.
async fn serve(target: SocketAddr, inverter: SimInverter) {
    let mut conn = None;
    for _ in 0..100 {
        match TcpStream::connect(target).await {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let Some(mut conn) = conn else { return };
    inverter.record(Event::Connected(target));
    loop {
        let mut header = [0u8; HEADER_LEN];
        if conn.read_exact(&mut header).await.is_err() {
            return;
        }
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let mut frame = header.to_vec();
        frame.resize(HEADER_LEN + len, 0);
        if conn.read_exact(&mut frame[HEADER_LEN..]).await.is_err() {
            return;
        }
        // not a well-formed read: a real inverter stays silent
        let Some((tid, read)) = modbus::parse_eybond_request(&frame) else {
            continue;
        };
        let answer = inverter.answer(&read);
        match answer {
            Reply::Close => return,
            Reply::Silent => continue,
            Reply::Rtu(rtu) => {
                if conn
                    .write_all(&modbus::eybond_wrap(tid, &rtu))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
