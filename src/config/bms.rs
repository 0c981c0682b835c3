//! The BMS variables: which transport, which batteries, the simulator, the wired port and the
//! session's timing.

use std::path::PathBuf;
use std::time::Duration;

use super::env::{invalid, Env};
use super::{parse_addresses, parse_names, parse_rs485_addresses, ConfigError, WireConfig};
use crate::protocol::{Variant, VariantChoice};
use crate::session::{ConnectMode, Dialogue, SessionConfig};
use crate::transport::ble::MacAddress;
use crate::transport::serial::{PortConfig, DEFAULT_BAUD};
use crate::transport::sim::{Fragmentation, SimConfig};
use crate::transport::TransportKind;

/// `JK_SIM_*`: the simulated BMS.
pub fn sim(env: &Env) -> Result<SimConfig, ConfigError> {
    let mut sim = SimConfig::default();
    if let Some(n) = env.number("JK_SIM_CELLS", 4u8..=24, "16")? {
        sim.cells = n;
    }
    if let Some(n) = env.number("JK_SIM_CAPACITY_AH", 1u32..=10_000, "280")? {
        sim.capacity_ah = n;
    }
    if let Some(v) = env.parse::<VariantChoice>("JK_SIM_VARIANT")? {
        sim.variant = match v {
            VariantChoice::Fixed(x @ (Variant::Jk02_24s | Variant::Jk02_32s)) => x,
            _ => {
                let value = env.get("JK_SIM_VARIANT").unwrap_or_default();
                let problem = "the simulator speaks jk02_32s or jk02_24s";
                return Err(invalid("JK_SIM_VARIANT", &value, problem));
            }
        };
    }
    if let Some(n) = env.number("JK_SIM_SEED", 0u64..=u64::MAX, "42")? {
        sim.seed = n;
    }
    if let Some(d) = env.millis("JK_SIM_INTERVAL_MS", 10..=60_000, "500")? {
        sim.frame_interval = d;
    }
    if let Some(d) = env.whole_seconds("JK_SIM_PERIOD_SEC", 10..=604_800, "600")? {
        sim.profile_period = d;
        sim.profile_chosen = true;
    }
    if let Some(f) = env.parse::<Fragmentation>("JK_SIM_FRAGMENTATION")? {
        sim.fragmentation = f;
    }
    Ok(sim)
}

/// `JK_BMS_SERIAL_PORT`, `JK_BMS_BAUD` and the RS485 variables; a wired transport without
/// its port or its packs is refused with what to set.
pub fn wire(env: &Env, transport: TransportKind) -> Result<WireConfig, ConfigError> {
    let rs485_addresses = env
        .get("JK_RS485_ADDRESSES")
        .map(|v| parse_rs485_addresses(&v))
        .transpose()?
        .unwrap_or_default();
    let baud = env
        .number("JK_BMS_BAUD", 1_200u32..=4_000_000, "115200")?
        .unwrap_or(DEFAULT_BAUD);
    let port = env.get("JK_BMS_SERIAL_PORT").map(|path| PortConfig {
        path: PathBuf::from(path),
        baud,
    });
    let wired = matches!(transport, TransportKind::Serial | TransportKind::Rs485);
    if wired && port.is_none() {
        return Err(invalid(
            "JK_BMS_SERIAL_PORT",
            "",
            format!(
                "JK_BMS_TRANSPORT={transport} needs the port the adapter is on, like JK_BMS_SERIAL_PORT=/dev/ttyUSB0 (`ls -l /dev/serial/by-id/` lists them)"
            ),
        ));
    }
    if transport == TransportKind::Rs485 && rs485_addresses.is_empty() {
        return Err(invalid(
            "JK_RS485_ADDRESSES",
            "",
            "JK_BMS_TRANSPORT=rs485 needs the packs' DIP-switch addresses, like JK_RS485_ADDRESSES=1,2,3",
        ));
    }
    Ok(WireConfig {
        port,
        rs485_addresses,
        rs485_mode: env.parse("JK_RS485_MODE")?.unwrap_or_default(),
    })
}

/// `JK_BMS_ADDRESS`.
pub fn addresses(env: &Env) -> Result<Vec<MacAddress>, ConfigError> {
    Ok(env
        .get("JK_BMS_ADDRESS")
        .map(|v| parse_addresses(&v))
        .transpose()?
        .unwrap_or_default())
}

/// `JK_BMS_NAMES`: one per battery of the transport's own list.
pub fn names(
    env: &Env,
    transport: TransportKind,
    wire: &WireConfig,
    addresses: &[MacAddress],
) -> Result<Vec<String>, ConfigError> {
    let Some(v) = env.get("JK_BMS_NAMES") else {
        return Ok(Vec::new());
    };
    match transport {
        TransportKind::Serial => parse_names(&v, 1, "BMS on JK_BMS_SERIAL_PORT"),
        TransportKind::Rs485 => parse_names(
            &v,
            wire.rs485_addresses.len(),
            "address(es) in JK_RS485_ADDRESSES",
        ),
        _ if addresses.is_empty() => Err(invalid(
            "JK_BMS_NAMES",
            &v,
            "names need addresses: set JK_BMS_ADDRESS too (the devices file carries its own names)",
        )),
        _ => parse_names(&v, addresses.len(), "address(es) in JK_BMS_ADDRESS"),
    }
}

/// The session's mode and timing (`JK_BMS_CONNECT_MODE`, `JK_BMS_POLL_INTERVAL`, the
/// timeouts and the retry bounds).
pub fn session(env: &Env, transport: TransportKind) -> Result<SessionConfig, ConfigError> {
    let mut session = SessionConfig::default();
    if let Some(m) = env.parse::<ConnectMode>("JK_BMS_CONNECT_MODE")? {
        session.mode = m;
    }
    if let Some(d) = env.seconds("JK_BMS_POLL_INTERVAL", 0.1..=86_400.0)? {
        session.poll_interval = d;
    }
    if let Some(d) = env.whole_seconds("JK_BMS_STALE_SEC", 1..=3_600, "30")? {
        session.stale = d;
    }
    if let Some(d) = env.whole_seconds("JK_BMS_CONNECT_TIMEOUT_SEC", 1..=600, "20")? {
        session.connect_timeout = d;
    }
    if matches!(transport, TransportKind::Serial | TransportKind::Rs485) {
        session.dialogue = Dialogue::Serial;
    }
    if let Some(d) = env.millis("JK_BMS_RESPONSE_TIMEOUT_MS", 20..=60_000, "1000")? {
        session.response_timeout = d;
    }
    if let Some(d) = env.seconds("JK_BMS_RETRY_MIN_SEC", 0.05..=600.0)? {
        session.retry_min = d;
    }
    if let Some(d) = env.seconds("JK_BMS_RETRY_MAX_SEC", 0.05..=3_600.0)? {
        session.retry_max = d;
    }
    if session.retry_min > session.retry_max {
        return Err(invalid(
            "JK_BMS_RETRY_MIN_SEC",
            &format!("{}", session.retry_min.as_secs_f64()),
            format!(
                "must not exceed JK_BMS_RETRY_MAX_SEC ({} s)",
                session.retry_max.as_secs_f64()
            ),
        ));
    }
    session.variant = env.parse("JK_BMS_VARIANT")?.unwrap_or_default();
    Ok(session)
}

/// `BMS_TIMEOUT_SEC`: 0 turns the watchdog off; default 600 s.
pub fn watchdog(env: &Env) -> Result<Option<Duration>, ConfigError> {
    Ok(
        match env.whole_seconds("BMS_TIMEOUT_SEC", 0..=604_800, "600")? {
            Some(Duration::ZERO) => None,
            Some(d) => Some(d),
            None => Some(Duration::from_secs(600)),
        },
    )
}
