//! `jkmon read`: one reading from the configured BMS, printed for people or as JSON.

use std::process::ExitCode;
use std::time::Duration;

use super::ReadArgs;
use crate::battery::soc;
use crate::config::BatteryConfig;
use crate::config::Config;
use crate::protocol::hex;
use crate::report::{json, text};
use crate::session;
use crate::transport::{self, ble::MacAddress, TransportKind};
use tokio::time::Instant;

pub fn run(args: ReadArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::from_env()?;
    if let Some(v) = args.variant {
        config.session.variant = v;
        config.variant = v;
    }
    let battery = choose(&config, args.address.as_deref())?;
    let runtime = super::runtime()?;
    runtime.block_on(async move {
        let timeout = Duration::from_secs(args.timeout);
        let reading = if config.transport == TransportKind::Rs485 {
            read_from_bus(&config, &battery, timeout).await?
        } else {
            read_one(&config, &battery, timeout).await?
        };
        print(&args, &reading)?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The battery `--address` names, else the first configured one.
fn choose(config: &Config, address: Option<&str>) -> anyhow::Result<BatteryConfig> {
    let list = config.batteries();
    match (config.transport, address) {
        (TransportKind::Rs485, Some(a)) => {
            let n: u8 = a
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= crate::protocol::rs485::MAX_ADDRESS)
                .ok_or_else(|| {
                    anyhow::anyhow!("--address {a}: on RS485 give a pack's DIP-switch address, 0-15")
                })?;
            let known = list
                .ok()
                .and_then(|l| l.into_iter().find(|b| b.rs485_address == Some(n)));
            Ok(known.unwrap_or(BatteryConfig {
                name: format!("Pack #{n}"),
                port: config.wire.port.as_ref().map(|p| p.path.clone()),
                rs485_address: Some(n),
                ..BatteryConfig::default()
            }))
        }
        (TransportKind::Serial, Some(a)) => anyhow::bail!(
            "--address {a}: the serial transport reads the one BMS on JK_BMS_SERIAL_PORT; leave --address out"
        ),
        (_, Some(a)) => {
            let address: MacAddress = a
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--address: {e}"))?;
            let known = list
                .ok()
                .and_then(|l| l.into_iter().find(|b| b.address == Some(address)));
            Ok(known.unwrap_or(BatteryConfig {
                name: address.to_string(),
                address: Some(address),
                ..BatteryConfig::default()
            }))
        }
        (_, None) => {
            let list = list?;
            if list.len() > 1 {
                eprintln!(
                    "note: {} BMSs are configured; reading {} (use --address for another, or `jkmon watch` for all)",
                    list.len(),
                    list[0].name
                );
            }
            Ok(list.into_iter().next().expect("batteries() is never empty"))
        }
    }
}

/// BLE, the simulator and the serial port: connect, one reading, let go.
async fn read_one(
    config: &Config,
    battery: &BatteryConfig,
    timeout: Duration,
) -> anyhow::Result<session::Reading> {
    let deadline = Instant::now() + timeout;
    let fleet =
        transport::connect_all(config.transport_plan(), std::slice::from_ref(battery)).await?;
    let connector = fleet.connectors[0].clone();
    tracing::info!(bms = %battery.name, transport = %config.transport, "connecting");
    let estimator = soc::estimator(config.soc_source, &config.soc_curve);
    let result = async {
        let mut link = match transport::connect_by(connector.as_ref(), deadline).await {
            Some(link) => link?,
            None => {
                return Err(anyhow::anyhow!(
                    "could not connect to {} within {} s; usual causes: the BMS is out of range or asleep, the JK phone app is connected (a JK BMS accepts one connection at a time: force-close the app), or the Bluetooth adapter is off",
                    battery.name,
                    timeout.as_secs()
                ))
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let reading = session::read_once(
            &mut link,
            config.variant,
            config.session.dialogue,
            estimator.as_ref(),
            left.max(Duration::from_secs(1)),
            config.session.response_timeout,
        )
        .await?;
        anyhow::Ok(reading)
    }
    .await;
    fleet.release().await;
    result
}

/// RS485: join the bus (as master or sniffer, as the bus needs) until the pack has sent its
/// cell info and device info; after half the time, cell info alone will do.
async fn read_from_bus(
    config: &Config,
    battery: &BatteryConfig,
    timeout: Duration,
) -> anyhow::Result<session::Reading> {
    let started = Instant::now();
    let deadline = started + timeout;
    let (_fleet, mut events) =
        crate::service::start_sessions(config, std::slice::from_ref(battery)).await?;
    let mut best: Option<crate::battery::Snapshot> = None;
    let mut why = String::from("no frame arrived");
    loop {
        let enough = best
            .as_ref()
            .is_some_and(|s| s.device_info.is_some() || Instant::now() >= started + timeout / 2);
        if enough {
            break;
        }
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) | Err(_) => break,
        };
        match event.kind {
            session::EventKind::Snapshot { snapshot, .. } => {
                best = Some(std::sync::Arc::unwrap_or_clone(snapshot))
            }
            session::EventKind::State { state, detail, .. } => {
                if state == session::State::Disconnected && !detail.is_empty() {
                    why = detail;
                }
            }
        }
    }
    let snapshot = best.ok_or_else(|| {
        anyhow::anyhow!(
            "no reading from {} within {} s: {why}; check the wiring (RS485 A to A, B to B), that the pack's DIP-switch address is in JK_RS485_ADDRESSES, and that the bus runs at 115200 baud",
            battery.name,
            timeout.as_secs()
        )
    })?;
    if snapshot.device_info.is_none() {
        eprintln!("note: no device info yet (a sniffing jkmon asks for it only in the gaps the bus master leaves)");
    }
    Ok(session::Reading {
        variant: snapshot.cell_info.variant,
        snapshot,
        raw_frames: Vec::new(),
        rejected: 0,
    })
}

fn print(args: &ReadArgs, reading: &session::Reading) -> anyhow::Result<()> {
    if args.hex {
        for frame in &reading.raw_frames {
            println!("{}", hex(frame).replace(' ', ""));
        }
    }
    let snap = &reading.snapshot;
    if args.json {
        if let Some(d) = &snap.device_info {
            println!(
                "{}",
                serde_json::to_string(&json::DeviceInfoJson::new(d, reading.variant, None))?
            );
        }
        if let Some(s) = &snap.settings {
            println!(
                "{}",
                serde_json::to_string(&json::SettingsJson::new(s, None))?
            );
        }
        println!("{}", serde_json::to_string(&json::SnapshotJson::new(snap))?);
    } else {
        print!("{}", text::snapshot(snap));
    }
    if reading.rejected > 0 {
        eprintln!(
            "note: {} corrupt frames were rejected during the read",
            reading.rejected
        );
    }
    Ok(())
}
