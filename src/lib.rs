//! jkmon: reads JK (Jikong) battery-management systems and shows what they report.
//!
//! Data flows one way — bytes → frames → snapshot → store → views:
//!
//! - [`protocol`]: pure decoding: assembler, commands, frame layouts, variants (no I/O).
//! - [`inverter`]: the Easun / ISolar inverter's Modbus reads, register maps and `readings`
//!   rows, pure like `protocol`.
//! - [`battery`]: the snapshot of one battery and the pluggable SOC estimators.
//! - [`transport`]: the thin seam to a BMS (a byte-chunk link); the simulated BMS lives here.
//! - [`session`]: one BMS over its links: the handshake, the streaming state machine, backoff,
//!   the watchdog.
//! - [`store`]: the SQLite database shared with the inverter monitor: migrations, the merge
//!   into `readings`, history with downsampling and retention, the one writer thread.
//! - [`control`]: switching a BMS (JK_BMS_CONTROL): one controller every interface asks, which
//!   sends through the sessions and records each outcome.
//! - [`service`]: `jkmon run`/`poll`/`watch`: sessions, store and views under one cancellation
//!   token.
//! - [`web`]: the web server: dashboard, JSON API and Prometheus `/metrics`, read-only on the
//!   store.
//! - [`mqtt`]: every battery on an MQTT broker, with Home Assistant discovery.
//! - [`influx`]: every snapshot and inverter poll written to InfluxDB, never in the way.
//! - [`telemetry`]: the service's own counters (frames decoded and rejected, reconnects).
//! - [`alerts`]: alert rules with hysteresis (pure) and their notifiers.
//! - [`telegram`]: Telegram's settings, client, escaping and errors, shared by the bot and
//!   the alerts.
//! - [`bot`]: the Telegram bot: commands, access control, message formatting.
//! - [`systemd`]: `Type=notify` readiness and the watchdog.
//! - [`report`]: JSON and text views of decoded values.
//! - [`config`]: the one typed configuration, read from the environment and `.env`.
//! - [`cli`]: the command line and its subcommands.
#![forbid(unsafe_code)]
// functions over 80 lines need a reason (clippy.toml); tests may be long
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod alerts;
pub mod battery;
pub mod bot;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod influx;
pub mod inverter;
pub mod mqtt;
pub mod protocol;
pub mod report;
pub mod service;
pub mod session;
pub mod store;
pub mod systemd;
pub mod telegram;
pub mod telemetry;
pub mod transport;
pub mod web;
