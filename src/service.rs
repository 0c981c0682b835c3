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

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{Local, Utc};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tokio::task::JoinHandle;

use crate::battery::{soc, SocEstimator};
use crate::config::{BatteryConfig, Config, ConfigError};
use crate::control::{Controller, Slot, WriteLink};
use crate::mqtt::Feed;
use crate::session::bus::{BusPack, BusSession, BusTiming};
use crate::session::control::WriteRequest;
use crate::session::inverter::{self as inverter_poller, InverterEvent, PollerConfig};
use crate::session::{EventKind, Liveness, Session, SessionEvent, Watchdog};
use crate::store::inverter::Aggregator;
use crate::store::live::Live;
use crate::store::read::{ReadConfig, Readers};
use crate::store::writer::{Message, Writer};
use crate::store::{Battery, Store};
use crate::telemetry::Telemetry;
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

/// Starts one session per battery; their events arrive on the returned receiver. The sessions
/// end when it is dropped.
pub async fn start_sessions(
    config: &Config,
    batteries: &[BatteryConfig],
) -> anyhow::Result<(Fleet, mpsc::Receiver<SessionEvent>)> {
    start_sessions_with(config, batteries, Vec::new()).await
}

/// How switch writes travel on `transport`, or why they cannot.
pub fn write_link(transport: TransportKind) -> Result<WriteLink, &'static str> {
    match transport {
        TransportKind::Ble | TransportKind::Sim => Ok(WriteLink::Bluetooth),
        TransportKind::Rs485 => Ok(WriteLink::Rs485),
        TransportKind::Serial => Err("the serial 4E 57 port takes no writes (most boards refuse them there); switch it over Bluetooth"),
    }
}

/// Control's view of the batteries, and the receiving ends of the write channels for the
/// sessions (one per battery `JK_BMS_CONTROL` allows, where this process runs the sessions; on
/// an RS485 network one for the bus, beside the first allowed pack).
pub fn control_slots(
    config: &Config,
    batteries: &[Battery],
    sessions: bool,
) -> (Vec<Slot>, Vec<Option<mpsc::Receiver<WriteRequest>>>) {
    let (link, no_link_why) = match write_link(config.transport) {
        Ok(link) => (Some(link), ""),
        Err(why) => (None, why),
    };
    let (bus, mut bus_rx) = match link {
        Some(WriteLink::Rs485) => {
            let (tx, rx) = mpsc::channel(8);
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    batteries
        .iter()
        .map(|b| {
            let allowed = config.control.allows(b.position, &b.name);
            let (writes, taken) = match (allowed && sessions && link.is_some(), &bus) {
                (false, _) => (None, None),
                // the packs of an RS485 network share their one session's channel
                (true, Some(tx)) => (Some(tx.clone()), bus_rx.take()),
                (true, None) => {
                    let (tx, rx) = mpsc::channel(8);
                    (Some(tx), Some(rx))
                }
            };
            let slot = Slot {
                position: b.position,
                name: b.name.clone(),
                device_key: b.device_key(),
                allowed,
                link,
                no_link_why,
                writes,
            };
            (slot, taken)
        })
        .unzip()
}

/// As [`start_sessions`]; battery `i`'s session takes switch writes from `writes[i]` where
/// there is one.
pub async fn start_sessions_with(
    config: &Config,
    batteries: &[BatteryConfig],
    mut writes: Vec<Option<mpsc::Receiver<WriteRequest>>>,
) -> anyhow::Result<(Fleet, mpsc::Receiver<SessionEvent>)> {
    writes.resize_with(batteries.len(), || None);
    let fleet = transport::connect_all(config.transport_plan(), batteries).await?;
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
        let mut session = BusSession::new(
            &bus_name(config),
            packs,
            fleet.connectors[0].clone(),
            config.session.clone(),
            config.wire.rs485_mode,
            BusTiming::default(),
            estimator,
            tx,
        );
        // one session for every pack, one channel for their writes (each names its battery)
        if let Some(bus_writes) = writes.into_iter().flatten().next() {
            session = session.with_writes(bus_writes);
        }
        tokio::spawn(session.run());
        return Ok((fleet, rx));
    }
    for (i, ((battery, connector), writes)) in batteries
        .iter()
        .zip(fleet.connectors.iter().cloned())
        .zip(writes)
        .enumerate()
    {
        let mut session = Session::new(
            i,
            &battery.name,
            connector,
            config.session.clone(),
            estimator.clone(),
            tx.clone(),
        );
        if let Some(writes) = writes {
            session = session.with_writes(writes);
        }
        tokio::spawn(session.run());
    }
    Ok((fleet, rx))
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
}

/// Runs the service until `stop` is cancelled or a component fails.
#[expect(
    clippy::too_many_lines,
    reason = "the start-up order of the parts in one place; it becomes the service folder's start-up file with issue 32"
)]
pub async fn run(
    mut config: Config,
    components: Components,
    stop: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let polls_inverter =
        components.sessions && (components.demo_inverter || config.inverter.is_some());
    if polls_inverter {
        config.store.own_rows = crate::store::OwnRows::OwnPoller;
    }
    let batteries = configured_batteries(&config, &components)?;
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
    let telemetry = components
        .sessions
        .then(|| Arc::new(telemetry_for(&config, &batteries)));
    // what the MQTT publisher reads; nothing is kept for it when MQTT is off
    let feed = (config.mqtt.is_some() && components.sessions).then(|| Feed::new(batteries.len()));
    let web = components.web.as_ref().map(|w| {
        let mut state = AppState::new(
            readers.clone(),
            read_config.clone(),
            w.auth_token.clone(),
            w.page.clone(),
        );
        state.telemetry = telemetry.clone();
        state.control = controller.clone();
        // the demo's battery is simulated: its switches work from the open dashboard
        state.open_switching = components.demo_inverter && config.transport == TransportKind::Sim;
        state.shutdown = stop.clone();
        tokio::spawn(web::serve(w.bind, Arc::new(state), stop.child_token()))
    });
    let mut side_tasks = Vec::new();
    if components.bot_and_alerts {
        side_tasks = start_bot_and_alerts(
            &config,
            &components,
            &readers,
            &read_config,
            &controller,
            &stop,
        )?;
    }
    if let (Some(mqtt), Some(feed)) = (&config.mqtt, &feed) {
        side_tasks.push(start_mqtt(
            &config,
            mqtt,
            &store_batteries,
            feed,
            &controller,
            &stop,
        ));
    }
    // the inverter's poller starts before the sessions, so its first row is in the table at
    // once (the merge puts each battery into it as soon as it answers)
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
    let mut parts = Parts {
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
    };
    let notify = crate::systemd::Notify::from_env();
    if let Some(n) = &notify {
        n.send("READY=1");
    }
    let watchdog = Watchdog::new(
        config.watchdog.filter(|_| components.sessions),
        Instant::now(),
    );
    let ended = parts
        .fan_out(config.liveness(), watchdog, notify.as_ref(), &stop)
        .await;
    if let Some(n) = &notify {
        n.send("STOPPING=1");
    }
    stop.cancel();
    parts.stop().await?;
    ended
}

/// Says at start which batteries jkmon may switch, and why the others not.
fn log_control(controller: &Controller, sessions: bool, demo: bool) {
    if !sessions {
        return;
    }
    let slots = controller.slots();
    let on: Vec<&str> = slots
        .iter()
        .filter(|s| s.takes_writes())
        .map(|s| s.name.as_str())
        .collect();
    if on.is_empty() && !slots.iter().any(|s| s.allowed) {
        tracing::info!("control: off (JK_BMS_CONTROL); jkmon only reads the batteries");
        return;
    }
    if !on.is_empty() {
        tracing::info!(
            "control: jkmon may switch {} (JK_BMS_CONTROL)",
            on.join(", ")
        );
    }
    if demo && !on.is_empty() {
        tracing::info!("demo: the simulated battery's switches work from the dashboard, the API, `jkmon set`, MQTT and the bot (JK_BMS_CONTROL=off turns them off)");
    }
    for s in slots.iter().filter(|s| s.allowed && s.link.is_none()) {
        tracing::warn!("control: {} cannot be switched: {}", s.name, s.no_link_why);
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

/// jkmon's own inverter poller and what it needs to stop.
struct InverterPart {
    events: mpsc::Receiver<InverterEvent>,
    task: JoinHandle<()>,
    /// The demo's simulated dongle and inverter (dropped, they stop).
    _sim: Option<crate::transport::sim::dongle::SimDongle>,
}

/// Starts the inverter poller where `INVERTER_TRANSPORT` asks for one, or against a simulated
/// dongle on the loopback in the demo.
async fn start_inverter(
    config: &Config,
    components: &Components,
    stop: &CancellationToken,
) -> anyhow::Result<Option<InverterPart>> {
    let (poller, sim) = if components.demo_inverter {
        let (poller, sim) = demo_inverter(config).await?;
        tracing::info!(
            "demo: jkmon polls a simulated inverter behind a simulated Wi-Fi dongle on {} every {:.1} s",
            sim.udp_addr,
            poller.interval.as_secs_f64()
        );
        (poller, Some(sim))
    } else {
        let Some(inverter) = config.inverter.clone() else {
            return Ok(None);
        };
        let poller = PollerConfig {
            inverter,
            interval: config.store.inverter_poll,
        };
        tracing::info!(
            "inverter: jkmon polls the {} every {:.0} s (POLL_INTERVAL); the Python poller must not run beside it",
            poller.inverter.model.description,
            poller.interval.as_secs_f64()
        );
        (poller, None)
    };
    let (tx, events) = mpsc::channel(64);
    let task = tokio::spawn(inverter_poller::run(poller, tx, stop.child_token()));
    Ok(Some(InverterPart {
        events,
        task,
        _sim: sim,
    }))
}

/// The demo's inverter: an SMG-II 11K whose values follow the day, behind a simulated dongle
/// with a little of a real link's noise (a dropped request, a bad CRC, an exception now and
/// then), polled every `JK_SIM_INVERTER_SEC`.
async fn demo_inverter(
    config: &Config,
) -> anyhow::Result<(PollerConfig, crate::transport::sim::dongle::SimDongle)> {
    use crate::inverter::registers::SMG_II_11K;
    use crate::transport::inverter::dongle::DongleConfig;
    use crate::transport::inverter::{InverterConfig, LinkConfig};
    use crate::transport::sim::dongle::{SimDongle, SimDongleConfig};
    use crate::transport::sim::inverter::Faults;
    let mut sim = SimDongleConfig::new(&SMG_II_11K);
    sim.inverter.day = Some(config.sim.seed);
    // the simulated BMSs' physics, where the demo simulates them (else the day's alone)
    sim.inverter.plant = config.sim.plant.clone();
    sim.inverter.faults = Faults {
        drop_every: 97,
        bad_crc_every: 89,
        exception_every: 83,
        close_every: 0,
    };
    let sim = SimDongle::start(sim)
        .await
        .context("could not start the simulated dongle")?;
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut link = DongleConfig::new(loopback, loopback);
    link.dongle = sim.udp_addr;
    link.listen_port = 0;
    link.read_timeout = std::time::Duration::from_secs(1);
    link.announce_every = std::time::Duration::from_millis(200);
    let poller = PollerConfig {
        inverter: InverterConfig {
            link: LinkConfig::Dongle(link),
            model: &SMG_II_11K,
        },
        interval: config.sim_inverter_interval,
    };
    Ok((poller, sim))
}

/// The Telegram bot (when `TELEGRAM_BOT_TOKEN` is set) and the alerts (when anything is
/// configured to receive them).
fn start_bot_and_alerts(
    config: &Config,
    components: &Components,
    readers: &Readers,
    read_config: &ReadConfig,
    controller: &Controller,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let levels = config.alerts.cell_levels.len();
    let batteries = read_config.batteries.len();
    if levels > 1 && batteries > 0 && levels != batteries {
        anyhow::bail!(
            "BMS_CELL_LEVELS has {levels} pairs for {batteries} batteries: give one pair for all, or one per battery separated by ;"
        );
    }
    let mut tasks = Vec::new();
    if let Some(bot) = &config.bot {
        let task = crate::bot::run(
            bot.clone(),
            readers.clone(),
            read_config.clone(),
            controller.clone(),
            stop.child_token(),
        );
        tasks.push(tokio::spawn(async move {
            if let Err(e) = task.await {
                tracing::error!("bot: {e}");
            }
        }));
    }
    let notifier = crate::alerts::Notifier::new(config.bot.as_ref(), &config.notify)
        .map_err(anyhow::Error::msg)?;
    if notifier.is_empty() {
        tracing::info!(
            "alerts: off (set TELEGRAM_CHAT_ID, ALERT_WEBHOOK_URL or ALERT_COMMAND to get them)"
        );
        return Ok(tasks);
    }
    tasks.push(tokio::spawn(crate::alerts::run(
        crate::alerts::Runner {
            path: components.database.clone(),
            busy: config.store.busy_timeout,
            readers: readers.clone(),
            read_config: read_config.clone(),
            config: config.alerts.clone(),
            notifier,
            every: config.alert_every,
        },
        stop.child_token(),
    )));
    Ok(tasks)
}

/// The MQTT publisher, fed by the sessions' events through `feed`.
fn start_mqtt(
    config: &Config,
    mqtt: &crate::mqtt::MqttConfig,
    batteries: &[Battery],
    feed: &Feed,
    controller: &Controller,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let task = crate::mqtt::run(
        mqtt.clone(),
        crate::mqtt::Layout::new(mqtt, batteries),
        config.store.freshness,
        mqtt.state_every,
        crate::mqtt::client::Inputs {
            feed: feed.subscribe(),
            inverter: feed.subscribe_inverter(),
            control: controller.clone(),
        },
        stop.child_token(),
    );
    tokio::spawn(async move {
        if let Err(e) = task.await {
            tracing::error!("mqtt: {e}; nothing is published");
        }
    })
}

/// systemd's watchdog, fed at half its interval while a BMS delivered a snapshot within that
/// interval (or always, when this process runs no sessions).
struct SystemdWatchdog<'a> {
    notify: Option<&'a crate::systemd::Notify>,
    every: Option<std::time::Duration>,
    tick: Option<tokio::time::Interval>,
    last_snapshot: Instant,
    /// How long jkmon itself waits for the next snapshot without worry: in periodic mode a
    /// whole cycle (it may be longer than `WatchdogSec`), else nothing beyond the watchdog.
    expected_gap: std::time::Duration,
}

impl<'a> SystemdWatchdog<'a> {
    fn new(notify: Option<&'a crate::systemd::Notify>, liveness: Liveness) -> Self {
        let every = notify.and_then(|n| n.watchdog).map(|w| w / 2);
        let expected_gap = match liveness.mode {
            crate::session::ConnectMode::Periodic => liveness.freshness,
            crate::session::ConnectMode::Persistent => std::time::Duration::ZERO,
        };
        SystemdWatchdog {
            notify,
            every,
            tick: every.map(tokio::time::interval),
            last_snapshot: Instant::now(),
            expected_gap,
        }
    }

    /// Waits for the next feeding time; never returns without a watchdog.
    async fn due(&mut self) {
        match self.tick.as_mut() {
            Some(t) => {
                t.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    fn feed(&self, sessions: bool) {
        let limit = (self.every.unwrap_or_default() * 2).max(self.expected_gap);
        if !sessions || self.last_snapshot.elapsed() < limit {
            if let Some(n) = self.notify {
                n.send("WATCHDOG=1");
            }
        }
    }
}

impl Parts {
    /// Hands every session event to the writer, the counters and the MQTT feed, and watches
    /// the parts, until `stop` or a part fails. Returns the exit code, or why it failed.
    async fn fan_out(
        &mut self,
        liveness: Liveness,
        mut watchdog: Watchdog,
        notify: Option<&crate::systemd::Notify>,
        stop: &CancellationToken,
    ) -> anyhow::Result<ExitCode> {
        let sessions = self.events.is_some();
        let mut systemd = SystemdWatchdog::new(notify, liveness);
        loop {
            let deadline = watchdog.deadline();
            tokio::select! {
                event = async { self.events.as_mut().unwrap().recv().await }, if self.events.is_some() => {
                    let Some(event) = event else {
                        return Err(anyhow::anyhow!("every BMS session ended"));
                    };
                    self.route(&event, liveness);
                    if matches!(event.kind, EventKind::Snapshot { .. }) {
                        watchdog.feed(Instant::now());
                        systemd.last_snapshot = Instant::now();
                    }
                }
                event = async { self.inverter.as_mut().unwrap().events.recv().await }, if self.inverter.is_some() => {
                    match event {
                        Some(event) => self.route_inverter(event),
                        // it ends on the signal that stops everything, or not at all
                        None if stop.is_cancelled() => {
                            tracing::info!("stopping");
                            return Ok(ExitCode::SUCCESS);
                        }
                        None => {
                            self.inverter = None;
                            return Err(anyhow::anyhow!("the inverter poller ended"));
                        }
                    }
                }
                _ = systemd.due() => systemd.feed(sessions),
                _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                    tracing::error!("{}", watchdog.explain());
                    return Ok(ExitCode::from(EXIT_WATCHDOG));
                }
                e = async { self.writer.as_mut().unwrap().failed().await }, if self.writer.is_some() => {
                    self.writer = None;
                    return Err(anyhow::Error::new(e).context("the database writer gave up"));
                }
                ended = async { self.web.as_mut().unwrap().await }, if self.web.is_some() => {
                    self.web = None;
                    if stop.is_cancelled() && matches!(ended, Ok(Ok(()))) {
                        tracing::info!("stopping");
                        return Ok(ExitCode::SUCCESS); // it drained on the signal that stops everything
                    }
                    return Err(match ended {
                        Ok(Err(e)) => anyhow::Error::new(e).context("the web server stopped"),
                        _ => anyhow::anyhow!("the web server stopped"),
                    });
                }
                _ = stop.cancelled() => {
                    tracing::info!("stopping");
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }

    /// One session event to everything that follows the batteries; never waits.
    fn route(&self, event: &SessionEvent, liveness: Liveness) {
        if let (Some(live), EventKind::Snapshot { snapshot, .. }) = (&self.live, &event.kind) {
            live.record(event.battery + 1, Arc::clone(snapshot), Utc::now());
        }
        if let Some(w) = &self.writer {
            w.send(message(event, liveness));
        }
        if let Some(t) = &self.telemetry {
            t.record(event);
        }
        if let Some(f) = &self.feed {
            let energy = self.live.as_ref().and_then(|l| l.energy(event.battery + 1));
            f.record(event, liveness, Instant::now(), energy);
        }
    }

    /// One inverter poller event to the MQTT feed and the writer (its row, its state).
    fn route_inverter(&self, event: InverterEvent) {
        if let Some(f) = &self.feed {
            let energy_today = self.live.as_ref().and_then(Live::inverter_energy);
            f.record_inverter(&event, energy_today);
        }
        let Some(w) = &self.writer else { return };
        w.send(match event {
            InverterEvent::Poll(poll) => Message::Reading(poll),
            InverterEvent::State {
                state,
                detail,
                model,
                link,
                interval,
            } => Message::InverterState {
                state,
                detail,
                model,
                link,
                interval,
            },
        });
    }

    /// Stops every part: the writer first (its last commit, and the batteries out of the
    /// merge at once, before anything that may take a while), then the rest within
    /// [`STOP_DEADLINE`] in all, since systemd and Docker wait 10–90 s and then kill.
    async fn stop(self) -> anyhow::Result<()> {
        drop(self.events);
        // the poller stops with the token; a poll in flight is dropped, its row never written
        if let Some(inverter) = self.inverter {
            drop(inverter.events);
            let _ = tokio::time::timeout(STOP_DEADLINE, inverter.task).await;
        }
        let closed = match self.writer {
            Some(w) => Some(w.stop().await),
            None => None,
        };
        let deadline = Instant::now() + STOP_DEADLINE;
        if let Some(fleet) = self.fleet {
            if tokio::time::timeout_at(deadline, fleet.release())
                .await
                .is_err()
            {
                tracing::warn!("stopping: not every BMS link was released in time");
            }
        }
        if let Some(task) = self.web {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        for mut task in self.side_tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        if let Some(charts) = self.charts {
            let stopped = tokio::task::spawn_blocking(move || charts.stop());
            let _ = tokio::time::timeout_at(deadline, stopped).await;
        }
        if let Some(closed) = closed {
            let stats = closed.context("the database was not closed cleanly")?;
            tracing::info!(
                "database closed after {} commit(s) ({} failed)",
                stats.commits,
                stats.failed_commits
            );
        }
        Ok(())
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
        .map_or_else(PathBuf::new, |p| p.path.clone());
    transport::bus_name(&port)
}

/// The writer's view of a session event.
fn message(event: &SessionEvent, liveness: Liveness) -> Message {
    let position = event.battery + 1;
    match &event.kind {
        EventKind::Snapshot { snapshot, .. } => Message::Snapshot {
            position,
            snapshot: snapshot.clone(),
            taken_at: Local::now(),
        },
        EventKind::State { state, detail, .. } => Message::State {
            position,
            state: *state,
            detail: detail.clone(),
            offline: liveness.lost(*state),
        },
    }
}
