//! The long-running service: `jkmon run` (everything configured), `jkmon poll` (the BMS
//! sessions and the store only) and `jkmon watch` (sessions without a store) are built here.
//!
//! One [`CancellationToken`] stops it all: SIGINT/SIGTERM cancel it; the sessions are dropped,
//! every BMS is released, the writer commits what it holds and folds the WAL back, and only then
//! does the process exit. A component that fails for good (the database writer, the watchdog)
//! ends the service with a non-zero exit code. The web server, the Telegram bot and the MQTT
//! publisher join as further components under the same token; the publisher and `/metrics`
//! learn of every session event without ever holding the sessions up.

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
use crate::mqtt::Feed;
use crate::session::bus::{BusPack, BusSession, BusTiming};
use crate::session::{ConnectMode, EventKind, Session, SessionEvent, State, Watchdog};
use crate::store::read::{ReadConfig, Readers};
use crate::store::writer::{Message, Writer};
use crate::store::{Battery, Store};
use crate::telemetry::Telemetry;
use crate::transport::sim::inverter::SimInverter;
use crate::transport::{self, Fleet, TransportKind};
use crate::web::{self, AppState, WebConfig};

/// Exit code when the watchdog trips (no BMS delivered a frame for `BMS_TIMEOUT_SEC`).
pub const EXIT_WATCHDOG: u8 = 3;

/// How long the parts after the database writer get to stop (BMS links, web connections, bot,
/// alerts, MQTT), in all.
const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// What to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Components {
    /// The database. Always migrated at start; written only with `sessions`.
    pub database: PathBuf,
    /// One session per BMS, feeding the store writer.
    pub sessions: bool,
    /// A simulated inverter inserting rows into the database (`--demo`).
    pub demo_inverter: bool,
    /// The web server.
    pub web: Option<WebConfig>,
    /// The Telegram bot (when `TELEGRAM_BOT_TOKEN` is set) and the alerts (when anything is
    /// configured to receive them).
    pub bot_and_alerts: bool,
}

/// Resolves the database path: `DB_PATH`, else `inverter.db` (`demo.db` in demo mode).
pub fn database_path(config: &Config, demo: bool) -> PathBuf {
    config
        .db_path
        .clone()
        .unwrap_or_else(|| PathBuf::from(if demo { "demo.db" } else { "inverter.db" }))
}

/// The configured batteries as the store and the views know them (battery 1 first).
pub fn store_batteries(batteries: &[BatteryConfig]) -> Vec<Battery> {
    batteries
        .iter()
        .enumerate()
        .map(|(i, b)| Battery {
            position: i + 1,
            name: b.name.clone(),
            address: b.location(),
        })
        .collect()
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
        let session = BusSession::new(
            &bus_name(config),
            packs,
            fleet.connectors[0].clone(),
            config.session.clone(),
            config.wire.rs485_mode,
            BusTiming::default(),
            estimator,
            tx,
        );
        tokio::spawn(session.run());
        return Ok((fleet, rx));
    }
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
    if components.sessions {
        let (from, unused) = config.battery_source()?;
        tracing::info!("batteries from {from}");
        if let Some(unused) = unused {
            tracing::warn!("{unused}");
        }
    }
    let store_batteries = store_batteries(&batteries);
    let path = components.database.clone();
    let (store_config, for_writer, sessions) = (
        config.store.clone(),
        store_batteries.clone(),
        components.sessions,
    );
    let demo_inverter = components
        .demo_inverter
        .then_some((config.sim_inverter_interval, config.sim.seed));
    // the demo inverter writes its first row after the writer has taken stock of the table
    // (so that row is one to merge into) and before any BMS session can deliver
    let (web_only, busy_timeout, retention) = (
        components.web.is_some(),
        config.store.busy_timeout,
        config.store.retention,
    );
    let (mut writer, inverter, charts) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let store = Store::open(&path, store_config)?;
            tracing::info!("database {}", path.display());
            let writer = if sessions {
                Some(Writer::start(store, for_writer)?)
            } else {
                store.close()?;
                None
            };
            // without the writer, the web server makes its own chart history
            let charts = match (sessions, web_only) {
                (false, true) => Some(
                    crate::store::inverter::Aggregator::start(&path, busy_timeout, retention)
                        .context("could not start the chart history")?,
                ),
                _ => None,
            };
            let inverter = match demo_inverter {
                Some((interval, seed)) => {
                    let inverter = SimInverter::start(&path, interval, seed)
                        .context("could not start the simulated inverter")?;
                    tracing::info!(
                        "demo: a simulated inverter inserts a reading every {:.0} s",
                        interval.as_secs_f64()
                    );
                    Some(inverter)
                }
                None => None,
            };
            Ok((writer, inverter, charts))
        })
        .await
        .context("the database task panicked")??;
    // the views (web, bot, alerts) read the store through one pool and one view of the config
    let readers = Readers::new(&components.database, config.store.busy_timeout);
    let read_config = ReadConfig {
        batteries: store_batteries.clone(),
        freshness: config.store.freshness,
        persistent: config.session.mode == ConnectMode::Persistent,
        retention: config.store.retention,
    };
    let telemetry = components
        .sessions
        .then(|| Arc::new(telemetry_for(&config, &batteries)));
    // what the MQTT publisher reads; nothing is kept for it when MQTT is off
    let feed = (config.mqtt.is_some() && components.sessions).then(|| Feed::new(batteries.len()));
    let mut web_task = components.web.as_ref().map(|w| {
        let mut state = AppState::new(
            readers.clone(),
            read_config.clone(),
            w.auth_token.clone(),
            w.page.clone(),
        );
        state.telemetry = telemetry.clone();
        state.shutdown = stop.clone();
        let state = Arc::new(state);
        tokio::spawn(web::serve(w.bind, state, stop.child_token()))
    });
    let mut side_tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    if components.bot_and_alerts {
        if config.alerts.cell_levels.len() > 1 && config.alerts.cell_levels.len() != batteries.len()
        {
            anyhow::bail!(
                "BMS_CELL_LEVELS has {} pairs for {} batteries: give one pair for all, or one per battery separated by ;",
                config.alerts.cell_levels.len(),
                batteries.len()
            );
        }
        let (readers, read_config) = (readers.clone(), read_config.clone());
        if let Some(bot) = &config.bot {
            let task = crate::bot::run(
                bot.clone(),
                readers.clone(),
                read_config.clone(),
                stop.child_token(),
            );
            side_tasks.push(tokio::spawn(async move {
                if let Err(e) = task.await {
                    tracing::error!("bot: {e}");
                }
            }));
        }
        let notifier = crate::alerts::Notifier::new(config.bot.as_ref(), &config.notify)
            .map_err(anyhow::Error::msg)?;
        if notifier.is_empty() {
            tracing::info!("alerts: off (set TELEGRAM_CHAT_ID, ALERT_WEBHOOK_URL or ALERT_COMMAND to get them)");
        } else {
            side_tasks.push(tokio::spawn(crate::alerts::run(
                crate::alerts::Runner {
                    path: components.database.clone(),
                    busy: config.store.busy_timeout,
                    readers,
                    read_config,
                    config: config.alerts.clone(),
                    notifier,
                    every: config.alert_every,
                },
                stop.child_token(),
            )));
        }
    }
    if let (Some(mqtt), Some(feed)) = (&config.mqtt, &feed) {
        let task = crate::mqtt::run(
            mqtt.clone(),
            crate::mqtt::Layout::new(mqtt, &store_batteries),
            config.store.freshness,
            config.session.poll_interval,
            feed.subscribe(),
            stop.child_token(),
        );
        side_tasks.push(tokio::spawn(async move {
            if let Err(e) = task.await {
                tracing::error!("mqtt: {e}; nothing is published");
            }
        }));
    }
    let (fleet, mut events) = if components.sessions {
        let (fleet, events) = start_sessions(&config, &batteries).await?;
        (Some(fleet), Some(events))
    } else {
        (None, None)
    };
    // systemd: ready now; the watchdog is fed at half its interval while a BMS delivered a
    // snapshot within that interval (or always, when this process runs no sessions)
    let notify = crate::systemd::Notify::from_env();
    if let Some(n) = &notify {
        n.send("READY=1");
    }
    let systemd_every = notify.as_ref().and_then(|n| n.watchdog).map(|w| w / 2);
    let mut systemd_tick = systemd_every.map(tokio::time::interval);
    let mut last_snapshot = Instant::now();
    let mut watchdog = Watchdog::new(
        config.watchdog.filter(|_| components.sessions),
        Instant::now(),
    );
    let persistent = config.session.mode == ConnectMode::Persistent;
    let mut fatal: Option<anyhow::Error> = None;
    let mut code = ExitCode::SUCCESS;
    loop {
        let deadline = watchdog.deadline();
        tokio::select! {
            event = async { events.as_mut().unwrap().recv().await }, if events.is_some() => {
                let Some(event) = event else {
                    fatal = Some(anyhow::anyhow!("every BMS session ended"));
                    break;
                };
                if let Some(w) = &writer {
                    w.send(message(&event, persistent));
                }
                if let Some(t) = &telemetry {
                    t.record(&event);
                }
                if let Some(f) = &feed {
                    f.record(&event, persistent, Instant::now());
                }
                if matches!(event.kind, EventKind::Snapshot { .. }) {
                    watchdog.feed(Instant::now());
                    last_snapshot = Instant::now();
                }
            }
            _ = async { systemd_tick.as_mut().unwrap().tick().await }, if systemd_tick.is_some() => {
                let limit = systemd_every.unwrap_or_default() * 2;
                if !components.sessions || last_snapshot.elapsed() < limit {
                    if let Some(n) = &notify {
                        n.send("WATCHDOG=1");
                    }
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
            ended = async { web_task.as_mut().unwrap().await }, if web_task.is_some() => {
                web_task = None;
                if stop.is_cancelled() && matches!(ended, Ok(Ok(()))) {
                    tracing::info!("stopping");
                    break; // it drained on the signal that stops everything
                }
                fatal = Some(match ended {
                    Ok(Err(e)) => anyhow::Error::new(e).context("the web server stopped"),
                    _ => anyhow::anyhow!("the web server stopped"),
                });
                break;
            }
            _ = stop.cancelled() => {
                tracing::info!("stopping");
                break;
            }
        }
    }
    if let Some(n) = &notify {
        n.send("STOPPING=1");
    }
    stop.cancel();
    drop(events);
    // the writer first: its last commit, and the batteries out of the merge at once, before
    // anything that may take a while (releasing a Bluetooth link, draining the web server)
    let closed = match writer {
        Some(w) => Some(w.stop().await),
        None => None,
    };
    // the rest gets STOP_DEADLINE in all: systemd and Docker wait 10–90 s, then kill
    let deadline = Instant::now() + STOP_DEADLINE;
    if let Some(fleet) = fleet {
        if tokio::time::timeout_at(deadline, fleet.release())
            .await
            .is_err()
        {
            tracing::warn!("stopping: not every BMS link was released in time");
        }
    }
    if let Some(task) = web_task {
        let _ = tokio::time::timeout_at(deadline, task).await;
    }
    for mut task in side_tasks {
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
        }
    }
    if let Some(inverter) = inverter {
        let _ = tokio::time::timeout_at(
            deadline,
            tokio::task::spawn_blocking(move || inverter.stop()),
        )
        .await;
    }
    if let Some(charts) = charts {
        let _ =
            tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(move || charts.stop()))
                .await;
    }
    if let Some(closed) = closed {
        let stats = closed.context("the database was not closed cleanly")?;
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

/// The service's counters: one link per battery, or one for a whole RS485 bus.
fn telemetry_for(config: &Config, batteries: &[BatteryConfig]) -> Telemetry {
    if config.transport == TransportKind::Rs485 {
        Telemetry::shared(bus_name(config), batteries.len())
    } else {
        let names: Vec<String> = batteries.iter().map(|b| b.name.clone()).collect();
        Telemetry::per_battery(&names)
    }
}

fn bus_name(config: &Config) -> String {
    let port = config
        .wire
        .port
        .as_ref()
        .map_or_else(String::new, |p| p.path.display().to_string());
    format!("RS485 bus on {port}")
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
