//! `jkmon scan`: which JK BMSs are in range. A JK is recognised by what it advertises (§1.1) —
//! the 0xFFE0 service or the manufacturer IDs 0x0B65 / 0x4B4A — and only last by a `JK` name,
//! because owners rename their packs ("Garage", "Shed 2") and a name filter would miss them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use btleplug::api::{Central, CentralEvent, Peripheral as _};
use futures_util::StreamExt;
use tokio::time::{interval, Instant, MissedTickBehavior};
use uuid::Uuid;

use super::{other, BleError, Bluetooth, MacAddress, SERVICE_FFE0};

/// Company IDs JK modules advertise: 0x0B65 (payload `88 A0` + MAC) and 0x4B4A ("JK").
pub const JK_MANUFACTURER_IDS: [u16; 2] = [0x0B65, 0x4B4A];

/// Why a device counts as a JK BMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    ServiceAndManufacturer,
    Service,
    Manufacturer,
    Name,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Evidence::ServiceAndManufacturer => "service FFE0 + JK maker id",
            Evidence::Service => "service FFE0",
            Evidence::Manufacturer => "JK maker id",
            Evidence::Name => "name",
        })
    }
}

/// Decides from an advertisement; `None` for anything that is not a JK.
pub fn recognise(
    name: Option<&str>,
    services: &[Uuid],
    manufacturer_ids: &[u16],
) -> Option<Evidence> {
    let service = services.contains(&SERVICE_FFE0);
    let maker = manufacturer_ids
        .iter()
        .any(|id| JK_MANUFACTURER_IDS.contains(id));
    match (service, maker) {
        (true, true) => Some(Evidence::ServiceAndManufacturer),
        (true, false) => Some(Evidence::Service),
        (false, true) => Some(Evidence::Manufacturer),
        (false, false) => {
            let n = name.unwrap_or("").to_ascii_uppercase();
            (n.starts_with("JK-") || n.starts_with("JK_") || n.starts_with("JK "))
                .then_some(Evidence::Name)
        }
    }
}

/// One JK seen during the scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub address: MacAddress,
    pub name: Option<String>,
    pub rssi_dbm: Option<i16>,
    pub evidence: Evidence,
}

/// What the progress display gets, about four times a second and on every new device.
pub struct Progress<'a> {
    pub elapsed: Duration,
    pub total: Duration,
    pub found: usize,
    /// Set when this call announces a new device.
    pub new: Option<&'a Found>,
}

impl Bluetooth {
    /// Scans for `duration` and returns the JK devices seen, strongest signal first.
    pub async fn scan(
        &self,
        duration: Duration,
        mut progress: impl FnMut(Progress<'_>),
    ) -> Result<Vec<Found>, BleError> {
        let started = Instant::now();
        let deadline = started + duration;
        let mut events = self.adapter.events().await.map_err(other)?;
        self.scan_acquire().await?;
        let mut found: BTreeMap<MacAddress, Found> = BTreeMap::new();
        let mut tick = interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tick.tick() => progress(Progress {
                    elapsed: started.elapsed(),
                    total: duration,
                    found: found.len(),
                    new: None,
                }),
                event = events.next() => {
                    let id = match event {
                        None => break,
                        Some(CentralEvent::DeviceDiscovered(id) | CentralEvent::DeviceUpdated(id))
                        | Some(CentralEvent::ManufacturerDataAdvertisement { id, .. })
                        | Some(CentralEvent::ServicesAdvertisement { id, .. })
                        | Some(CentralEvent::RssiUpdate { id, .. }) => id,
                        Some(_) => continue,
                    };
                    let Ok(p) = self.adapter.peripheral(&id).await else { continue };
                    let Ok(Some(props)) = p.properties().await else { continue };
                    let makers: Vec<u16> = props.manufacturer_data.keys().copied().collect();
                    let Some(evidence) = recognise(props.local_name.as_deref(), &props.services, &makers) else {
                        continue;
                    };
                    let address = MacAddress::from(p.address());
                    let entry = Found { address, name: props.local_name.clone(), rssi_dbm: props.rssi, evidence };
                    let is_new = !found.contains_key(&address);
                    found.insert(address, entry);
                    if is_new {
                        progress(Progress {
                            elapsed: started.elapsed(),
                            total: duration,
                            found: found.len(),
                            new: found.get(&address),
                        });
                    }
                }
            }
        }
        self.scan_release().await;
        let mut list: Vec<Found> = found.into_values().collect();
        list.sort_by_key(|f| std::cmp::Reverse(f.rssi_dbm.unwrap_or(i16::MIN)));
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use btleplug::api::bleuuid::uuid_from_u16;

    #[test]
    fn advertisement_beats_the_name() {
        let ffe0 = [SERVICE_FFE0];
        assert_eq!(
            recognise(Some("Garage"), &ffe0, &[0x0B65]),
            Some(Evidence::ServiceAndManufacturer)
        );
        assert_eq!(
            recognise(Some("Garage"), &ffe0, &[]),
            Some(Evidence::Service)
        );
        assert_eq!(
            recognise(None, &[], &[0x4B4A]),
            Some(Evidence::Manufacturer)
        );
        assert_eq!(
            recognise(Some("jk_b2a8s20p"), &[], &[]),
            Some(Evidence::Name)
        );
        assert_eq!(
            recognise(Some("JKL speaker"), &[uuid_from_u16(0x180F)], &[0x004C]),
            None
        );
        assert_eq!(recognise(None, &[], &[]), None);
    }
}
