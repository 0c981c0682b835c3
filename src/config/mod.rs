//! The one typed configuration, read once from the environment (after `.env` is loaded) and
//! validated at start-up. A bad value names its variable, the value, and the expected form.
//!
//! Layer 7: describes every module's settings with that module's own types (so it may use
//! any layer below); only `service` and `cli` use it.

mod alerts;
mod bms;
pub mod control;
pub mod devices_file;
mod env;
mod influx;
mod inverter;
pub mod mqtt;
mod store;
mod web;

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::alerts::{AlertConfig, NotifyConfig};
use crate::battery::soc::{SocSource, VoltageCurve};
use crate::protocol::VariantChoice;
use crate::session::bus::BusMode;
use crate::session::SessionConfig;
use crate::store::StoreConfig;
use crate::telegram::TelegramConfig;
use crate::transport::ble::MacAddress;
use crate::transport::serial::PortConfig;
use crate::transport::sim::SimConfig;
pub use crate::transport::BatteryConfig;
use crate::transport::TransportKind;
use crate::web::WebConfig;
pub use devices_file::{DevicesFile, DevicesFileError};
use env::Env;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{var}=\"{value}\" is not valid: {problem}")]
    Invalid {
        var: &'static str,
        value: String,
        problem: String,
    },
    #[error(transparent)]
    DevicesFile(#[from] DevicesFileError),
    #[error("no BMS is configured: set JK_BMS_ADDRESS=AA:BB:CC:DD:EE:FF (several separated by commas), or run `jkmon scan --save` to fill {0}")]
    NoBms(String),
}

/// The wired transports (`JK_BMS_TRANSPORT=serial` or `rs485`).
#[derive(Debug, Clone, PartialEq)]
pub struct WireConfig {
    /// `JK_BMS_SERIAL_PORT` and `JK_BMS_BAUD`.
    pub port: Option<PortConfig>,
    /// `JK_RS485_ADDRESSES`: the packs on the bus, in order (battery 1 first).
    pub rs485_addresses: Vec<u8>,
    /// `JK_RS485_MODE`.
    pub rs485_mode: BusMode,
}

/// Every variable jkmon reads so far; `.env.example` documents each.
pub const VARIABLES: &[&str] = &[
    "JK_BMS_TRANSPORT",
    "JK_BMS_ADDRESS",
    "JK_BMS_NAMES",
    "JK_DEVICES_FILE",
    "JK_BMS_CONNECT_MODE",
    "JK_BMS_POLL_INTERVAL",
    "JK_BMS_STALE_SEC",
    "JK_BMS_CONNECT_TIMEOUT_SEC",
    "JK_BMS_RETRY_MIN_SEC",
    "JK_BMS_RETRY_MAX_SEC",
    "BMS_TIMEOUT_SEC",
    "JK_BMS_VARIANT",
    "JK_BMS_SERIAL_PORT",
    "JK_BMS_BAUD",
    "JK_BMS_RESPONSE_TIMEOUT_MS",
    "JK_RS485_ADDRESSES",
    "JK_RS485_MODE",
    "SOC_SOURCE",
    "SOC_CURVE",
    "JK_SIM_CELLS",
    "JK_SIM_CAPACITY_AH",
    "JK_SIM_VARIANT",
    "JK_SIM_SEED",
    "JK_SIM_INTERVAL_MS",
    "JK_SIM_PERIOD_SEC",
    "JK_SIM_FRAGMENTATION",
    "JK_SIM_INVERTER_SEC",
    "DB_PATH",
    "DB_BUSY_TIMEOUT_MS",
    "INVERTER_TIMEOUT_SEC",
    "POLL_INTERVAL",
    "JKMON_OWN_ROWS",
    "HISTORY_RAW_DAYS",
    "HISTORY_5MIN_DAYS",
    "HISTORY_HOURLY_DAYS",
    "JK_BMS_CONTROL",
    "INVERTER_TRANSPORT",
    "INVERTER_IP",
    "MODBUS_HOST",
    "LOCAL_IP",
    "INVERTER_MODEL",
    "INVERTER_UDP_PORT",
    "INVERTER_LISTEN_PORT",
    "INVERTER_SERIAL_PORT",
    "INVERTER_BAUD",
    "MODBUS_PORT",
    "INVERTER_UNIT",
    "WEB_BIND",
    "WEB_URL",
    "WEB_AUTH_TOKEN",
    "WEB_LIVE_SEC",
    "CELL_DELTA_WARN_MV",
    "CELL_DELTA_ALARM_MV",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_API_URL",
    "TELEGRAM_CHAT_ID",
    "TELEGRAM_ALLOWED_CHAT_IDS",
    "BMS_CELL_LEVELS",
    "BMS_CELL_LEVEL_SAMPLES",
    "ALERT_CELL_DELTA_MV",
    "ALERT_SOC_LOW",
    "GRID_DEBOUNCE_SEC",
    "ALERT_REPEAT_MIN_SEC",
    "ALERT_WEBHOOK_URL",
    "ALERT_COMMAND",
    "ALERT_COMMAND_TIMEOUT_SEC",
    "ALERT_CHECK_SEC",
    "MQTT_URL",
    "MQTT_TOPIC",
    "MQTT_DISCOVERY_PREFIX",
    "MQTT_NODEJKBMS",
    "MQTT_CA_FILE",
    "MQTT_CLIENT_ID",
    "MQTT_STATE_SEC",
    "INFLUX_URL",
    "INFLUX_DATABASE",
    "INFLUX_RETENTION_POLICY",
    "INFLUX_USER",
    "INFLUX_PASSWORD",
    "INFLUX_BUCKET",
    "INFLUX_ORG",
    "INFLUX_TOKEN",
    "INFLUX_INTERVAL",
    "INFLUX_BUFFER_POINTS",
    "INFLUX_GZIP",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub transport: TransportKind,
    pub variant: VariantChoice,
    pub soc_source: SocSource,
    pub soc_curve: VoltageCurve,
    pub sim: SimConfig,
    /// `JK_BMS_ADDRESS`, in order (battery 1 first); empty = use the devices file.
    pub addresses: Vec<MacAddress>,
    /// `JK_BMS_NAMES`, one per battery; empty = default names.
    pub names: Vec<String>,
    pub wire: WireConfig,
    pub devices_file: PathBuf,
    pub session: SessionConfig,
    /// `BMS_TIMEOUT_SEC`: exit when no BMS delivered a valid frame for this long (`None`: never).
    pub watchdog: Option<Duration>,
    /// `DB_PATH`; `None` = the default of the command (`inverter.db`, or `demo.db` with `--demo`).
    pub db_path: Option<PathBuf>,
    pub store: StoreConfig,
    /// `JK_SIM_INVERTER_SEC`: the demo inverter's poll interval (10 s like the real poller).
    pub sim_inverter_interval: Duration,
    pub web: WebConfig,
    /// `TELEGRAM_BOT_TOKEN` set: the bot.
    pub bot: Option<TelegramConfig>,
    pub alerts: AlertConfig,
    pub notify: NotifyConfig,
    /// `ALERT_CHECK_SEC`: how often the alert rules look (default 10 s).
    pub alert_every: Duration,
    /// `MQTT_URL` set: publish to that broker.
    pub mqtt: Option<crate::mqtt::MqttConfig>,
    /// `INFLUX_URL` set: write the snapshots and polls to that InfluxDB.
    pub influx: Option<crate::influx::InfluxConfig>,
    /// `INVERTER_TRANSPORT=dongle` and its variables: the inverter jkmon reads itself.
    pub inverter: Option<crate::transport::inverter::InverterConfig>,
    /// `JK_BMS_CONTROL`: which batteries jkmon may switch (none by default).
    pub control: control::Control,
}

impl Config {
    /// What the transport needs to connect: its kind and its own settings.
    pub fn transport_plan(&self) -> crate::transport::Plan<'_> {
        crate::transport::Plan {
            kind: self.transport,
            sim: &self.sim,
            port: self.wire.port.as_ref(),
        }
    }

    /// When a battery counts as online (`JK_BMS_STALE_SEC` and the connect mode).
    pub fn liveness(&self) -> crate::session::Liveness {
        crate::session::Liveness {
            freshness: self.store.freshness,
            mode: self.session.mode,
        }
    }

    /// The BMSs to read, in order. Over Bluetooth, in the Python service's order: the enabled
    /// devices of the devices file when it names any, else `JK_BMS_ADDRESS` (with
    /// `JK_BMS_NAMES`); [`Config::battery_source`] says which was taken and why. The simulator needs no address: with none it plays
    /// one BMS.
    pub fn batteries(&self) -> Result<Vec<BatteryConfig>, ConfigError> {
        let name = |i: usize, default: String| self.names.get(i).cloned().unwrap_or(default);
        let port = self.wire.port.as_ref().map(|p| p.path.clone());
        match self.transport {
            TransportKind::Serial => {
                return Ok(vec![BatteryConfig {
                    name: name(0, "Battery 1".into()),
                    port,
                    ..BatteryConfig::default()
                }])
            }
            TransportKind::Rs485 => {
                return Ok(self
                    .wire
                    .rs485_addresses
                    .iter()
                    .enumerate()
                    .map(|(i, a)| BatteryConfig {
                        name: name(i, format!("Pack #{a}")),
                        port: port.clone(),
                        rs485_address: Some(*a),
                        ..BatteryConfig::default()
                    })
                    .collect())
            }
            TransportKind::Ble | TransportKind::Sim => {}
        }
        let from_file = if self.transport == TransportKind::Ble {
            DevicesFile::load(&self.devices_file)?.devices
        } else {
            Vec::new()
        };
        let list: Vec<BatteryConfig> = if !from_file.is_empty() {
            from_file
                .into_iter()
                .map(|d| BatteryConfig {
                    name: d.name.unwrap_or_else(|| d.address.to_string()),
                    address: Some(d.address),
                    ..BatteryConfig::default()
                })
                .collect()
        } else {
            self.addresses
                .iter()
                .enumerate()
                .map(|(i, a)| BatteryConfig {
                    name: name(i, format!("Battery {}", i + 1)),
                    address: Some(*a),
                    ..BatteryConfig::default()
                })
                .collect()
        };
        if list.is_empty() {
            if self.transport == TransportKind::Sim {
                return Ok(vec![BatteryConfig {
                    name: "Simulated BMS".into(),
                    ..BatteryConfig::default()
                }]);
            }
            return Err(ConfigError::NoBms(self.devices_file.display().to_string()));
        }
        Ok(list)
    }

    /// Where the Bluetooth BMSs come from, for the start-up log and `jkmon doctor`; `Some` with
    /// a warning when both sources are set and one is left unused.
    pub fn battery_source(&self) -> Result<(String, Option<String>), ConfigError> {
        if self.transport != TransportKind::Ble {
            return Ok((format!("{} transport", self.transport), None));
        }
        let file = self.devices_file.display().to_string();
        let named = DevicesFile::load(&self.devices_file)?.devices.len();
        let addresses = self
            .addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        Ok(match (named, self.addresses.is_empty()) {
            (0, true) => (format!("no BMS: {file} names none and JK_BMS_ADDRESS is not set"), None),
            (0, false) => (format!("JK_BMS_ADDRESS ({file} names no device)"), None),
            (n, true) => (format!("{file} ({n} device(s))"), None),
            (n, false) => (
                format!("{file} ({n} device(s))"),
                Some(format!(
                    "{file} names {n} device(s), so JK_BMS_ADDRESS={addresses}{} is not used (the Python service's order: the devices file first, the address only when the file names none). To read JK_BMS_ADDRESS instead, comment the devices out in {file} or set JK_DEVICES_FILE to another path",
                    if self.names.is_empty() { "" } else { " with JK_BMS_NAMES" }
                )),
            ),
        })
    }
}

/// `JK_RS485_ADDRESSES`: DIP-switch addresses 0-15, comma-separated, no repeats.
fn parse_rs485_addresses(value: &str) -> Result<Vec<u8>, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        var: "JK_RS485_ADDRESSES",
        value: value.to_string(),
        problem,
    };
    let mut out: Vec<u8> = Vec::new();
    for part in value.split(',').map(str::trim) {
        let n: u8 = part
            .strip_prefix("0x")
            .map_or_else(|| part.parse().ok(), |h| u8::from_str_radix(h, 16).ok())
            .filter(|n| *n <= crate::protocol::rs485::MAX_ADDRESS)
            .ok_or_else(|| {
                invalid(format!(
                    "\"{part}\" is not an address: expected the packs' DIP-switch addresses 0-15 separated by commas, like 1,2,3 (0 is the master pack)"
                ))
            })?;
        if out.contains(&n) {
            return Err(invalid(format!("{n} is listed twice")));
        }
        out.push(n);
    }
    Ok(out)
}

/// `JK_BMS_ADDRESS`: one or more addresses, comma-separated, no repeats.
fn parse_addresses(value: &str) -> Result<Vec<MacAddress>, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        var: "JK_BMS_ADDRESS",
        value: value.to_string(),
        problem,
    };
    let mut out: Vec<MacAddress> = Vec::new();
    for part in value.split(',').map(str::trim) {
        let a: MacAddress = part
            .parse()
            .map_err(|e| invalid(format!("{e}; list several separated by commas")))?;
        if out.contains(&a) {
            return Err(invalid(format!("{a} is listed twice")));
        }
        out.push(a);
    }
    Ok(out)
}

/// `JK_BMS_NAMES`: one distinct, non-empty name per battery (`what` says where the batteries
/// are listed).
fn parse_names(value: &str, addresses: usize, what: &str) -> Result<Vec<String>, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        var: "JK_BMS_NAMES",
        value: value.to_string(),
        problem,
    };
    let names: Vec<String> = value.split(',').map(|n| n.trim().to_string()).collect();
    if names.len() != addresses {
        return Err(invalid(format!(
            "{} name(s) for {addresses} {what}; give one name per battery, in the same order, separated by commas",
            names.len()
        )));
    }
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() {
            return Err(invalid(format!("name {} is empty", i + 1)));
        }
        if names[..i].contains(n) {
            return Err(invalid(format!("\"{n}\" is used twice; names must differ")));
        }
    }
    Ok(names)
}

/// Prefixes of jkmon's variables: a variable with one of them that jkmon does not read is
/// probably a typo.
const OWN_PREFIXES: [&str; 3] = ["JK_", "BMS_", "JKMON_"];

/// `JK_*`, `BMS_*` and `JKMON_*` variables in `names` that jkmon does not read, each with the
/// closest one it does (`known`).
pub fn unknown_variables<'a>(
    names: impl IntoIterator<Item = &'a str>,
    known: &[&'static str],
) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for name in names {
        if !OWN_PREFIXES.iter().any(|p| name.starts_with(p)) || known.contains(&name) {
            continue;
        }
        if let Some(best) = known.iter().min_by_key(|k| strsim::levenshtein(name, k)) {
            out.push((name.to_string(), *best));
        }
    }
    out.sort();
    out
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads through `lookup` (tests pass a map), section by section.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env::new(&lookup);
        let sim = bms::sim(&env)?;
        let addresses = bms::addresses(&env)?;
        let transport: TransportKind = env.parse("JK_BMS_TRANSPORT")?.unwrap_or_default();
        let wire = bms::wire(&env, transport)?;
        let names = bms::names(&env, transport, &wire, &addresses)?;
        let session = bms::session(&env, transport)?;
        let store = store::store(&env, &session)?;
        let web = web::web(&env)?;
        let mqtt = mqtt::read(|var| env.get(var))?.map(|m| crate::mqtt::MqttConfig {
            dashboard_url: web.public_url.clone(),
            ..m
        });
        Ok(Config {
            transport,
            variant: session.variant,
            addresses,
            names,
            wire,
            watchdog: bms::watchdog(&env)?,
            sim_inverter_interval: store::sim_inverter_interval(&env)?,
            web,
            bot: alerts::telegram(&env)?,
            alerts: alerts::alerts(&env)?,
            notify: alerts::notify(&env)?,
            alert_every: alerts::check_every(&env)?,
            mqtt,
            influx: influx::influx(&env)?,
            inverter: inverter::inverter(&env)?,
            control: control::control(&env)?,
            devices_file: env
                .get("JK_DEVICES_FILE")
                .map_or_else(|| PathBuf::from("jk_devices.yaml"), PathBuf::from),
            db_path: env.get("DB_PATH").map(PathBuf::from),
            soc_source: env.parse("SOC_SOURCE")?.unwrap_or_default(),
            soc_curve: env.parse("SOC_CURVE")?.unwrap_or_default(),
            session,
            store,
            sim,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{ConnectMode, Dialogue};
    use crate::store::Retention;
    use std::collections::HashMap;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(c.transport, TransportKind::Ble);
        assert_eq!(c.soc_source, SocSource::Curve);
        assert_eq!(c.variant, VariantChoice::Auto);
        assert_eq!(c.sim.cells, 16);
        assert_eq!(c.soc_curve, VoltageCurve::default());
        assert_eq!(c.db_path, None);
        assert_eq!(c.store.interval, Duration::from_secs(30));
        assert_eq!(c.store.freshness, Duration::from_secs(60));
        assert_eq!(c.store.retention, Retention::default());
    }

    #[test]
    fn telegram_and_alert_settings_and_the_token_never_prints() {
        let c = with(&[
            ("TELEGRAM_BOT_TOKEN", "123456:SECRET"),
            ("TELEGRAM_CHAT_ID", "42"),
            ("TELEGRAM_ALLOWED_CHAT_IDS", "43, -1001234567890"),
            ("BMS_CELL_LEVELS", "3.0,3.1;2.8,2.9"),
            ("ALERT_SOC_LOW", "20"),
        ])
        .unwrap();
        let bot = c.bot.as_ref().unwrap();
        assert_eq!(bot.chat_id, Some(42));
        assert_eq!(bot.allowed, vec![43, -1_001_234_567_890]);
        assert!(bot.allows(42) && bot.allows(43) && !bot.allows(44));
        assert_eq!(bot.api_url, "https://api.telegram.org");
        assert_eq!(c.alerts.cell_levels.len(), 2);
        assert_eq!(c.alerts.cell_levels[1].low_mv, 2_800);
        assert_eq!(c.alerts.soc_low_pct, Some(20.0));
        let printed = format!("{c:?}");
        assert!(!printed.contains("SECRET"), "{printed}");
        assert_eq!(
            bot.redact("url …/bot123456:SECRET/GetMe"),
            "url …/bot***/GetMe"
        );
    }

    #[test]
    fn a_misspelt_variable_gets_the_closest_known_name() {
        let known = ["JK_BMS_ADDRESS", "JK_BMS_NAMES", "BMS_TIMEOUT_SEC"];
        let found = unknown_variables(
            [
                "JK_BMS_ADRESS",
                "BMS_TIMEOUT",
                "JK_BMS_NAMES",
                "PATH",
                "TELEGRAM_X",
            ],
            &known,
        );
        assert_eq!(
            found,
            [
                ("BMS_TIMEOUT".to_string(), "BMS_TIMEOUT_SEC"),
                ("JK_BMS_ADRESS".to_string(), "JK_BMS_ADDRESS")
            ]
        );
    }

    #[test]
    fn store_settings() {
        let c = with(&[
            ("JK_BMS_POLL_INTERVAL", "0.5"),
            ("JK_BMS_CONNECT_MODE", "periodic"),
            ("DB_PATH", "/var/lib/jkmon/inverter.db"),
            ("HISTORY_5MIN_DAYS", "0"),
            ("INVERTER_TIMEOUT_SEC", "120"),
            ("JKMON_OWN_ROWS", "off"),
        ])
        .unwrap();
        assert_eq!(c.store.own_rows, crate::store::OwnRows::Off);
        assert_eq!(
            with(&[]).unwrap().store.own_rows,
            crate::store::OwnRows::Auto
        );
        assert_eq!(c.store.interval, Duration::from_millis(500));
        // periodic: a reading every interval, so fresh for the stale limit plus two intervals
        assert_eq!(c.store.freshness, Duration::from_secs(31));
        assert_eq!(
            c.db_path.as_deref(),
            Some(std::path::Path::new("/var/lib/jkmon/inverter.db"))
        );
        assert_eq!(c.store.retention.five_min_days, 0);
        assert_eq!(c.store.retention.raw_days, 7);
        assert_eq!(c.store.inverter_timeout, Duration::from_secs(120));
    }

    #[test]
    fn bad_values_name_the_variable_and_the_form() {
        let e = with(&[("JK_SIM_CELLS", "40")]).unwrap_err().to_string();
        assert_eq!(
            e,
            "JK_SIM_CELLS=\"40\" is not valid: must be between 4 and 24"
        );
        let e = with(&[("JK_SIM_CELLS", "many")]).unwrap_err().to_string();
        assert!(e.contains("whole number like 16"), "{e}");
        let e = with(&[("JK_BMS_TRANSPORT", "wifi")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("JK_BMS_TRANSPORT=\"wifi\"") && e.contains("ble, sim"),
            "{e}"
        );
        let e = with(&[("SOC_CURVE", "3.3:50,3.0:10")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("SOC_CURVE=") && e.contains("must increase"),
            "{e}"
        );
        let e = with(&[("JK_SIM_VARIANT", "jk04")]).unwrap_err().to_string();
        assert!(e.contains("jk02_32s or jk02_24s"), "{e}");
        let e = with(&[("JKMON_OWN_ROWS", "sometimes")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "JKMON_OWN_ROWS=\"sometimes\" is not valid: expected auto, on or off"
        );
    }

    #[test]
    fn bms_addresses_and_names() {
        let c = with(&[
            ("JK_BMS_ADDRESS", "c8:47:80:12:ad:71, 20:21:11:00:00:01"),
            ("JK_BMS_NAMES", "Main, Garage"),
        ])
        .unwrap();
        let b = c.batteries().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].name, "Garage");
        assert_eq!(b[0].address.unwrap().to_string(), "C8:47:80:12:AD:71");
        let c = with(&[("JK_BMS_ADDRESS", "C8:47:80:12:AD:71")]).unwrap();
        assert_eq!(c.batteries().unwrap()[0].name, "Battery 1");

        let cases = [
            (vec![("JK_BMS_ADDRESS", "C8:47:80:12:AD")], "JK_BMS_ADDRESS=\"C8:47:80:12:AD\" is not valid: \"C8:47:80:12:AD\" is not a Bluetooth address"),
            (vec![("JK_BMS_ADDRESS", "C8:47:80:12:AD:71,c8:47:80:12:ad:71")], "is listed twice"),
            (vec![("JK_BMS_ADDRESS", "C8:47:80:12:AD:71,C8:47:80:12:AD:72"), ("JK_BMS_NAMES", "Main")], "JK_BMS_NAMES=\"Main\" is not valid: 1 name(s) for 2 address(es)"),
            (vec![("JK_BMS_ADDRESS", "C8:47:80:12:AD:71,C8:47:80:12:AD:72"), ("JK_BMS_NAMES", "A,A")], "used twice"),
            (vec![("JK_BMS_NAMES", "Main")], "set JK_BMS_ADDRESS too"),
            (vec![("JK_BMS_CONNECT_MODE", "sometimes")], "persistent or periodic"),
            (vec![("JK_BMS_RETRY_MIN_SEC", "5"), ("JK_BMS_RETRY_MAX_SEC", "2")], "must not exceed JK_BMS_RETRY_MAX_SEC"),
            (vec![("JK_BMS_STALE_SEC", "0")], "JK_BMS_STALE_SEC=\"0\" is not valid"),
            (vec![("JK_BMS_POLL_INTERVAL", "0.01")], "between 0.1 and 86400 seconds"),
            (vec![("HISTORY_RAW_DAYS", "a week")], "HISTORY_RAW_DAYS=\"a week\" is not valid"),
            (vec![("DB_BUSY_TIMEOUT_MS", "5")], "DB_BUSY_TIMEOUT_MS=\"5\" is not valid"),
            (vec![("BMS_CELL_LEVELS", "3.1,3.0")], "with high above low"),
            (vec![("BMS_CELL_LEVELS", "3.0")], "expected low,high cell volts"),
            (vec![("TELEGRAM_BOT_TOKEN", "12:AB"), ("TELEGRAM_CHAT_ID", "me")], "TELEGRAM_CHAT_ID=\"me\" is not valid"),
            (vec![("TELEGRAM_BOT_TOKEN", "no-colon")], "TELEGRAM_BOT_TOKEN=\"***\" is not valid"),
            (vec![("ALERT_WEBHOOK_URL", "ftp://x")], "an http:// or https:// URL"),
        ];
        for (pairs, expected) in cases {
            let e = with(&pairs).unwrap_err().to_string();
            assert!(e.contains(expected), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn session_settings_and_watchdog() {
        let c = with(&[]).unwrap();
        assert_eq!(c.session, SessionConfig::default());
        assert_eq!(c.watchdog, Some(Duration::from_secs(600)));
        let c = with(&[
            ("JK_BMS_CONNECT_MODE", "periodic"),
            ("JK_BMS_RETRY_MIN_SEC", "0.2"),
            ("BMS_TIMEOUT_SEC", "0"),
        ])
        .unwrap();
        assert_eq!(c.session.mode, ConnectMode::Periodic);
        assert_eq!(c.session.retry_min, Duration::from_millis(200));
        assert_eq!(c.watchdog, None);
    }

    #[test]
    fn without_addresses_the_devices_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jk_devices.yaml");
        let path_s = path.to_str().unwrap().to_string();
        let c = with(&[("JK_DEVICES_FILE", &path_s)]).unwrap();
        let e = c.batteries().unwrap_err().to_string();
        assert!(
            e.contains("jkmon scan --save") && e.contains(&path_s),
            "{e}"
        );
        std::fs::write(
            &path,
            "C8:47:80:12:AD:71: {name: Shed}\n# C8:47:80:12:AD:72: {name: Off}\n",
        )
        .unwrap();
        let b = c.batteries().unwrap();
        assert_eq!(
            b,
            vec![BatteryConfig {
                port: None,
                rs485_address: None,
                name: "Shed".into(),
                address: Some("C8:47:80:12:AD:71".parse().unwrap())
            }]
        );
        let sim = with(&[("JK_BMS_TRANSPORT", "sim"), ("JK_DEVICES_FILE", &path_s)]).unwrap();
        assert_eq!(sim.batteries().unwrap()[0].address, None);
    }

    #[test]
    fn the_devices_file_comes_before_jk_bms_address_as_in_the_python_service() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jk_devices.yaml");
        let path_s = path.to_str().unwrap().to_string();
        // the Python setup guide: the address of battery 1 set, two devices in the file
        std::fs::write(
            &path,
            "C8:47:80:12:AD:71: {name: JK_24v_1}\nC8:47:80:12:AD:72: {name: JK_24v_2}\n",
        )
        .unwrap();
        let c = with(&[
            ("JK_DEVICES_FILE", &path_s),
            ("JK_BMS_ADDRESS", "C8:47:80:12:AD:71"),
        ])
        .unwrap();
        let names: Vec<String> = c.batteries().unwrap().into_iter().map(|b| b.name).collect();
        assert_eq!(names, ["JK_24v_1", "JK_24v_2"]);
        let (from, unused) = c.battery_source().unwrap();
        assert!(
            from.contains("jk_devices.yaml") && from.contains("2 device"),
            "{from}"
        );
        let unused = unused.expect("the unused address is named");
        assert!(
            unused.contains("JK_BMS_ADDRESS=C8:47:80:12:AD:71")
                && unused.contains(&path_s)
                && unused.contains("JK_DEVICES_FILE"),
            "{unused}"
        );
        // every device commented out: the address is the fallback, and nothing is unused
        std::fs::write(&path, "# C8:47:80:12:AD:71: {name: JK_24v_1}\n").unwrap();
        let b = c.batteries().unwrap();
        assert_eq!((b.len(), b[0].name.as_str()), (1, "Battery 1"));
        let (from, unused) = c.battery_source().unwrap();
        assert!(
            from.starts_with("JK_BMS_ADDRESS") && unused.is_none(),
            "{from}"
        );
    }

    #[test]
    fn values_are_read_and_blank_means_default() {
        let c = with(&[
            ("JK_BMS_TRANSPORT", "sim"),
            ("SOC_SOURCE", "bms"),
            ("JK_SIM_CELLS", " 8 "),
            ("JK_BMS_VARIANT", ""),
        ])
        .unwrap();
        assert_eq!(c.transport, TransportKind::Sim);
        assert_eq!(c.soc_source, SocSource::Bms);
        assert_eq!(c.sim.cells, 8);
        assert_eq!(c.variant, VariantChoice::Auto);
    }

    #[test]
    fn wired_transports_name_what_is_missing_or_wrong() {
        let err = |pairs: &[(&str, &str)]| with(pairs).unwrap_err().to_string();
        let e = err(&[("JK_BMS_TRANSPORT", "serial")]);
        assert!(
            e.contains("JK_BMS_SERIAL_PORT") && e.contains("/dev/ttyUSB0"),
            "{e}"
        );
        let e = err(&[
            ("JK_BMS_TRANSPORT", "rs485"),
            ("JK_BMS_SERIAL_PORT", "/dev/ttyUSB0"),
        ]);
        assert!(e.contains("JK_RS485_ADDRESSES=1,2,3"), "{e}");
        let e = err(&[("JK_RS485_ADDRESSES", "1,16")]);
        assert!(
            e.contains("\"16\" is not an address") && e.contains("0-15"),
            "{e}"
        );
        let e = err(&[("JK_RS485_ADDRESSES", "2, 2")]);
        assert!(e.contains("2 is listed twice"), "{e}");
        let e = err(&[("JK_BMS_BAUD", "fast")]);
        assert!(e.starts_with("JK_BMS_BAUD=\"fast\""), "{e}");
        let e = err(&[("JK_RS485_MODE", "slave")]);
        assert!(e.contains("auto, master or sniffer"), "{e}");
        let e = err(&[
            ("JK_BMS_TRANSPORT", "rs485"),
            ("JK_BMS_SERIAL_PORT", "/dev/ttyUSB0"),
            ("JK_RS485_ADDRESSES", "1,2"),
            ("JK_BMS_NAMES", "Left"),
        ]);
        assert!(
            e.contains("1 name(s) for 2 address(es) in JK_RS485_ADDRESSES"),
            "{e}"
        );
    }

    #[test]
    fn an_rs485_network_is_one_battery_per_address_and_serial_is_one() {
        let c = with(&[
            ("JK_BMS_TRANSPORT", "rs485"),
            ("JK_BMS_SERIAL_PORT", "/dev/ttyUSB1"),
            ("JK_RS485_ADDRESSES", "0, 0x0A"),
            ("JK_BMS_NAMES", "Master,Ten"),
            ("JK_RS485_MODE", "sniffer"),
        ])
        .unwrap();
        assert_eq!(c.session.dialogue, Dialogue::Serial);
        assert_eq!(c.wire.rs485_mode, BusMode::Sniffer);
        assert_eq!(c.wire.port.as_ref().unwrap().baud, 115_200);
        let b = c.batteries().unwrap();
        assert_eq!(
            b.iter()
                .map(|b| (b.name.as_str(), b.location().unwrap()))
                .collect::<Vec<_>>(),
            [
                ("Master", "/dev/ttyUSB1 #0".to_string()),
                ("Ten", "/dev/ttyUSB1 #10".to_string())
            ]
        );
        let c = with(&[
            ("JK_BMS_TRANSPORT", "serial"),
            ("JK_BMS_SERIAL_PORT", "/dev/ttyS0"),
            ("JK_BMS_BAUD", "9600"),
        ])
        .unwrap();
        let b = c.batteries().unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].location().as_deref(), Some("/dev/ttyS0"));
        assert_eq!(c.wire.port.unwrap().baud, 9_600);
    }
}
