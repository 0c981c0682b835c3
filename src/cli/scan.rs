//! `jkmon scan`: list the JK BMSs in range, optionally record them in the devices file.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::ScanArgs;
use crate::config::devices_file::{DevicesFile, MergeOutcome};
use crate::config::Config;
use crate::transport::ble::scan::Found;
use crate::transport::ble::Bluetooth;

pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let runtime = super::runtime()?;
    let duration = Duration::from_secs(args.timeout);
    let found = runtime.block_on(async {
        let bt = Bluetooth::open().await?;
        let live = std::io::stderr().is_terminal();
        let list = bt
            .scan(duration, |p| {
                let mut err = std::io::stderr().lock();
                if let Some(f) = p.new {
                    if live {
                        let _ = write!(err, "\r\x1b[K");
                    }
                    let _ = writeln!(
                        err,
                        "found {} ({}) {} — recognised by {}",
                        f.name.as_deref().unwrap_or("(no name)"),
                        f.address,
                        rssi(f),
                        f.evidence
                    );
                } else if live {
                    let _ = write!(
                        err,
                        "\r\x1b[Kscanning… {:.0}/{} s, {} JK BMS found",
                        p.elapsed.as_secs_f64(),
                        p.total.as_secs(),
                        p.found
                    );
                } else if p.elapsed.as_millis() < 250 {
                    let _ = writeln!(err, "scanning for {} s…", p.total.as_secs());
                }
            })
            .await;
        if live {
            eprint!("\r\x1b[K");
        }
        anyhow::Ok(list?)
    })?;

    if found.is_empty() {
        eprintln!(
            "no JK BMS found in {} s. Check that the BMS is awake (press its button) and within a few metres, that the JK phone app is closed (a JK accepts one connection at a time and a connected one stops advertising), and that the adapter is on (`bluetoothctl show`).",
            args.timeout
        );
        return Ok(ExitCode::FAILURE);
    }
    print!("{}", table(&found));

    if args.save {
        let path = &config.devices_file;
        let mut file = DevicesFile::load(path)?;
        let now = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S").to_string();
        let (mut added, mut updated, mut kept) = (0, 0, Vec::new());
        for f in &found {
            match file.merge(f.address, f.name.as_deref(), &now) {
                MergeOutcome::Added => added += 1,
                MergeOutcome::Updated => updated += 1,
                MergeOutcome::KeptDisabled => kept.push(f.address.to_string()),
            }
        }
        file.save(path)
            .with_context(|| format!("saving the scan results to {}", path.display()))?;
        eprintln!(
            "saved to {}: {added} added, {updated} updated{}",
            path.display(),
            if kept.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} left disabled as you commented them out ({})",
                    kept.len(),
                    kept.join(", ")
                )
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn rssi(f: &Found) -> String {
    f.rssi_dbm
        .map(|r| format!("{r} dBm"))
        .unwrap_or_else(|| "RSSI n/a".into())
}

/// The result table: name, address, RSSI, evidence.
pub fn table(found: &[Found]) -> String {
    let name_w = found
        .iter()
        .map(|f| f.name.as_deref().unwrap_or("-").chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut s = format!(
        "{:<name_w$}  {:<17}  {:>8}  RECOGNISED BY\n",
        "NAME", "ADDRESS", "RSSI"
    );
    for f in found {
        s.push_str(&format!(
            "{:<name_w$}  {:<17}  {:>8}  {}\n",
            f.name.as_deref().unwrap_or("-"),
            f.address.to_string(),
            f.rssi_dbm
                .map(|r| format!("{r} dBm"))
                .unwrap_or_else(|| "-".into()),
            f.evidence
        ));
    }
    s
}
