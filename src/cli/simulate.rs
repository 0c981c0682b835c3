//! `jkmon simulate`: the simulated BMS on a real serial port, so the wired transports can be
//! tried and tested without hardware. With `socat` making a pty pair, jkmon reads one end and the
//! simulator answers on the other:
//!
//! ```text
//! socat pty,raw,echo=0,link=/tmp/jk-a pty,raw,echo=0,link=/tmp/jk-b &
//! jkmon simulate serial --port /tmp/jk-b &
//! JK_BMS_TRANSPORT=serial JK_BMS_SERIAL_PORT=/tmp/jk-a jkmon read
//! ```

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::{SimulateArgs, SimulateRole};
use crate::transport::serial::{self, PortConfig};
use crate::transport::sim::bus::{self, BusSimConfig};
use crate::transport::sim::{self, SimConfig};

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let runtime = super::runtime()?;
    runtime.block_on(async move {
        let port = PortConfig {
            path: args.port.clone(),
            baud: args.baud,
        };
        let stream = serial::open(&port)?;
        let peer = serial::peer_over(stream);
        let battery = SimConfig {
            cells: args.cells,
            corrupt_every: args.corrupt_every,
            seed: args.seed,
            ..SimConfig::default()
        };
        let stats = match args.role {
            SimulateRole::Serial => {
                eprintln!(
                    "simulated BMS on {}: answering 4E 57 read-all requests",
                    port.path.display()
                );
                tokio::spawn(sim::serial::serve(battery, peer));
                None
            }
            SimulateRole::Rs485 => {
                let slaves = parse_slaves(&args.slaves)?;
                eprintln!(
                    "simulated RS485 bus on {}: packs at {:?}{}",
                    port.path.display(),
                    slaves,
                    if args.master {
                        ", a master pack at 0 polling"
                    } else {
                        ""
                    }
                );
                Some(bus::serve(
                    BusSimConfig {
                        slaves,
                        master: args.master,
                        battery,
                        ..BusSimConfig::default()
                    },
                    peer,
                ))
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("could not watch SIGTERM")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if let Some(stats) = stats {
            eprintln!(
                "bus: {} frames sent, {} requests from jkmon, {} collisions",
                stats.frames.load(std::sync::atomic::Ordering::SeqCst),
                stats.client_requests().len(),
                stats.collisions()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(ExitCode::SUCCESS)
    })
}

fn parse_slaves(s: &str) -> anyhow::Result<Vec<u8>> {
    s.split(',')
        .map(|p| {
            p.trim()
                .parse::<u8>()
                .ok()
                .filter(|n| (1..=15).contains(n))
                .ok_or_else(|| anyhow::anyhow!("--slaves: \"{p}\" is not an address 1-15"))
        })
        .collect()
}
