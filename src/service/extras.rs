//! What runs beside the sessions: jkmon's own inverter poller (or the demo's simulated one),
//! the Telegram bot, the alerts and the MQTT publisher.

use super::Components;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::control::Controller;
use crate::mqtt::Feed;
use crate::session::inverter::{self as inverter_poller, InverterEvent, PollerConfig};
use crate::store::read::{ReadConfig, Readers};
use crate::store::Battery;

/// jkmon's own inverter poller and what it needs to stop.
pub(super) struct InverterPart {
    pub(super) events: mpsc::Receiver<InverterEvent>,
    pub(super) task: JoinHandle<()>,
    /// The demo's simulated dongle and inverter (dropped, they stop).
    _sim: Option<crate::transport::sim::dongle::SimDongle>,
}

/// Starts the inverter poller where `INVERTER_TRANSPORT` asks for one, or against a simulated
/// dongle on the loopback in the demo.
pub(super) async fn start_inverter(
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
pub(super) async fn demo_inverter(
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
pub(super) fn start_bot_and_alerts(
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
pub(super) fn start_mqtt(
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
