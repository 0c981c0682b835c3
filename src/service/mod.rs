//! The long-running service: `jkmon run` (everything configured), `jkmon poll` (the BMS
//! sessions and the store only) and `jkmon watch` (sessions without a store) are built here.
//!
//! One [`CancellationToken`] stops it all: SIGINT/SIGTERM cancel it; the sessions are dropped,
//! every BMS is released, the writer commits what it holds and folds the WAL back, and only then
//! does the process exit. A component that fails for good (the database writer, the watchdog)
//! ends the service with a non-zero exit code. The web server, the Telegram bot and the MQTT
//! publisher join as further components under the same token; the publisher and `/metrics`
//! learn of every session event without ever holding the sessions up.
//!
//! Layer 8: wires every module below; only `cli` uses it.
//!
//! - this file: what to start and in which order ([`run`]);
//! - `sessions`: the BMS sessions and the switch-write channels;
//! - `extras`: the inverter poller, the bot, the alerts and MQTT;
//! - `fan_out`: every event to everything that follows the batteries, and the watch over the parts;
//! - `watchdog`: systemd's watchdog;
//! - `stop`: the stop order.

mod extras;
mod fan_out;
mod sessions;
mod stop;
mod watchdog;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tokio::task::JoinHandle;

use crate::config::{BatteryConfig, Config, ConfigError};
use crate::control::Controller;
use crate::mqtt::Feed;
use crate::session::{SessionEvent, Watchdog};
use crate::store::inverter::Aggregator;
use crate::store::live::Live;
use crate::store::read::{ReadConfig, Readers};
use crate::store::writer::Writer;
use crate::store::{Battery, Store};
use crate::telemetry::Telemetry;
use crate::transport::{Fleet, TransportKind};
use crate::web::{self, AppState, WebConfig};

use extras::{start_bot_and_alerts, start_inverter, start_mqtt, InverterPart};
pub use sessions::{control_slots, start_sessions, start_sessions_with, write_link};
use sessions::{log_control, telemetry_for};

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
    /// A simulated inverter behind a simulated Wi-Fi dongle on the loopback, polled by jkmon's
    /// own inverter poller (`--demo`).
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

/// The batteries this process works with. Sessions need a BMS configured; a process that only
/// reads the file (`jkmon web`, `jkmon bot`) shows the batteries the database holds when none
/// is.
fn configured_batteries(
    config: &Config,
    components: &Components,
) -> anyhow::Result<Vec<BatteryConfig>> {
    if !components.sessions {
        return match config.batteries() {
            Err(ConfigError::NoBms(_)) => Ok(Vec::new()),
            other => Ok(other?),
        };
    }
    let batteries = config.batteries()?;
    let (from, unused) = config.battery_source()?;
    tracing::info!("batteries from {from}");
    if let Some(unused) = unused {
        tracing::warn!("{unused}");
    }
    Ok(batteries)
}

/// What runs beside the sessions and must be stopped in order.
struct Parts {
    writer: Option<Writer>,
    inverter: Option<InverterPart>,
    charts: Option<Aggregator>,
    fleet: Option<Fleet>,
    events: Option<mpsc::Receiver<SessionEvent>>,
    web: Option<JoinHandle<Result<(), std::io::Error>>>,
    side_tasks: Vec<JoinHandle<()>>,
    telemetry: Option<Arc<Telemetry>>,
    feed: Option<Feed>,
    live: Option<Live>,
    /// The InfluxDB sink's handle, where `INFLUX_URL` turned it on.
    influx: Option<crate::influx::Sink>,
}

/// Runs the service until `stop` is cancelled or a component fails. The order matters: the
/// store first (migrated, its writer running), then the views, then the inverter poller (so
/// its first row is in the table at once), then the sessions; on the way out, the writer's
/// last commit comes first ([`Parts::stop`]).
pub async fn run(
    mut config: Config,
    components: Components,
    stop: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let batteries = prepare(&mut config, &components)?;
    let store_batteries = store_batteries(&batteries);
    // the views (web, bot, alerts) read the store through one pool and one view of the config;
    // where this process runs the sessions, they see each battery's newest snapshot
    let live = components.sessions.then(Live::default);
    let (writer, charts) = open_store(&config, &components, &store_batteries, live.clone()).await?;
    let mut readers = Readers::new(&components.database, config.store.busy_timeout);
    if let Some(live) = &live {
        readers = readers.with_live(live.clone());
    }
    let read_config = ReadConfig {
        batteries: store_batteries.clone(),
        liveness: config.liveness(),
        retention: config.store.retention,
        inverter_max_gap: config.store.inverter_max_gap(),
    };
    let (slots, write_receivers) = control_slots(&config, &store_batteries, components.sessions);
    let controller = Controller::new(slots, writer.as_ref().and_then(Writer::sender));
    log_control(&controller, components.sessions, components.demo_inverter);
    let telemetry = components.sessions.then(|| {
        let t = telemetry_for(&config, &batteries);
        Arc::new(match config.influx {
            Some(_) => t.with_influx(),
            None => t,
        })
    });
    // what the MQTT publisher reads; nothing is kept for it when MQTT is off
    let feed = (config.mqtt.is_some() && components.sessions).then(|| Feed::new(batteries.len()));
    let views = Views {
        readers,
        read_config,
        controller,
        telemetry: telemetry.clone(),
    };
    let web = start_web(&config, &components, &views, &stop);
    let mut side_tasks = start_side_tasks(
        &config,
        &components,
        &views,
        &store_batteries,
        feed.as_ref(),
        &stop,
    )?;
    let influx =
        start_influx(&config, telemetry.as_deref(), &batteries, &stop).map(|(sink, task)| {
            side_tasks.push(task);
            sink
        });
    let inverter = match components.sessions {
        true => start_inverter(&config, &components, &stop).await?,
        false => None,
    };
    let (fleet, events) = if components.sessions {
        let (fleet, events) = start_sessions_with(&config, &batteries, write_receivers).await?;
        (Some(fleet), Some(events))
    } else {
        (None, None)
    };
    let parts = Parts {
        writer,
        inverter,
        charts,
        fleet,
        events,
        web,
        side_tasks,
        telemetry,
        feed,
        live,
        influx,
    };
    parts.run(&config, &components, &stop).await
}

/// What every view reads through: the pool, the read config, the switches and the counters.
struct Views {
    readers: Readers,
    read_config: ReadConfig,
    controller: Controller,
    telemetry: Option<Arc<Telemetry>>,
}

/// The batteries this run works with, and the configuration made whole for it: rows of
/// jkmon's own where it polls the inverter, and the demo's one physics.
fn prepare(config: &mut Config, components: &Components) -> anyhow::Result<Vec<BatteryConfig>> {
    let polls_inverter =
        components.sessions && (components.demo_inverter || config.inverter.is_some());
    if polls_inverter {
        config.store.own_rows = crate::store::OwnRows::OwnPoller;
    }
    let batteries = configured_batteries(config, components)?;
    // the demo: the simulated inverter and the simulated batteries share one physics, so the
    // numbers it shows agree with each other
    // (unless JK_SIM_PERIOD_SEC asks for the simulated battery's own cycle)
    if components.demo_inverter
        && config.transport == TransportKind::Sim
        && !config.sim.profile_chosen
    {
        config.sim.plant = Some(crate::transport::sim::plant::Plant::new(
            config.sim.seed,
            batteries.len(),
        ));
    }
    Ok(batteries)
}

/// The InfluxDB sink, where `INFLUX_URL` turned it on and this process runs the sessions (its
/// counters are in `telemetry`).
fn start_influx(
    config: &Config,
    telemetry: Option<&Telemetry>,
    batteries: &[BatteryConfig],
    stop: &CancellationToken,
) -> Option<(crate::influx::Sink, JoinHandle<()>)> {
    let influx = config.influx.as_ref()?;
    let counters = telemetry?.influx.clone()?;
    let names = batteries.iter().map(|b| b.name.clone()).collect();
    Some(crate::influx::start(
        influx,
        names,
        counters,
        stop.child_token(),
    ))
}

/// The web server, where this run serves it.
fn start_web(
    config: &Config,
    components: &Components,
    views: &Views,
    stop: &CancellationToken,
) -> Option<JoinHandle<Result<(), std::io::Error>>> {
    let w = components.web.as_ref()?;
    let mut state = AppState::new(
        views.readers.clone(),
        views.read_config.clone(),
        w.auth_token.clone(),
        w.page.clone(),
    );
    state.telemetry = views.telemetry.clone();
    state.control = views.controller.clone();
    // the demo's battery is simulated: its switches work from the open dashboard
    state.open_switching = components.demo_inverter && config.transport == TransportKind::Sim;
    state.shutdown = stop.clone();
    Some(tokio::spawn(web::serve(
        w.bind,
        Arc::new(state),
        stop.child_token(),
    )))
}

/// The bot, the alerts and the MQTT publisher, where configured.
fn start_side_tasks(
    config: &Config,
    components: &Components,
    views: &Views,
    batteries: &[Battery],
    feed: Option<&Feed>,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut side_tasks = Vec::new();
    if components.bot_and_alerts {
        side_tasks = start_bot_and_alerts(
            config,
            components,
            &views.readers,
            &views.read_config,
            &views.controller,
            stop,
        )?;
    }
    if let (Some(mqtt), Some(feed)) = (&config.mqtt, feed) {
        side_tasks.push(start_mqtt(
            config,
            mqtt,
            batteries,
            feed,
            &views.controller,
            stop,
        ));
    }
    Ok(side_tasks)
}

impl Parts {
    /// Tells systemd jkmon is ready, fans the events out until the end, and stops every part.
    async fn run(
        mut self,
        config: &Config,
        components: &Components,
        stop: &CancellationToken,
    ) -> anyhow::Result<ExitCode> {
        let notify = crate::systemd::Notify::from_env();
        if let Some(n) = &notify {
            n.send("READY=1");
        }
        let watchdog = Watchdog::new(
            config.watchdog.filter(|_| components.sessions),
            Instant::now(),
        );
        let ended = self
            .fan_out(config.liveness(), watchdog, notify.as_ref(), stop)
            .await;
        if let Some(n) = &notify {
            n.send("STOPPING=1");
        }
        stop.cancel();
        self.stop().await?;
        ended
    }
}

/// Opens (and migrates) the database and starts what writes it: the writer when this process
/// runs sessions, the chart history when it serves the web alone.
async fn open_store(
    config: &Config,
    components: &Components,
    batteries: &[Battery],
    live: Option<Live>,
) -> anyhow::Result<(Option<Writer>, Option<Aggregator>)> {
    let path = components.database.clone();
    let (store_config, for_writer, sessions) = (
        config.store.clone(),
        batteries.to_vec(),
        components.sessions,
    );
    let (web_only, busy_timeout, retention, energy_gap) = (
        components.web.is_some(),
        config.store.busy_timeout,
        config.store.retention,
        config.store.inverter_max_gap(),
    );
    tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let store = Store::open(&path, store_config)?;
        tracing::info!("database {}", path.display());
        let writer = if sessions {
            Some(Writer::start(store, for_writer, live)?)
        } else {
            store.close()?;
            None
        };
        // without the writer, the web server makes its own chart history
        let charts = match (sessions, web_only) {
            (false, true) => Some(
                Aggregator::start(&path, busy_timeout, retention, energy_gap)
                    .context("could not start the chart history")?,
            ),
            _ => None,
        };
        Ok((writer, charts))
    })
    .await
    .context("the database task panicked")?
}
