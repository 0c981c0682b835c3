//! The BMS sessions: one per battery, or one for a whole RS485 network; which of them take
//! switch writes, and the counters they feed.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::battery::{soc, SocEstimator};
use crate::config::{BatteryConfig, Config};
use crate::control::{Controller, Slot, WriteLink};
use crate::session::bus::{BusPack, BusSession, BusTiming};
use crate::session::control::WriteRequest;
use crate::session::{Session, SessionEvent};
use crate::store::Battery;
use crate::telemetry::Telemetry;
use crate::transport::{self, Fleet, TransportKind};

/// Starts one session per battery; their events arrive on the returned receiver. The sessions
/// end when it is dropped.
pub async fn start_sessions(
    config: &Config,
    batteries: &[BatteryConfig],
) -> anyhow::Result<(Fleet, mpsc::Receiver<SessionEvent>)> {
    start_sessions_with(config, batteries, Vec::new()).await
}

/// How switch writes travel on `transport`, or why they cannot.
pub fn write_link(transport: TransportKind) -> Result<WriteLink, &'static str> {
    match transport {
        TransportKind::Ble | TransportKind::Sim => Ok(WriteLink::Bluetooth),
        TransportKind::Rs485 => Ok(WriteLink::Rs485),
        TransportKind::Serial => Err("the serial 4E 57 port takes no writes (most boards refuse them there); switch it over Bluetooth"),
    }
}

/// Control's view of the batteries, and the receiving ends of the write channels for the
/// sessions (one per battery `JK_BMS_CONTROL` allows, where this process runs the sessions; on
/// an RS485 network one for the bus, beside the first allowed pack).
pub fn control_slots(
    config: &Config,
    batteries: &[Battery],
    sessions: bool,
) -> (Vec<Slot>, Vec<Option<mpsc::Receiver<WriteRequest>>>) {
    let (link, no_link_why) = match write_link(config.transport) {
        Ok(link) => (Some(link), ""),
        Err(why) => (None, why),
    };
    let (bus, mut bus_rx) = match link {
        Some(WriteLink::Rs485) => {
            let (tx, rx) = mpsc::channel(8);
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    batteries
        .iter()
        .map(|b| {
            let allowed = config.control.allows(b.position, &b.name);
            let (writes, taken) = match (allowed && sessions && link.is_some(), &bus) {
                (false, _) => (None, None),
                // the packs of an RS485 network share their one session's channel
                (true, Some(tx)) => (Some(tx.clone()), bus_rx.take()),
                (true, None) => {
                    let (tx, rx) = mpsc::channel(8);
                    (Some(tx), Some(rx))
                }
            };
            let slot = Slot {
                position: b.position,
                name: b.name.clone(),
                device_key: b.device_key(),
                allowed,
                link,
                no_link_why,
                writes,
            };
            (slot, taken)
        })
        .unzip()
}

/// As [`start_sessions`]; battery `i`'s session takes switch writes from `writes[i]` where
/// there is one.
pub async fn start_sessions_with(
    config: &Config,
    batteries: &[BatteryConfig],
    mut writes: Vec<Option<mpsc::Receiver<WriteRequest>>>,
) -> anyhow::Result<(Fleet, mpsc::Receiver<SessionEvent>)> {
    writes.resize_with(batteries.len(), || None);
    let fleet = transport::connect_all(config.transport_plan(), batteries).await?;
    let estimator: Arc<dyn SocEstimator> =
        Arc::from(soc::estimator(config.soc_source, &config.soc_curve));
    let (tx, rx) = mpsc::channel::<SessionEvent>(256);
    if config.transport == TransportKind::Rs485 {
        // one session for the whole network: every pack is a battery of its own
        let packs = batteries
            .iter()
            .enumerate()
            .map(|(i, b)| BusPack {
                battery: i,
                address: b.rs485_address.unwrap_or(0),
                name: b.name.as_str().into(),
            })
            .collect();
        let mut session = BusSession::new(
            &bus_name(config),
            packs,
            fleet.connectors[0].clone(),
            config.session.clone(),
            config.wire.rs485_mode,
            BusTiming::default(),
            estimator,
            tx,
        );
        // one session for every pack, one channel for their writes (each names its battery)
        if let Some(bus_writes) = writes.into_iter().flatten().next() {
            session = session.with_writes(bus_writes);
        }
        tokio::spawn(session.run());
        return Ok((fleet, rx));
    }
    for (i, ((battery, connector), writes)) in batteries
        .iter()
        .zip(fleet.connectors.iter().cloned())
        .zip(writes)
        .enumerate()
    {
        let mut session = Session::new(
            i,
            &battery.name,
            connector,
            config.session.clone(),
            estimator.clone(),
            tx.clone(),
        );
        if let Some(writes) = writes {
            session = session.with_writes(writes);
        }
        tokio::spawn(session.run());
    }
    Ok((fleet, rx))
}

/// Says at start which batteries jkmon may switch, and why the others not.
pub(super) fn log_control(controller: &Controller, sessions: bool, demo: bool) {
    if !sessions {
        return;
    }
    let slots = controller.slots();
    let on: Vec<&str> = slots
        .iter()
        .filter(|s| s.takes_writes())
        .map(|s| s.name.as_str())
        .collect();
    if on.is_empty() && !slots.iter().any(|s| s.allowed) {
        tracing::info!("control: off (JK_BMS_CONTROL); jkmon only reads the batteries");
        return;
    }
    if !on.is_empty() {
        tracing::info!(
            "control: jkmon may switch {} (JK_BMS_CONTROL)",
            on.join(", ")
        );
    }
    if demo && !on.is_empty() {
        tracing::info!("demo: the simulated battery's switches work from the dashboard, the API, `jkmon set`, MQTT and the bot (JK_BMS_CONTROL=off turns them off)");
    }
    for s in slots.iter().filter(|s| s.allowed && s.link.is_none()) {
        tracing::warn!("control: {} cannot be switched: {}", s.name, s.no_link_why);
    }
}

/// The service's counters: one link per battery, or one for a whole RS485 bus.
pub(super) fn telemetry_for(config: &Config, batteries: &[BatteryConfig]) -> Telemetry {
    if config.transport == TransportKind::Rs485 {
        Telemetry::shared(bus_name(config), batteries.len())
    } else {
        let names: Vec<String> = batteries.iter().map(|b| b.name.clone()).collect();
        Telemetry::per_battery(&names)
    }
}

pub(super) fn bus_name(config: &Config) -> String {
    let port = config
        .wire
        .port
        .as_ref()
        .map_or_else(PathBuf::new, |p| p.path.clone());
    transport::bus_name(&port)
}
