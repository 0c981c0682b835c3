//! `jkmon run`, `jkmon poll` and `jkmon web`: the service (see [`crate::service`]) with the signals wired to
//! its cancellation token.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::RunArgs;
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
}

pub fn run(args: RunArgs, mode: Mode) -> anyhow::Result<ExitCode> {
    let mut config = Config::from_env()?;
    if args.demo {
        config.transport = TransportKind::Sim;
    }
    let components = Components {
        database: service::database_path(&config, args.demo),
        sessions: mode != Mode::WebOnly,
        demo_inverter: args.demo && mode != Mode::WebOnly,
        web: (mode != Mode::PollOnly).then(|| config.web.clone()),
    };
    let runtime = super::runtime()?;
    runtime.block_on(async move {
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            super::shutdown_signal().await;
            on_signal.cancel();
        });
        service::run(config, components, stop).await
    })
}
