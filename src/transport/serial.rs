//! Wired transports: a serial port (a USB-TTL adapter on the BMS's GPS/UART port, or a USB-RS485
//! adapter on a JK-PB bus), opened with tokio-serial at 8N1 and bridged to a [`Link`]: every
//! read becomes a chunk, every command is written whole. The port knows nothing of frames or of
//! who is on the wire; when it fails (the adapter was unplugged, the pty closed) the link closes
//! and the session reopens the port with backoff.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_serial::SerialPortBuilderExt;

use super::{Connector, Link, Peer, TransportError};

/// The JK GPS/UART port and the JK-PB RS485 bus both run at 115200 baud, 8N1.
pub const DEFAULT_BAUD: u32 = 115_200;

/// Where the wire is plugged in (`JK_BMS_SERIAL_PORT`, `JK_BMS_BAUD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    pub path: PathBuf,
    pub baud: u32,
}

#[derive(Debug, Error)]
pub enum SerialError {
    #[error("cannot open the serial port {path}: {reason}; {fix}")]
    Open {
        path: String,
        reason: String,
        fix: String,
    },
}

/// Opens `port` (8N1, no flow control).
pub fn open(port: &PortConfig) -> Result<tokio_serial::SerialStream, SerialError> {
    open_named(port, ("JK_BMS_SERIAL_PORT", "JK_BMS_BAUD", "115200 for JK"))
}

/// Opens `port`; a failure names the variables that set it (`vars`: port, baud, usual baud).
pub fn open_named(
    port: &PortConfig,
    vars: (&str, &str, &str),
) -> Result<tokio_serial::SerialStream, SerialError> {
    tokio_serial::new(port.path.to_string_lossy(), port.baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(tokio_serial::FlowControl::None)
        .open_native_async()
        .map_err(|e| open_error(&port.path, &e, vars))
}

fn open_error(
    path: &Path,
    e: &tokio_serial::Error,
    (port_var, baud_var, usual): (&str, &str, &str),
) -> SerialError {
    use tokio_serial::ErrorKind as K;
    let fix = match e.kind {
        K::Io(ErrorKind::NotFound) => format!(
            "is the USB adapter plugged in? `ls -l /dev/serial/by-id/` lists adapters under names that survive re-plugging; set {port_var} to one of them"
        ),
        K::Io(ErrorKind::PermissionDenied) => {
            "add the user that runs jkmon to the dialout group (`sudo usermod -aG dialout $USER`, then log in again)".into()
        }
        K::NoDevice => {
            "another program holds the port (another jkmon, ModemManager, a terminal program): stop it".into()
        }
        _ => format!("check {port_var} and {baud_var} ({usual})"),
    };
    SerialError::Open {
        path: path.display().to_string(),
        reason: e.description.clone(),
        fix,
    }
}

/// Bridges a byte stream to a [`Link`] for jkmon: reads become chunks, commands are written.
/// The task ends, and the link closes, when the stream fails or reaches its end, or when the
/// link is dropped (which closes the port).
pub fn link_over<S>(stream: S, name: impl Into<String>) -> Link
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (link, peer) = Link::pair(name, 64);
    let name = link.name.clone();
    tokio::spawn(async move {
        let why = pump(stream, peer.chunks, peer.commands).await;
        tracing::debug!(port = %name, "serial link closed: {why}");
    });
    link
}

/// The other way round, for whatever plays the BMS on a port (the simulator): reads become the
/// [`Peer`]'s commands, its chunks are written.
pub fn peer_over<S>(stream: S) -> Peer
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (chunk_tx, chunk_rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let why = pump(stream, cmd_tx, chunk_rx).await;
        tracing::debug!("simulated port closed: {why}");
    });
    Peer {
        commands: cmd_rx,
        chunks: chunk_tx,
    }
}

async fn pump<S>(
    stream: S,
    inbound: mpsc::Sender<Vec<u8>>,
    mut outbound: mpsc::Receiver<Vec<u8>>,
) -> String
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = vec![0u8; 1024];
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) => return "end of stream".into(),
                Ok(n) => {
                    if inbound.send(buf[..n].to_vec()).await.is_err() {
                        return "nobody reads any more".into();
                    }
                }
                Err(e) => return format!("read failed: {e}"),
            },
            bytes = outbound.recv() => match bytes {
                None => return "released".into(),
                Some(bytes) => {
                    if let Err(e) = async {
                        writer.write_all(&bytes).await?;
                        writer.flush().await
                    }.await {
                        return format!("write failed: {e}");
                    }
                }
            },
        }
    }
}

/// Opens the port each time the session asks (after a failure, after an unplug).
pub struct SerialConnector {
    pub port: PortConfig,
    pub name: String,
}

impl Connector for SerialConnector {
    fn connect(
        &self,
        _deadline: tokio::time::Instant,
    ) -> futures_util::future::BoxFuture<'_, Result<Link, TransportError>> {
        Box::pin(async move {
            let stream = open(&self.port)?;
            // bytes that waited in the driver are old news: on a bus their timing would lie
            if let Err(e) =
                tokio_serial::SerialPort::clear(&stream, tokio_serial::ClearBuffer::Input)
            {
                tracing::debug!(port = %self.port.path.display(), "could not clear the input buffer: {e}");
            }
            tracing::debug!(port = %self.port.path.display(), baud = self.port.baud, "serial port open");
            Ok(link_over(stream, self.name.clone()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_port_names_the_path_and_the_fix() {
        let err = open(&PortConfig {
            path: "/dev/ttyUSB-jkmon-absent".into(),
            baud: DEFAULT_BAUD,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("/dev/ttyUSB-jkmon-absent"), "{err}");
        assert!(err.contains("/dev/serial/by-id/"), "{err}");
    }

    #[tokio::test]
    async fn a_link_over_a_stream_carries_both_ways_and_closes_with_it() {
        let (ours, theirs) = tokio::io::duplex(64);
        let mut link = link_over(ours, "duplex");
        let mut peer = peer_over(theirs);
        link.send(b"request").await.unwrap();
        assert_eq!(peer.commands.recv().await.unwrap(), b"request");
        peer.chunks.send(b"answer".to_vec()).await.unwrap();
        assert_eq!(link.recv().await.unwrap(), b"answer");
        drop(peer);
        assert_eq!(link.recv().await, None);
    }
}
