//! The thin seam between jkmon and a BMS: a [`Link`] carries commands to the BMS and the raw
//! byte chunks it sends back, exactly as the medium delivers them (BLE notifications, serial
//! reads). A transport knows nothing of frames; only the session ([`crate::session`]) reconnects.
//! A [`Connector`] opens a new link each time the session asks.
//!
//! The simulated BMS ([`sim`]) is one more transport, so demo mode and tests run the same code
//! as a real installation.
//!
//! [`inverter`] holds the inverter's links (the SmartESS Wi-Fi dongle, Modbus RTU and TCP),
//! beside the BMS transports.
//!
//! Layer 2: may use `protocol` and `inverter`; takes its own settings ([`Plan`], [`BatteryConfig`]), never
//! the whole configuration.

pub mod backoff;
pub mod ble;
pub mod inverter;
pub mod serial;
pub mod sim;

use std::fmt;
use std::str::FromStr;

use futures_util::future::BoxFuture;
use sim::SimConfig;
use thiserror::Error;
use tokio::sync::mpsc;

/// Which medium reaches the BMS (`JK_BMS_TRANSPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportKind {
    #[default]
    Ble,
    Sim,
    Serial,
    Rs485,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Ble => "ble",
            TransportKind::Sim => "sim",
            TransportKind::Serial => "serial",
            TransportKind::Rs485 => "rs485",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TransportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ble" | "bluetooth" => Ok(TransportKind::Ble),
            "sim" | "simulator" => Ok(TransportKind::Sim),
            "serial" => Ok(TransportKind::Serial),
            "rs485" => Ok(TransportKind::Rs485),
            other => Err(format!(
                "\"{other}\" is not a transport (expected ble, sim, serial or rs485)"
            )),
        }
    }
}

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("the connection to the BMS is closed")]
    Disconnected,
    #[error("the {0} transport needs JK_BMS_SERIAL_PORT, the port its adapter is on (like /dev/ttyUSB0)")]
    NotAvailable(TransportKind),
    #[error(transparent)]
    Ble(#[from] ble::BleError),
    #[error(transparent)]
    Serial(#[from] serial::SerialError),
}

/// Opens links to one BMS; the session calls it again after every disconnect.
pub trait Connector: Send + Sync {
    /// Connects by `deadline` or fails with an error that says why (not found, refused, …).
    fn connect(
        &self,
        deadline: tokio::time::Instant,
    ) -> BoxFuture<'_, Result<Link, TransportError>>;
}

/// How long past its deadline a connector may go before it counts as hung. A connector keeps
/// its deadline and says what failed; the margin only guards against one that does not.
pub const CONNECT_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Connects through `connector` by `deadline`; `None` when it hung past the deadline and
/// [`CONNECT_MARGIN`] without saying why.
pub async fn connect_by(
    connector: &dyn Connector,
    deadline: tokio::time::Instant,
) -> Option<Result<Link, TransportError>> {
    tokio::time::timeout_at(deadline + CONNECT_MARGIN, connector.connect(deadline))
        .await
        .ok()
}

/// A connection to one BMS.
pub struct Link {
    /// What the other end calls itself, for logs.
    pub name: String,
    commands: mpsc::Sender<Vec<u8>>,
    chunks: mpsc::Receiver<Vec<u8>>,
}

impl Link {
    /// A connected pair: the `Link` for jkmon and the [`Peer`] for whatever plays the BMS.
    pub fn pair(name: impl Into<String>, capacity: usize) -> (Link, Peer) {
        let (cmd_tx, cmd_rx) = mpsc::channel(capacity);
        let (chunk_tx, chunk_rx) = mpsc::channel(capacity);
        (
            Link {
                name: name.into(),
                commands: cmd_tx,
                chunks: chunk_rx,
            },
            Peer {
                commands: cmd_rx,
                chunks: chunk_tx,
            },
        )
    }

    /// Writes a command to the BMS.
    pub async fn send(&self, bytes: &[u8]) -> Result<(), TransportError> {
        self.commands
            .send(bytes.to_vec())
            .await
            .map_err(|_| TransportError::Disconnected)
    }

    /// The next chunk from the BMS; `None` once the connection is gone.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.chunks.recv().await
    }
}

/// The BMS side of a [`Link`].
pub struct Peer {
    pub commands: mpsc::Receiver<Vec<u8>>,
    pub chunks: mpsc::Sender<Vec<u8>>,
}

/// One BMS to read: its name in logs and views, and where it is: a Bluetooth address, a serial
/// port, or an address on an RS485 bus (none of them for the simulated BMS).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatteryConfig {
    pub name: String,
    pub address: Option<ble::MacAddress>,
    /// `JK_BMS_SERIAL_PORT` for the serial and RS485 transports.
    pub port: Option<std::path::PathBuf>,
    /// The pack's DIP-switch address on the RS485 bus.
    pub rs485_address: Option<u8>,
}

impl BatteryConfig {
    /// Where the BMS is, as the store and the views show it: `C8:47:80:12:AD:71`,
    /// `/dev/ttyUSB0`, or `/dev/ttyUSB0 #2` for RS485 address 2.
    pub fn location(&self) -> Option<String> {
        match (&self.address, &self.port, self.rs485_address) {
            (Some(a), _, _) => Some(a.to_string()),
            (None, Some(p), Some(n)) => Some(format!("{} #{n}", p.display())),
            (None, Some(p), None) => Some(p.display().to_string()),
            (None, None, _) => None,
        }
    }
}

/// The connectors for every configured BMS, and what must be released on exit. On an RS485
/// network one connector (the bus's port) serves every pack: it is in `connectors[0]`.
pub struct Fleet {
    pub connectors: Vec<std::sync::Arc<dyn Connector>>,
    bluetooth: Option<std::sync::Arc<ble::Bluetooth>>,
    addresses: Vec<ble::MacAddress>,
}

impl Fleet {
    /// Disconnects every BMS BlueZ still holds, so the phone app can connect at once.
    pub async fn release(&self) {
        if let Some(bt) = &self.bluetooth {
            for a in &self.addresses {
                bt.release(*a).await;
            }
        }
    }
}

/// What [`connect_all`] needs: the transport and its own settings (the configuration
/// describes them; the service hands them over).
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    pub kind: TransportKind,
    /// The simulated BMS's settings (`JK_SIM_*`); battery N gets the seed plus N.
    pub sim: &'a SimConfig,
    /// The serial port of the serial and RS485 transports.
    pub port: Option<&'a serial::PortConfig>,
}

/// The name of the link an RS485 network's packs share, in logs and `/metrics`.
pub fn bus_name(port: &std::path::Path) -> String {
    format!("RS485 bus on {}", port.display())
}

/// Builds one connector per battery for the planned transport (one Bluetooth adapter shared
/// by all). Fails early when Bluetooth itself is unusable.
pub async fn connect_all(
    plan: Plan<'_>,
    batteries: &[BatteryConfig],
) -> Result<Fleet, TransportError> {
    use std::sync::Arc;
    match plan.kind {
        TransportKind::Sim => Ok(Fleet {
            connectors: (0..batteries.len())
                .map(|i| {
                    let mut sim = plan.sim.clone();
                    sim.seed = sim.seed.wrapping_add(i as u64);
                    Arc::new(sim::SimConnector(sim)) as Arc<dyn Connector>
                })
                .collect(),
            bluetooth: None,
            addresses: Vec::new(),
        }),
        TransportKind::Ble => {
            let bt = ble::Bluetooth::open().await?;
            let addresses: Vec<ble::MacAddress> =
                batteries.iter().filter_map(|b| b.address).collect();
            Ok(Fleet {
                connectors: batteries
                    .iter()
                    .zip(&addresses)
                    .map(|(b, a)| {
                        Arc::new(ble::BleConnector {
                            bluetooth: bt.clone(),
                            name: b.name.clone(),
                            address: *a,
                        }) as Arc<dyn Connector>
                    })
                    .collect(),
                bluetooth: Some(bt),
                addresses,
            })
        }
        TransportKind::Serial | TransportKind::Rs485 => {
            let port = plan
                .port
                .cloned()
                .ok_or(TransportError::NotAvailable(plan.kind))?;
            let name = if plan.kind == TransportKind::Rs485 {
                bus_name(&port.path)
            } else {
                batteries
                    .first()
                    .map_or_else(|| port.path.display().to_string(), |b| b.name.clone())
            };
            Ok(Fleet {
                connectors: vec![
                    Arc::new(serial::SerialConnector { port, name }) as Arc<dyn Connector>
                ],
                bluetooth: None,
                addresses: Vec::new(),
            })
        }
    }
}
