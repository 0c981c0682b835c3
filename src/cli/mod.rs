//! The command line: `jkmon decode` and `jkmon read` so far. Every option can also come from an
//! environment variable (shown in `--help`), and `.env` is loaded before anything is read.

pub mod decode;
pub mod read;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::protocol::VariantChoice;

/// Environment variables the command-line options read (besides [`crate::config::VARIABLES`]).
pub const VARIABLES: &[&str] = &["JKMON_JSON", "JKMON_HEX", "JK_READ_TIMEOUT_SEC", "RUST_LOG"];

#[derive(Debug, Parser)]
#[command(
    name = "jkmon",
    version,
    about = "Reads JK (Jikong) BMSs and shows everything they report"
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
    /// Connect to the configured BMS, wait for device info and one cell-info frame, print them.
    Read(ReadArgs),
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
}

fn parse_variant(s: &str) -> Result<VariantChoice, String> {
    s.parse()
}

/// Runs a parsed command line. Errors are printed here, as one line a user can act on.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Decode(args) => decode::run(args),
        Command::Read(args) => read::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
