//! `jkmon run`, `jkmon poll` and `jkmon web`: the service (see [`crate::service`]) with the signals wired to
//! its cancellation token.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::{FillDemoArgs, RunArgs};
use crate::config::Config;
use crate::service::{self, Components};
use crate::transport::TransportKind;

/// Which components a command starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `run`: everything that is configured.
    Everything,
    /// `poll`: the BMS sessions and the database writer.
    PollOnly,
    /// `web`: the web server alone, reading the database another jkmon writes.
    WebOnly,
    /// `bot`: the Telegram bot and the alerts alone.
    BotOnly,
}

pub fn run(args: RunArgs, mode: Mode) -> anyhow::Result<ExitCode> {
    let mut config = Config::from_env()?;
    if args.demo {
        config.transport = TransportKind::Sim;
        // the demo shows control end to end on its simulated battery, unless told otherwise
        if std::env::var_os("JK_BMS_CONTROL").is_none() {
            config.control = crate::config::control::Control::On;
        }
    }
    if mode == Mode::BotOnly
        && config.bot.is_none()
        && config.notify.webhook_url.is_none()
        && config.notify.command.is_none()
    {
        anyhow::bail!("jkmon bot has nothing to do: set TELEGRAM_BOT_TOKEN (and TELEGRAM_CHAT_ID for alerts), ALERT_WEBHOOK_URL or ALERT_COMMAND");
    }
    let standalone = matches!(mode, Mode::WebOnly | Mode::BotOnly);
    let components = Components {
        database: service::database_path(&config, args.demo),
        sessions: !standalone,
        demo_inverter: args.demo && !standalone,
        web: matches!(mode, Mode::Everything | Mode::WebOnly).then(|| config.web.clone()),
        bot_and_alerts: matches!(mode, Mode::Everything | Mode::BotOnly),
    };
    let runtime = super::service_runtime()?;
    let result = runtime.block_on(async move {
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            super::shutdown_signal().await;
            on_signal.cancel();
        });
        service::run(config, components, stop).await
    });
    // a database read still running for a request (a long history) does not hold the exit
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// `jkmon fill-demo`: simulated history into a new database, with a line per day done.
pub fn fill_demo(args: FillDemoArgs) -> anyhow::Result<ExitCode> {
    use crate::store::{backfill, Store};
    let mut config = Config::from_env()?;
    config.transport = TransportKind::Sim;
    let path = service::database_path(&config, true);
    let batteries = service::store_batteries(&config.batteries()?);
    let mut store = Store::open(&path, config.store.clone())?;
    let started = std::time::Instant::now();
    let mut simulated = crate::demo::SimulatedHistory::new(batteries.len());
    backfill::fill(
        &mut store,
        &batteries,
        args.days,
        crate::store::now_ms(),
        &mut simulated,
        |day, days| eprintln!("fill-demo: day {day} of {days} written"),
    )?;
    store.close()?;
    eprintln!(
        "fill-demo: {} days for {} battery(ies) in {} ({:.1} s)",
        args.days,
        batteries.len(),
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
