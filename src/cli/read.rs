//! `jkmon read`: one reading from the configured BMS, printed for people or as JSON.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::ReadArgs;
use crate::battery::soc;
use crate::config::Config;
use crate::poller;
use crate::protocol::hex;
use crate::report::{json, text};
use crate::transport::{sim, TransportError, TransportKind};

pub fn run(args: ReadArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::from_env()?;
    if let Some(v) = args.variant {
        config.variant = v;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(async move {
        let mut link = match config.transport {
            TransportKind::Sim => sim::connect(config.sim.clone()),
            other => return Err(TransportError::NotAvailable(other).into()),
        };
        tracing::info!(bms = %link.name, transport = %config.transport, "connecting");
        let estimator = soc::estimator(config.soc_source, &config.soc_curve);
        let reading = poller::read_once(
            &mut link,
            config.variant,
            estimator.as_ref(),
            Duration::from_secs(args.timeout),
        )
        .await?;
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
