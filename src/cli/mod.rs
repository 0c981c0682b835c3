//! The command line: `decode`, `scan`, `read`, `watch`, `run`, `poll` and `web`. Every option can also come from an
//! environment variable (shown in `--help`), and `.env` is loaded before anything is read.
//!
//! Layer 9 (the top): may use every module.

pub mod decode;
pub mod doctor;
pub mod healthcheck;
pub mod logging;
pub mod read;
pub mod run;
pub mod scan;
pub mod set;
pub mod simulate;
pub mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::protocol::VariantChoice;

/// Environment variables the command-line options read (besides [`crate::config::VARIABLES`]).
pub const VARIABLES: &[&str] = &[
    "JKMON_JSON",
    "JKMON_HEX",
    "JK_READ_TIMEOUT_SEC",
    "JK_SCAN_TIMEOUT_SEC",
    "RUST_LOG",
];

#[derive(Debug, Parser)]
#[command(
    name = "jkmon",
    version,
    about = "Reads JK (Jikong) BMSs and shows everything they report",
    after_help = EXIT_STATUS_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode JK frames given as hex: BLE notifications, RS485 bus traffic or 4E 57 serial
    /// responses, whole or in pieces, with noise between them.
    Decode(DecodeArgs),
    /// Look for JK BMSs in Bluetooth range (by their advertised service and maker id, so renamed
    /// ones are found too) and list name, address and signal strength.
    Scan(ScanArgs),
    /// Connect to the configured BMS, wait for device info and one cell-info frame, print them.
    Read(ReadArgs),
    /// Stream every configured BMS (JK_BMS_ADDRESS or the devices file) until stopped: one
    /// session each, reconnecting on its own; exits non-zero when the watchdog trips.
    Watch(WatchArgs),
    /// The service: every configured BMS, merged into the inverter monitor's database
    /// (DB_PATH) with history kept, until stopped. `--demo` plays a simulated BMS and a
    /// simulated inverter into demo.db, no hardware needed.
    #[command(after_long_help = environment_help())]
    Run(RunArgs),
    /// Only the BMS sessions and the database writer (for installations that run the web
    /// server and the bot as separate processes on the same database).
    #[command(after_long_help = environment_help())]
    Poll(RunArgs),
    /// Only the web server (WEB_BIND, default 0.0.0.0:8000), reading the database that a
    /// `jkmon poll` elsewhere writes.
    #[command(after_long_help = environment_help())]
    Web(RunArgs),
    /// Only the Telegram bot and the alerts (TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID,
    /// ALERT_WEBHOOK_URL, ALERT_COMMAND), reading the database a `jkmon poll` writes.
    #[command(after_long_help = environment_help())]
    Bot(RunArgs),
    /// Fill a new database (DB_PATH, default demo.db) with days of simulated history: inverter
    /// rows every 10 s, BMS history every 30 s. For trying the charts before a month has passed.
    FillDemo(FillDemoArgs),
    /// Ask the running jkmon (WEB_BIND) whether every BMS is fresh: exit 0 when healthy, 1
    /// with the reasons otherwise (Docker's HEALTHCHECK uses it).
    Healthcheck(HealthcheckArgs),
    /// Check what jkmon needs — configuration, database, D-Bus and Bluetooth, every configured
    /// BMS in a short scan, the inverter, the Telegram token, the MQTT broker, InfluxDB's write
    /// permission, the web port — and say how to fix each failure.
    Doctor(DoctorArgs),
    /// Play a simulated BMS on a serial port (one end of a `socat` pty pair): `serial` answers
    /// 4E 57 requests, `rs485` is a JK-PB network of packs, with `--master` a polling master.
    /// For trying the wired transports without hardware.
    Simulate(SimulateArgs),
    /// Switch a BMS: `jkmon set Garage charging=off` (charging, discharging, balancer, heater;
    /// on or off). Only where JK_BMS_CONTROL allows it; the write goes through the running
    /// service (its API, with WEB_AUTH_TOKEN), which holds the BMS's link; `--dry-run` prints
    /// the bytes.
    Set(SetArgs),
    /// Print a completion script for a shell: `jkmon completions bash >
    /// /etc/bash_completion.d/jkmon` (also zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff): `jkmon man > /usr/local/share/man/man1/jkmon.1`; with
    /// `--dir`, write it and a page per subcommand (jkmon-run.1, …) there.
    Man(ManArgs),
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write jkmon.1 and one page per subcommand into this directory (made if missing).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// The exit codes, as `--help` and the manual page's EXIT STATUS give them.
pub const EXIT_STATUS: [(u8, &str); 4] = [
    (0, "success (a service stopped by SIGTERM or Ctrl-C included)"),
    (1, "failure: the error line says what failed and how to fix it"),
    (
        crate::service::EXIT_WATCHDOG,
        "the watchdog tripped: no BMS delivered a frame for BMS_TIMEOUT_SEC (systemd or Docker restarts jkmon)",
    ),
    (
        EX_CONFIG,
        "configuration error (EX_CONFIG): a bad variable, .env line or devices file; fix what the error names (systemd does not restart on it)",
    ),
];

const EXIT_STATUS_HELP: &str = "Exit status: 0 success; 1 failure; 3 the watchdog tripped (no BMS data for BMS_TIMEOUT_SEC); 78 configuration error (fix the variable named). `jkmon man` has the details.";

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The battery: its position (1 = the first configured) or its name.
    pub battery: String,
    /// What to set: charging=on|off, discharging=on|off, balancer=on|off, heater=on|off.
    #[arg(required = true, value_parser = parse_setting)]
    pub settings: Vec<crate::protocol::control::Setting>,
    /// Print the exact bytes each would send on the battery's link, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The running jkmon's web address (default: WEB_BIND's port on 127.0.0.1).
    #[arg(long)]
    pub url: Option<String>,
}

fn parse_setting(s: &str) -> Result<crate::protocol::control::Setting, String> {
    s.parse()
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SimulateRole {
    /// A JK BMS answering 4E 57 requests on --port.
    Serial,
    /// A JK-PB RS485 network on --port.
    Rs485,
    /// An SMG-II inverter behind a SmartESS Wi-Fi dongle taking `set>server=` on --listen (UDP).
    Dongle,
    /// An SMG-II inverter answering Modbus RTU on --port (the inverter's RS485 port).
    ModbusRtu,
    /// An SMG-II inverter behind a Modbus TCP gateway listening on --listen.
    ModbusTcp,
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    #[arg(value_enum)]
    pub role: SimulateRole,
    /// The serial port to answer on (the other end of jkmon's JK_BMS_SERIAL_PORT, or of
    /// INVERTER_SERIAL_PORT).
    #[arg(long)]
    pub port: Option<std::path::PathBuf>,
    /// Baud rate (default 115200 for a BMS, 9600 for the inverter).
    #[arg(long)]
    pub baud: Option<u32>,
    /// Inverter: where to listen (the dongle's UDP address, or the gateway's TCP address).
    #[arg(long, default_value = "127.0.0.1:58899")]
    pub listen: std::net::SocketAddr,
    /// Inverter: the model (INVERTER_MODEL's keys).
    #[arg(long, default_value = "ISOLAR_SMG_II_11K")]
    pub model: String,
    /// Inverter: the Modbus unit id.
    #[arg(long, default_value_t = 1)]
    pub unit: u8,
    /// Inverter: fixed values instead of a day that follows the clock.
    #[arg(long)]
    pub fixed: bool,
    /// RS485: the packs' addresses.
    #[arg(long, default_value = "1,2,3")]
    pub slaves: String,
    /// RS485: a master pack at address 0 that polls the bus.
    #[arg(long)]
    pub master: bool,
    /// Corrupt every n-th answer (0 = never).
    #[arg(long, default_value_t = 0)]
    pub corrupt_every: u32,
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(4..=24))]
    pub cells: u8,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Seconds to look for the configured BMSs.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub scan_timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// Print nothing when healthy.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct FillDemoArgs {
    /// Days of history, ending now.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=400))]
    pub days: u32,
}

/// `--help`'s list of the variables the service reads (the configuration's one list), so an
/// owner sees what can be set without opening `.env.example`.
fn environment_help() -> String {
    let mut out = String::from(
        "Environment (or .env in the working directory; each one is explained in .env.example):\n",
    );
    let mut line = String::from(" ");
    for name in crate::config::VARIABLES {
        if line.len() + name.len() + 1 > 78 {
            out += &line;
            out.push('\n');
            line = String::from(" ");
        }
        line.push(' ');
        line.push_str(name);
    }
    out + &line
}

impl Command {
    /// Runs until stopped (and so logs more by default).
    pub fn is_service(&self) -> bool {
        matches!(
            self,
            Command::Watch(_)
                | Command::Run(_)
                | Command::Poll(_)
                | Command::Web(_)
                | Command::Bot(_)
        )
    }
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Seconds to scan.
    #[arg(long, env = "JK_SCAN_TIMEOUT_SEC", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,
    /// Record what was found in the devices file (JK_DEVICES_FILE); your comments, names and
    /// commented-out (disabled) devices are kept as they are.
    #[arg(long)]
    pub save: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Simulated BMS(s) and a simulated inverter inserting a reading every 10 s, into
    /// `demo.db` unless DB_PATH is set: the whole system working without hardware.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// One JSON object per line: `{"event":"state",…}` and `{"event":"snapshot",…}`.
    #[arg(long, env = "JKMON_JSON")]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// One JSON object per decoded frame, one per line.
    #[arg(long, env = "JKMON_JSON")]
    pub json: bool,
    /// Frame layout: auto, jk02_24s, jk02_32s or jk04.
    #[arg(long, env = "JK_BMS_VARIANT", default_value = "auto", value_parser = parse_variant)]
    pub variant: VariantChoice,
    /// Hex bytes (spaces, newlines, `0x` prefixes and commas allowed); `-` or nothing reads stdin.
    #[arg(value_name = "HEX")]
    pub hex: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    /// Print the JSON objects of `decode --json` (device info, settings, then the snapshot).
    #[arg(long, env = "JKMON_JSON")]
    pub json: bool,
    /// Also print every raw frame as hex (for bug reports).
    #[arg(long, env = "JKMON_HEX")]
    pub hex: bool,
    /// Give up after this many seconds.
    #[arg(long, env = "JK_READ_TIMEOUT_SEC", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Frame layout: auto, jk02_24s, jk02_32s or jk04.
    #[arg(long, env = "JK_BMS_VARIANT", value_parser = parse_variant)]
    pub variant: Option<VariantChoice>,
    /// The BMS to read: a Bluetooth address (AA:BB:CC:DD:EE:FF), or on RS485 a pack's
    /// DIP-switch address (0-15); default: the first configured one.
    #[arg(long)]
    pub address: Option<String>,
}

fn parse_variant(s: &str) -> Result<VariantChoice, String> {
    s.parse()
}

/// Runs a parsed command line. Errors are printed here, as one line a user can act on.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Decode(args) => decode::run(args),
        Command::Scan(args) => scan::run(args),
        Command::Read(args) => read::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Run(args) => run::run(args, run::Mode::Everything),
        Command::Set(args) => set::run(args),
        Command::Poll(args) => run::run(args, run::Mode::PollOnly),
        Command::Web(args) => run::run(args, run::Mode::WebOnly),
        Command::Bot(args) => run::run(args, run::Mode::BotOnly),
        Command::FillDemo(args) => run::fill_demo(args),
        Command::Healthcheck(args) => healthcheck::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Completions(args) => completions(args),
        Command::Man(args) => man(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            logging::error_line(format_args!("{e:#}"));
            // a configuration error gets its own code, so systemd's RestartPreventExitStatus=
            // and Docker's restart policy do not retry it every 10 s for ever
            if e.chain().any(|c| c.is::<crate::config::ConfigError>()) {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `jkmon completions <shell>`: the script, from the same definitions as the parser.
fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "jkmon", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// `jkmon man`: the manual page, with the environment section of `--help` and the exit
/// status; with `--dir`, also a page for every subcommand the main page names.
fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use clap::CommandFactory;
    let mut command = Cli::command().after_long_help(environment_help());
    command.build();
    let Some(dir) = args.dir else {
        main_page(&command, &mut std::io::stdout())?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let write = |name: &str, page: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, page).with_context(|| format!("could not write {}", path.display()))
    };
    let mut page = Vec::new();
    main_page(&command, &mut page)?;
    write("jkmon.1", page)?;
    for sub in command.get_subcommands() {
        let name = format!("jkmon-{}", sub.get_name());
        let sub = sub.clone().display_name(name.clone());
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).render(&mut page)?;
        write(&format!("{name}.1"), page)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// jkmon(1): clap's page and an EXIT STATUS section.
fn main_page(command: &clap::Command, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    clap_mangen::Man::new(command.clone()).render(out)?;
    writeln!(out, ".SH \"EXIT STATUS\"")?;
    for (code, meaning) in EXIT_STATUS {
        writeln!(out, ".TP\n{code}\n{}", meaning.replace('-', "\\-"))?;
    }
    Ok(())
}

/// sysexits.h's EX_CONFIG: the configuration is wrong (a bad variable, a malformed `.env` or
/// devices file). Retrying cannot help; the owner has to fix it.
pub const EX_CONFIG: u8 = 78;

/// The async runtime of a command: one thread is plenty for a handful of BMSs and light on a
/// Pi Zero.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

/// The runtime of the long-running service: a worker per core (at most 4), so the web server
/// uses both cores of a Pi 3/4 and still runs on the one core of a Pi Zero.
fn service_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.clamp(1, 4))
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

/// Resolves on Ctrl-C or SIGTERM (systemd stop, docker stop).
fn shutdown_signal() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    })
}
