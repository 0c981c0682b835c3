//! `jkmon set <battery> charging=off …`: switch a BMS. Behind `JK_BMS_CONTROL`, off unless the
//! owner turns it on. `--dry-run` prints the exact bytes each switch would send on the
//! battery's link, and sends nothing.

use std::process::ExitCode;

use super::SetArgs;
use crate::config::{BatteryConfig, Config};
use crate::protocol::control::{self, Setting};
use crate::protocol::{hex, Variant, VariantChoice};
use crate::transport::TransportKind;

pub fn run(args: SetArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let batteries = config.batteries()?;
    let (position, battery) = choose(&batteries, &args.battery)?;
    if args.dry_run {
        for setting in &args.settings {
            println!("{}", dry_run(&config, &battery, *setting));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !config.control.allows(position, &battery.name) {
        anyhow::bail!(
            "control is off for {} (battery {position}): jkmon switches a BMS only where JK_BMS_CONTROL allows it; set JK_BMS_CONTROL=on, or to the batteries to switch ({position} or {})",
            battery.name,
            battery.name
        );
    }
    anyhow::bail!(
        "jkmon cannot send switch writes yet: they will travel through the running service's session to the BMS; `jkmon set {} {} --dry-run` shows the bytes",
        args.battery,
        args.settings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// The battery by its position (1-based) or name, with its position.
fn choose(batteries: &[BatteryConfig], wanted: &str) -> anyhow::Result<(usize, BatteryConfig)> {
    let found = batteries.iter().enumerate().find(|(i, b)| {
        wanted.parse::<usize>().is_ok_and(|p| p == i + 1) || b.name.eq_ignore_ascii_case(wanted)
    });
    match found {
        Some((i, b)) => Ok((i + 1, b.clone())),
        None => {
            let known: Vec<String> = batteries
                .iter()
                .enumerate()
                .map(|(i, b)| format!("{} ({})", i + 1, b.name))
                .collect();
            anyhow::bail!(
                "no battery \"{wanted}\": the configured ones are {}",
                known.join(", ")
            )
        }
    }
}

/// What `setting` would send to `battery`, in words and bytes.
fn dry_run(config: &Config, battery: &BatteryConfig, setting: Setting) -> String {
    let spaced = |bytes: &[u8]| hex(bytes).to_uppercase();
    match config.transport {
        TransportKind::Rs485 => {
            let address = battery.rs485_address.unwrap_or(0);
            match control::rs485_write(address, setting) {
                Ok(bytes) => format!(
                    "{setting}: RS485 pack {address}: {} (Modbus FC 0x10; confirmed by its next settings frame)",
                    spaced(&bytes)
                ),
                Err(e) => format!("{setting}: {e}"),
            }
        }
        TransportKind::Serial => {
            let e = control::ble_write(Variant::Serial4e57, setting)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            format!("{setting}: {e}")
        }
        _ => {
            // the board's layout decides the register; unknown until it answered once
            let variants = match config.variant {
                VariantChoice::Fixed(v) => vec![v],
                VariantChoice::Auto => vec![Variant::Jk02_32s, Variant::Jk02_24s, Variant::Jk04],
            };
            let lines: Vec<String> = variants
                .into_iter()
                .map(|v| match control::ble_write(v, setting) {
                    Ok(bytes) => format!("  on a {} board: {}", v.as_str(), spaced(&bytes)),
                    Err(e) => format!("  {e}"),
                })
                .collect();
            format!(
                "{setting}: Bluetooth write to {} (confirmed by the next settings frame):\n{}",
                battery.name,
                lines.join("\n")
            )
        }
    }
}
