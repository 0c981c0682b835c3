//! `jkmon set <battery> charging=off …`: switch a BMS through the running service, which holds
//! the BMS's only link and decides whether it may (`JK_BMS_CONTROL`, off unless the owner turns
//! it on; `WEB_AUTH_TOKEN` for its API). `--dry-run` prints the exact bytes each switch would
//! send on the battery's link, and sends nothing.

use crate::web::messages::{ApiError, SwitchAnswer, SwitchRequest};
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
    // the running service holds the BMS's only link and decides (JK_BMS_CONTROL there): the
    // write goes through its API, with WEB_AUTH_TOKEN where one is set
    let token = config.web.auth_token.clone();
    let base = args.url.clone().unwrap_or_else(|| {
        let port = config.web.bind.port();
        let host = match config.web.bind.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{port}")
    });
    let runtime = super::runtime()?;
    let mut failed = false;
    for setting in &args.settings {
        match runtime.block_on(send(&base, token.as_deref(), position, *setting)) {
            Ok(()) => println!("{setting} on {}: confirmed by the BMS", battery.name),
            Err(e) => {
                eprintln!("{setting} on {}: {e}", battery.name);
                failed = true;
                break;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Asks the service at `base` to set `setting` on battery `position`.
async fn send(
    base: &str,
    token: Option<&str>,
    position: usize,
    setting: Setting,
) -> anyhow::Result<()> {
    let url = format!(
        "{}/api/v1/batteries/{position}/switches",
        base.trim_end_matches('/')
    );
    let client = reqwest::Client::builder()
        // a write may be sent twice (a dropped link) and waits 5 s for its confirmation each
        .timeout(std::time::Duration::from_secs(60))
        .build()?;
    let mut request = client.post(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .header(crate::web::control::CLIENT_HEADER, "cli")
        .json(&SwitchRequest {
            switch: setting.switch.as_str().to_string(),
            on: setting.on,
        })
        .send()
        .await
        .map_err(|e| {
            if e.is_connect() {
                anyhow::anyhow!("no jkmon answers at {base}: is `jkmon run` running there? (--url names another address)")
            } else {
                anyhow::anyhow!("{base}: {e}")
            }
        })?;
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    if status.is_success() {
        return Ok(());
    }
    // a refused write answers with its SwitchAnswer; a refused request with an ApiError
    let why = serde_json::from_slice::<SwitchAnswer>(&body)
        .ok()
        .and_then(|a| a.error)
        .or_else(|| {
            serde_json::from_slice::<ApiError>(&body)
                .ok()
                .map(|e| e.error)
        })
        .unwrap_or_else(|| "no reason given".into());
    anyhow::bail!("{why} (HTTP {})", status.as_u16())
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
