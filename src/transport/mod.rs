//! The thin seam between jkmon and a BMS: a [`Link`] carries commands to the BMS and the raw
//! byte chunks it sends back, exactly as the medium delivers them (BLE notifications, serial
//! reads). A transport knows nothing of frames; only the poller reconnects.
//!
//! The simulated BMS ([`sim`]) is one more transport, so demo mode and tests run the same code
//! as a real installation.

pub mod sim;

use std::fmt;
use std::str::FromStr;

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
    #[error("the {0} transport is not available in this build of jkmon yet; use JK_BMS_TRANSPORT=sim to run against the simulated BMS")]
    NotAvailable(TransportKind),
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
