//! `jkmon simulate`: the simulated BMS on a real serial port, so the wired transports can be
//! tried and tested without hardware. With `socat` making a pty pair, jkmon reads one end and the
//! simulator answers on the other:
//!
//! ```text
//! socat pty,raw,echo=0,link=/tmp/jk-a pty,raw,echo=0,link=/tmp/jk-b &
//! jkmon simulate serial --port /tmp/jk-b &
//! JK_BMS_TRANSPORT=serial JK_BMS_SERIAL_PORT=/tmp/jk-a jkmon read
//! ```
//!
//! The inverter too: `jkmon simulate dongle --listen 127.0.0.1:58899` plays an SMG-II behind its
//! Wi-Fi dongle (`INVERTER_TRANSPORT=dongle INVERTER_IP=127.0.0.1`), `modbus-rtu --port` on a
//! serial line and `modbus-tcp --listen` behind a gateway.

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
        // the dongle's simulator stops when dropped: it is held until the process stops
        let (stats, _dongle) = match args.role {
            SimulateRole::Serial | SimulateRole::Rs485 => (bms(&args)?, None),
            SimulateRole::Dongle | SimulateRole::ModbusRtu | SimulateRole::ModbusTcp => {
                (None, inverter(&args).await?)
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

fn serial_port(args: &SimulateArgs, baud: u32) -> anyhow::Result<PortConfig> {
    let path = args
        .port
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--port: this simulator answers on a serial port; give its path (e.g. one end of a socat pty pair)"))?;
    Ok(PortConfig {
        path,
        baud: args.baud.unwrap_or(baud),
    })
}

/// The simulated BMS, or RS485 network, on its serial port.
fn bms(args: &SimulateArgs) -> anyhow::Result<Option<std::sync::Arc<bus::BusStats>>> {
    let port = serial_port(args, serial::DEFAULT_BAUD)?;
    let stream = serial::open(&port)?;
    let peer = serial::peer_over(stream);
    let battery = SimConfig {
        cells: args.cells,
        corrupt_every: args.corrupt_every,
        seed: args.seed,
        ..SimConfig::default()
    };
    Ok(match args.role {
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
        _ => {
            eprintln!(
                "simulated BMS on {}: answering 4E 57 read-all requests",
                port.path.display()
            );
            tokio::spawn(sim::serial::serve(battery, peer));
            None
        }
    })
}

/// The simulated inverter, behind its dongle (returned: it runs while held), on its RS485 port
/// or behind a TCP gateway (they run until the process stops).
async fn inverter(args: &SimulateArgs) -> anyhow::Result<Option<sim::dongle::SimDongle>> {
    use crate::inverter::registers::{self, MODELS};
    use crate::transport::sim::inverter::{SimInverter, SimInverterConfig};
    let model = registers::model(&args.model).ok_or_else(|| {
        let known: Vec<&str> = MODELS.iter().map(|m| m.key).collect();
        anyhow::anyhow!(
            "--model {}: expected one of {}",
            args.model,
            known.join(", ")
        )
    })?;
    let mut config = SimInverterConfig::new(model);
    config.day = (!args.fixed).then_some(args.seed);
    config.faults.bad_crc_every = args.corrupt_every;
    match args.role {
        SimulateRole::Dongle => {
            let mut dongle = sim::dongle::SimDongleConfig::new(model);
            dongle.inverter = config;
            let sim = sim::dongle::SimDongle::start_on(args.listen, dongle)
                .await
                .with_context(|| format!("--listen {}: cannot take UDP there", args.listen))?;
            eprintln!(
                "simulated {} behind a Wi-Fi dongle: send set>server=<ip>:<port>; to {} (INVERTER_IP, INVERTER_UDP_PORT)",
                model.description, sim.udp_addr
            );
            return Ok(Some(sim));
        }
        SimulateRole::ModbusRtu => {
            let port = serial_port(args, 9_600)?;
            let stream = serial::open(&port)?;
            eprintln!(
                "simulated {} answering Modbus RTU as unit {} on {} at {} baud",
                model.description,
                args.unit,
                port.path.display(),
                port.baud
            );
            tokio::spawn(sim::modbus::serve_rtu(
                stream,
                args.unit,
                SimInverter::new(config),
            ));
        }
        _ => {
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("--listen {}: cannot listen there", args.listen))?;
            eprintln!(
                "simulated {} behind a Modbus TCP gateway on {} (unit {})",
                model.description,
                listener.local_addr()?,
                args.unit
            );
            tokio::spawn(sim::modbus::serve_tcp(
                listener,
                args.unit,
                SimInverter::new(config),
            ));
        }
    }
    Ok(None)
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
