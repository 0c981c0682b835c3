//! Bluetooth LE through btleplug (BlueZ over D-Bus on Linux): finding a JK BMS, connecting,
//! choosing its characteristics and bridging notifications into a [`Link`].
//!
//! One [`Bluetooth`] per process is shared by every session: one adapter, one scan at a time
//! (BlueZ allows one discovery per client; sessions that need a scan share it).
//!
//! Connecting follows §1.2 and §1.8 of the protocol reference: find the device (from BlueZ's
//! list, else by scanning), connect, discover services, take 0xFFE1 in 0xFFE0 — by properties when
//! a module has two of them — and **subscribe before anything is written**. The handshake itself
//! belongs to the session.
//!
//! Modules with two 0xFFE1 characteristics: btleplug's BlueZ backend keys characteristics by
//! UUID, so it sees only one of the two. jkmon therefore lists the characteristics through
//! bluez-async (the D-Bus layer btleplug itself uses) and, for that layout only, writes and
//! subscribes through it by object path.

pub mod address;
pub mod gatt;
pub mod scan;

use std::fmt::Display;
use std::pin::Pin;
use std::sync::Arc;

use bluez_async::{BluetoothSession, CharacteristicFlags, CharacteristicId, DeviceId};
use btleplug::api::bleuuid::uuid_from_u16;
use btleplug::api::{
    Central, CentralEvent, CentralState, Characteristic, Manager as _, Peripheral as _, ScanFilter,
    WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral};
use futures_util::{Stream, StreamExt};
use thiserror::Error;
use tokio::sync::Mutex;
use tokio::time::{timeout_at, Instant};
use uuid::Uuid;

pub use address::MacAddress;

use super::Link;

/// The JK service and characteristic (§1.1, §1.2).
pub const SERVICE_FFE0: Uuid = uuid_from_u16(0xFFE0);
pub const CHAR_FFE1: Uuid = uuid_from_u16(0xFFE1);

#[derive(Debug, Error)]
pub enum BleError {
    #[error("cannot reach BlueZ on the D-Bus system bus ({0}). Check that bluetoothd runs (`systemctl status bluetooth`); in Docker, mount /var/run/dbus into the container")]
    NoBus(String),
    #[error("no Bluetooth adapter found. Check `bluetoothctl list`, that the USB dongle is plugged in, and `rfkill list` (unblock with `rfkill unblock bluetooth`)")]
    NoAdapter,
    #[error("the Bluetooth adapter {0} is powered off. Turn it on with `bluetoothctl power on`; if that fails, `rfkill unblock bluetooth`")]
    PoweredOff(String),
    #[error("{name} ({address}) was not seen within {secs:.0} s. Usual causes: the BMS is out of range or asleep, the JK phone app is connected (a JK BMS accepts one connection at a time: force-close the app), or the adapter is off")]
    NotFound {
        name: String,
        address: MacAddress,
        secs: f64,
    },
    #[error("connecting to {name} ({address}) failed: {detail}. Usual causes: out of range, the phone app holds the connection (force-close it), or a stale BlueZ session (`bluetoothctl disconnect {address}`)")]
    Connect {
        name: String,
        address: MacAddress,
        detail: String,
    },
    #[error("{name} ({address}) offers no JK service (0xFFE0 with a writable and a notifying 0xFFE1; found {found}). If this is a JK BMS, clear BlueZ's cache with `bluetoothctl remove {address}` and try again")]
    NoJkService {
        name: String,
        address: MacAddress,
        found: String,
    },
    #[error("Bluetooth: {0}")]
    Other(String),
}

fn other(e: impl Display) -> BleError {
    BleError::Other(e.to_string())
}

/// The adapter every session shares.
pub struct Bluetooth {
    adapter: Adapter,
    bluez: BluetoothSession,
    scanners: Mutex<usize>,
}

impl Bluetooth {
    /// Opens the first adapter and checks that it is powered.
    pub async fn open() -> Result<Arc<Bluetooth>, BleError> {
        let manager = Manager::new()
            .await
            .map_err(|e| BleError::NoBus(e.to_string()))?;
        let adapter = manager
            .adapters()
            .await
            .map_err(|e| BleError::NoBus(e.to_string()))?
            .into_iter()
            .next()
            .ok_or(BleError::NoAdapter)?;
        let info = adapter.adapter_info().await.map_err(other)?;
        if adapter.adapter_state().await.map_err(other)? != CentralState::PoweredOn {
            return Err(BleError::PoweredOff(info));
        }
        let (bus, bluez) = BluetoothSession::new()
            .await
            .map_err(|e| BleError::NoBus(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = bus.await {
                tracing::error!("lost the D-Bus connection to BlueZ: {e}");
            }
        });
        tracing::debug!(adapter = %info, "Bluetooth adapter ready");
        Ok(Arc::new(Bluetooth {
            adapter,
            bluez,
            scanners: Mutex::new(0),
        }))
    }

    /// Starts discovery unless another caller already has it running.
    async fn scan_acquire(&self) -> Result<(), BleError> {
        let mut n = self.scanners.lock().await;
        if *n == 0 {
            self.adapter
                .start_scan(ScanFilter::default())
                .await
                .map_err(|e| BleError::Other(format!("could not start scanning: {e}")))?;
        }
        *n += 1;
        Ok(())
    }

    async fn scan_release(&self) {
        let mut n = self.scanners.lock().await;
        *n = n.saturating_sub(1);
        if *n == 0 {
            if let Err(e) = self.adapter.stop_scan().await {
                tracing::debug!("stopping the scan: {e}");
            }
        }
    }

    async fn known(&self, address: MacAddress) -> Result<Option<Peripheral>, BleError> {
        Ok(self
            .adapter
            .peripherals()
            .await
            .map_err(other)?
            .into_iter()
            .find(|p| MacAddress::from(p.address()) == address))
    }

    /// The peripheral with `address`: from BlueZ's list, else by scanning until `deadline`.
    async fn find(
        &self,
        name: &str,
        address: MacAddress,
        deadline: Instant,
    ) -> Result<Peripheral, BleError> {
        let started = Instant::now();
        let mut events = self.adapter.events().await.map_err(other)?;
        if let Some(p) = self.known(address).await? {
            return Ok(p);
        }
        tracing::debug!(bms = name, %address, "not known to BlueZ yet; scanning");
        self.scan_acquire().await?;
        let found = loop {
            match timeout_at(deadline, events.next()).await {
                Ok(Some(CentralEvent::DeviceDiscovered(id) | CentralEvent::DeviceUpdated(id))) => {
                    if let Ok(p) = self.adapter.peripheral(&id).await {
                        if MacAddress::from(p.address()) == address {
                            break Some(p);
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break None,
            }
        };
        self.scan_release().await;
        found.ok_or_else(|| BleError::NotFound {
            name: name.to_string(),
            address,
            secs: (Instant::now() - started).as_secs_f64(),
        })
    }

    /// Finds, connects and subscribes; the returned link carries commands and notifications
    /// until either side drops it. Everything must be done by `deadline`.
    pub async fn connect(
        self: &Arc<Self>,
        name: &str,
        address: MacAddress,
        deadline: Instant,
    ) -> Result<Link, BleError> {
        let peripheral = self.find(name, address, deadline).await?;
        let connect_error = |detail: String| BleError::Connect {
            name: name.to_string(),
            address,
            detail,
        };
        let mut central = self.adapter.events().await.map_err(other)?;
        match timeout_at(deadline, peripheral.connect()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(connect_error(e.to_string())),
            Err(_) => return Err(connect_error("timed out".into())),
        }
        let path = match timeout_at(deadline, self.open_data_path(name, address, &peripheral)).await
        {
            Ok(Ok(path)) => path,
            Ok(Err(e)) => {
                let _ = peripheral.disconnect().await;
                return Err(e);
            }
            Err(_) => {
                let _ = peripheral.disconnect().await;
                return Err(connect_error("service discovery timed out".into()));
            }
        };
        let mut notifications = path.notifications;
        let writer = path.writer;
        let (link, mut peer) = Link::pair(name, 64);
        let id = peripheral.id();
        let label = name.to_string();
        tokio::spawn(async move {
            let reason = loop {
                tokio::select! {
                    command = peer.commands.recv() => match command {
                        None => break "closed by jkmon".to_string(),
                        Some(bytes) => {
                            if let Err(e) = writer.write(&peripheral, &bytes).await {
                                break format!("a write failed: {e}");
                            }
                        }
                    },
                    chunk = notifications.next() => match chunk {
                        None => break "the notification stream ended".to_string(),
                        Some(chunk) => {
                            tracing::trace!(bms = %label, len = chunk.len(), "notification");
                            if peer.chunks.send(chunk).await.is_err() {
                                break "closed by jkmon".to_string();
                            }
                        }
                    },
                    event = central.next() => match event {
                        Some(CentralEvent::DeviceDisconnected(d)) if d == id => {
                            break "the BMS disconnected".to_string();
                        }
                        None => break "the adapter's event stream ended".to_string(),
                        Some(_) => {}
                    },
                }
            };
            tracing::debug!(bms = %label, "link ends: {reason}");
            if let Err(e) = peripheral.disconnect().await {
                tracing::debug!(bms = %label, "disconnect: {e}");
            }
        });
        Ok(link)
    }

    /// Disconnects `address` if BlueZ holds a connection to it (a clean exit leaves the BMS
    /// free for the phone app at once).
    pub async fn release(&self, address: MacAddress) {
        if let Ok(Some(p)) = self.known(address).await {
            if p.is_connected().await.unwrap_or(false) {
                let _ = p.disconnect().await;
            }
        }
    }

    /// Finds the JK characteristic(s) and opens the path the commands and notifications
    /// take: one 0xFFE1 for both through btleplug, or two through BlueZ directly.
    async fn open_data_path(
        &self,
        name: &str,
        address: MacAddress,
        peripheral: &Peripheral,
    ) -> Result<DataPath, BleError> {
        peripheral.discover_services().await.map_err(other)?;
        let no_service = |found: String| BleError::NoJkService {
            name: name.to_string(),
            address,
            found,
        };
        let chars = self.ffe1_characteristics(peripheral, &no_service).await?;
        let props: Vec<gatt::CharProps> = chars
            .iter()
            .map(|c| gatt::CharProps {
                write: c.flags.contains(CharacteristicFlags::WRITE),
                write_without_response: c
                    .flags
                    .contains(CharacteristicFlags::WRITE_WITHOUT_RESPONSE),
                notify: c
                    .flags
                    .intersects(CharacteristicFlags::NOTIFY | CharacteristicFlags::INDICATE),
            })
            .collect();
        let choice = gatt::choose(&props).ok_or_else(|| {
            no_service(format!(
                "{} 0xFFE1 characteristic(s): {props:?}",
                chars.len()
            ))
        })?;
        tracing::debug!(
            bms = name,
            characteristics = chars.len(),
            ?choice,
            "JK characteristics"
        );
        if choice.write == choice.notify {
            one_characteristic(peripheral, choice, &no_service).await
        } else {
            let notify = chars[choice.notify].id.clone();
            let write = chars[choice.write].id.clone();
            self.two_characteristics(notify, write, choice.without_response)
                .await
        }
    }

    /// Every 0xFFE1 of the 0xFFE0 service as BlueZ lists them (btleplug would merge two into
    /// one).
    async fn ffe1_characteristics(
        &self,
        peripheral: &Peripheral,
        no_service: &impl Fn(String) -> BleError,
    ) -> Result<Vec<bluez_async::CharacteristicInfo>, BleError> {
        let device: DeviceId = peripheral.id().to_string().parse().map_err(other)?;
        let services = self.bluez.get_services(&device).await.map_err(other)?;
        let service = services
            .iter()
            .find(|s| s.uuid == SERVICE_FFE0)
            .ok_or_else(|| {
                no_service(format!(
                    "services [{}]",
                    services
                        .iter()
                        .map(|s| s.uuid.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        Ok(self
            .bluez
            .get_characteristics(&service.id)
            .await
            .map_err(other)?
            .into_iter()
            .filter(|c| c.uuid == CHAR_FFE1)
            .collect())
    }

    /// Two 0xFFE1s (one notifies, one takes writes): both through BlueZ by their ids.
    async fn two_characteristics(
        &self,
        notify: CharacteristicId,
        write: CharacteristicId,
        without_response: bool,
    ) -> Result<DataPath, BleError> {
        let stream = self
            .bluez
            .characteristic_event_stream(&notify)
            .await
            .map_err(other)?;
        self.bluez.start_notify(&notify).await.map_err(other)?;
        let notifications = stream
            .filter_map(|event| async move {
                match event {
                    bluez_async::BluetoothEvent::Characteristic {
                        event: bluez_async::CharacteristicEvent::Value { value },
                        ..
                    } => Some(value),
                    _ => None,
                }
            })
            .boxed();
        Ok(DataPath {
            notifications,
            writer: Writer::Bluez {
                session: self.bluez.clone(),
                characteristic: write,
                without_response,
            },
        })
    }
}

/// One 0xFFE1 that notifies and takes writes: through btleplug, subscribed before anything is
/// written (§1.2).
async fn one_characteristic(
    peripheral: &Peripheral,
    choice: gatt::Choice,
    no_service: &impl Fn(String) -> BleError,
) -> Result<DataPath, BleError> {
    let characteristic = peripheral
        .characteristics()
        .into_iter()
        .find(|c| c.uuid == CHAR_FFE1 && c.service_uuid == SERVICE_FFE0)
        .ok_or_else(|| no_service("0xFFE1 missing after discovery".into()))?;
    let stream = peripheral.notifications().await.map_err(other)?;
    peripheral.subscribe(&characteristic).await.map_err(other)?;
    let notifications = stream
        .filter_map(|n| async move { (n.uuid == CHAR_FFE1).then_some(n.value) })
        .boxed();
    let write_type = if choice.without_response {
        WriteType::WithoutResponse
    } else {
        WriteType::WithResponse
    };
    Ok(DataPath {
        notifications,
        writer: Writer::Btleplug {
            characteristic,
            write_type,
        },
    })
}

struct DataPath {
    notifications: Pin<Box<dyn Stream<Item = Vec<u8>> + Send>>,
    writer: Writer,
}

/// Where commands go.
enum Writer {
    Btleplug {
        characteristic: Characteristic,
        write_type: WriteType,
    },
    /// The write-only half of a two-characteristic module, by object path.
    Bluez {
        session: BluetoothSession,
        characteristic: CharacteristicId,
        without_response: bool,
    },
}

impl Writer {
    async fn write(&self, peripheral: &Peripheral, bytes: &[u8]) -> Result<(), String> {
        match self {
            Writer::Btleplug {
                characteristic,
                write_type,
            } => peripheral
                .write(characteristic, bytes, *write_type)
                .await
                .map_err(|e| e.to_string()),
            Writer::Bluez {
                session,
                characteristic,
                without_response,
            } => {
                let options = bluez_async::WriteOptions {
                    write_type: Some(if *without_response {
                        bluez_async::WriteType::WithoutResponse
                    } else {
                        bluez_async::WriteType::WithResponse
                    }),
                    ..Default::default()
                };
                session
                    .write_characteristic_value_with_options(
                        characteristic,
                        bytes.to_vec(),
                        options,
                    )
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Connects one configured BMS for its session.
pub struct BleConnector {
    pub bluetooth: Arc<Bluetooth>,
    pub name: String,
    pub address: MacAddress,
}

impl super::Connector for BleConnector {
    fn connect(
        &self,
        deadline: Instant,
    ) -> futures_util::future::BoxFuture<'_, Result<Link, super::TransportError>> {
        Box::pin(async move {
            Ok(self
                .bluetooth
                .connect(&self.name, self.address, deadline)
                .await?)
        })
    }
}
