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
use crate::transport::{self, ble::MacAddress};
use tokio::time::Instant;

pub fn run(args: ReadArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::from_env()?;
    if let Some(v) = args.variant {
        config.session.variant = v;
        config.variant = v;
    }
    let battery = match &args.address {
        Some(a) => {
            let address: MacAddress = a
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--address: {e}"))?;
            let known = config
                .batteries()
                .ok()
                .and_then(|list| list.into_iter().find(|b| b.address == Some(address)));
            known.unwrap_or(BatteryConfig {
                name: address.to_string(),
                address: Some(address),
            })
        }
        None => {
            let list = config.batteries()?;
            if list.len() > 1 {
                eprintln!(
                    "note: {} BMSs are configured; reading {} (use --address for another, or `jkmon watch` for all)",
                    list.len(),
                    list[0].name
                );
            }
            list.into_iter().next().expect("batteries() is never empty")
        }
    };
    let runtime = super::runtime()?;
    runtime.block_on(async move {
        let timeout = Duration::from_secs(args.timeout);
        let deadline = Instant::now() + timeout;
        let fleet = transport::connect_all(&config, std::slice::from_ref(&battery)).await?;
        let connector = fleet.connectors[0].clone();
        tracing::info!(bms = %battery.name, transport = %config.transport, "connecting");
        let estimator = soc::estimator(config.soc_source, &config.soc_curve);
        let result = async {
            let mut link = match tokio::time::timeout_at(deadline + Duration::from_millis(500), connector.connect(deadline)).await {
                Ok(link) => link?,
                Err(_) => {
                    return Err(anyhow::anyhow!(
                        "could not connect to {} within {} s; usual causes: the BMS is out of range or asleep, the JK phone app is connected (a JK BMS accepts one connection at a time: force-close the app), or the Bluetooth adapter is off",
                        battery.name,
                        args.timeout
                    ))
                }
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let reading = session::read_once(
                &mut link,
                config.variant,
                estimator.as_ref(),
                left.max(Duration::from_secs(1)),
            )
            .await?;
            anyhow::Ok(reading)
        }
        .await;
        fleet.release().await;
        let reading = result?;
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
        Ok(ExitCode::SUCCESS)
    })
}
