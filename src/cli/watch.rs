//! `jkmon watch`: every configured BMS in its own streaming session, each snapshot and state
//! change printed as it happens, the watchdog armed. The service (`jkmon run`) is built on the
//! same sessions.

use std::process::ExitCode;

use serde_json::json;
use tokio::time::Instant;

use super::WatchArgs;
use crate::config::Config;
use crate::report::json::SnapshotJson;
use crate::service::EXIT_WATCHDOG;
use crate::session::{EventKind, SessionEvent, Watchdog};

pub fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let batteries = config.batteries()?;
    let runtime = super::runtime()?;
    runtime.block_on(async move {
        let (fleet, mut rx) = crate::service::start_sessions(&config, &batteries).await?;
        let mut watchdog = Watchdog::new(config.watchdog, Instant::now());
        let mut stop = super::shutdown_signal();
        let code = loop {
            let deadline = watchdog.deadline();
            tokio::select! {
                event = rx.recv() => {
                    let Some(event) = event else { break ExitCode::FAILURE };
                    if matches!(event.kind, EventKind::Snapshot { .. }) {
                        watchdog.feed(Instant::now());
                    }
                    // a reader that went away (`jkmon watch | head -2`) ends the watch quietly,
                    // with the code a shell gives a program SIGPIPE stopped (128 + 13)
                    if print_event(&event, args.json).is_err() {
                        break ExitCode::from(141);
                    }
                }
                _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                    super::logging::error_line(watchdog.explain());
                    break ExitCode::from(EXIT_WATCHDOG);
                }
                _ = &mut stop => break ExitCode::SUCCESS,
            }
        };
        drop(rx);
        fleet.release().await;
        Ok(code)
    })
}

/// One event on stdout; an error when stdout is closed.
fn print_event(event: &SessionEvent, as_json: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match &event.kind {
        EventKind::State {
            state,
            detail,
            retry_in,
            attempt,
        } => {
            if as_json {
                writeln!(
                    out,
                    "{}",
                    json!({
                        "event": "state",
                        "battery": event.battery + 1,
                        "name": &*event.name,
                        "state": state,
                        "detail": detail,
                        "retry_in_ms": retry_in.map(|d| d.as_millis() as u64),
                        "attempt": attempt,
                    })
                )?;
            }
            // In text mode the session's own log line (INFO) reports the change.
        }
        EventKind::Snapshot {
            snapshot, rejected, ..
        } => {
            if as_json {
                writeln!(
                    out,
                    "{}",
                    json!({
                        "event": "snapshot",
                        "battery": event.battery + 1,
                        "name": &*event.name,
                        "rejected": rejected,
                        "snapshot": SnapshotJson::new(snapshot),
                    })
                )?;
            } else {
                let c = &snapshot.cell_info;
                let stats = c
                    .stats()
                    .map(|s| {
                        format!(
                            "cells {:.3}–{:.3} V Δ{:.0} mV",
                            f64::from(s.min_uv) / 1e6,
                            f64::from(s.max_uv) / 1e6,
                            f64::from(s.delta_uv) / 1e3
                        )
                    })
                    .unwrap_or_default();
                writeln!(
                    out,
                    "[{}] {:.2} V  {}  SOC {} ({})  {}",
                    event.name,
                    f64::from(c.total_voltage_mv) / 1e3,
                    c.current_ma
                        .map(|ma| format!("{:+.2} A", f64::from(ma) / 1e3))
                        .unwrap_or_else(|| "current n/a".into()),
                    snapshot
                        .soc_effective_pct
                        .map(|p| format!("{p:.0} %"))
                        .unwrap_or_else(|| "n/a".into()),
                    snapshot.soc_source,
                    stats
                )?;
            }
        }
    }
    out.flush()
}
