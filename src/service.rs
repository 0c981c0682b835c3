//! The long-running service: `jkmon run` (everything configured), `jkmon poll` (the BMS
//! sessions and the store only) and `jkmon watch` (sessions without a store) are built here.
//!
//! One [`CancellationToken`] stops it all: SIGINT/SIGTERM cancel it; the sessions are dropped,
//! every BMS is released, the writer commits what it holds and folds the WAL back, and only then
//! does the process exit. A component that fails for good (the database writer, the watchdog)
//! ends the service with a non-zero exit code. The web server and the Telegram bot join as
//! further components under the same token.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::Local;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::battery::{soc, SocEstimator};
use crate::config::{BatteryConfig, Config};
use crate::session::{ConnectMode, EventKind, Session, SessionEvent, State, Watchdog};
use crate::store::writer::{Message, Writer};
use crate::store::{Battery, Store};
use crate::transport::sim::inverter::SimInverter;
use crate::transport::{self, Fleet};

/// Exit code when the watchdog trips (no BMS delivered a frame for `BMS_TIMEOUT_SEC`).
pub const EXIT_WATCHDOG: u8 = 3;

/// What to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Components {
    /// The store writer, on this database.
    pub database: Option<PathBuf>,
    /// A simulated inverter inserting rows into the database (`--demo`).
    pub demo_inverter: bool,
}

/// Resolves the database path: `DB_PATH`, else `inverter.db` (`demo.db` in demo mode).
pub fn database_path(config: &Config, demo: bool) -> PathBuf {
    config
        .db_path
        .clone()
        .unwrap_or_else(|| PathBuf::from(if demo { "demo.db" } else { "inverter.db" }))
}

/// Starts one session per battery; their events arrive on the returned receiver. The sessions
/// end when it is dropped.
pub async fn start_sessions(
    config: &Config,
    batteries: &[BatteryConfig],
) -> anyhow::Result<(Fleet, mpsc::Receiver<SessionEvent>)> {
    let fleet = transport::connect_all(config, batteries).await?;
    let estimator: Arc<dyn SocEstimator> =
        Arc::from(soc::estimator(config.soc_source, &config.soc_curve));
    let (tx, rx) = mpsc::channel::<SessionEvent>(256);
    for (i, (battery, connector)) in batteries
        .iter()
        .zip(fleet.connectors.iter().cloned())
        .enumerate()
    {
        let session = Session::new(
            i,
            &battery.name,
            connector,
            config.session.clone(),
            estimator.clone(),
            tx.clone(),
        );
        tokio::spawn(session.run());
    }
    Ok((fleet, rx))
}

/// Runs the service until `stop` is cancelled or a component fails.
pub async fn run(
    config: Config,
    components: Components,
    stop: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let batteries = config.batteries()?;
    let mut writer = match &components.database {
        Some(path) => {
            let store_batteries: Vec<Battery> = batteries
                .iter()
                .enumerate()
                .map(|(i, b)| Battery {
                    position: i + 1,
                    name: b.name.clone(),
                    address: b.address.map(|a| a.to_string()),
                })
                .collect();
            let (path, store_config) = (path.clone(), config.store.clone());
            let writer = tokio::task::spawn_blocking(move || {
                let store = Store::open(&path, store_config)?;
                tracing::info!("database {}", path.display());
                Writer::start(store, store_batteries)
            })
            .await
            .context("the database task panicked")??;
            Some(writer)
        }
        None => None,
    };
    let inverter = match (&components.database, components.demo_inverter) {
        (Some(path), true) => {
            let inverter = SimInverter::start(path, config.sim_inverter_interval, config.sim.seed)
                .context("could not start the simulated inverter")?;
            tracing::info!(
                "demo: a simulated inverter inserts a reading every {:.0} s",
                config.sim_inverter_interval.as_secs_f64()
            );
            Some(inverter)
        }
        _ => None,
    };
    let (fleet, mut events) = start_sessions(&config, &batteries).await?;
    let mut watchdog = Watchdog::new(config.watchdog, Instant::now());
    let persistent = config.session.mode == ConnectMode::Persistent;
    let mut fatal: Option<anyhow::Error> = None;
    let mut code = ExitCode::SUCCESS;
    loop {
        let deadline = watchdog.deadline();
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else {
                    fatal = Some(anyhow::anyhow!("every BMS session ended"));
                    break;
                };
                if let Some(w) = &writer {
                    w.send(message(&event, persistent));
                }
                if matches!(event.kind, EventKind::Snapshot { .. }) {
                    watchdog.feed(Instant::now());
                }
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                tracing::error!("{}", watchdog.explain());
                code = ExitCode::from(EXIT_WATCHDOG);
                break;
            }
            e = async { writer.as_mut().unwrap().failed().await }, if writer.is_some() => {
                writer = None;
                fatal = Some(anyhow::Error::new(e).context("the database writer gave up"));
                break;
            }
            _ = stop.cancelled() => {
                tracing::info!("stopping");
                break;
            }
        }
    }
    stop.cancel();
    drop(events);
    fleet.release().await;
    if let Some(inverter) = inverter {
        tokio::task::spawn_blocking(move || inverter.stop())
            .await
            .ok();
    }
    if let Some(w) = writer {
        let stats = w
            .stop()
            .await
            .context("the database was not closed cleanly")?;
        tracing::info!(
            "database closed after {} commit(s) ({} failed)",
            stats.commits,
            stats.failed_commits
        );
    }
    match fatal {
        Some(e) => Err(e),
        None => Ok(code),
    }
}

/// The writer's view of a session event.
fn message(event: &SessionEvent, persistent: bool) -> Message {
    let position = event.battery + 1;
    match &event.kind {
        EventKind::Snapshot { snapshot, .. } => Message::Snapshot {
            position,
            snapshot: snapshot.clone(),
            taken_at: Local::now(),
        },
        EventKind::State { state, detail, .. } => Message::State {
            position,
            state: state.to_string(),
            detail: detail.clone(),
            offline: persistent && *state == State::Disconnected,
        },
    }
}
