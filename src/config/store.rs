//! The database variables: busy timeout, the merge into `readings`, history retention.

use std::time::Duration;

use super::env::Env;
use super::ConfigError;
use crate::session::{ConnectMode, SessionConfig};
use crate::store::{Retention, StoreConfig};

/// The store's settings; the commit interval and the freshness follow the session's timing.
pub fn store(env: &Env, session: &SessionConfig) -> Result<StoreConfig, ConfigError> {
    let periods = if session.mode == ConnectMode::Periodic {
        2
    } else {
        1
    };
    let mut store = StoreConfig {
        interval: session.poll_interval,
        freshness: session.stale + session.poll_interval * periods,
        ..StoreConfig::default()
    };
    if let Some(d) = env.millis("DB_BUSY_TIMEOUT_MS", 100..=600_000, "5000")? {
        store.busy_timeout = d;
    }
    if let Some(d) = env.seconds("INVERTER_TIMEOUT_SEC", 1.0..=86_400.0)? {
        store.inverter_timeout = d;
    }
    if let Some(d) = env.seconds("POLL_INTERVAL", 1.0..=3_600.0)? {
        store.inverter_poll = d;
    }
    if let Some(o) = env.parse("JKMON_OWN_ROWS")? {
        store.own_rows = o;
    }
    let days = |var: &'static str, default: u32| -> Result<u32, ConfigError> {
        Ok(env.number(var, 0u32..=36_500, "30")?.unwrap_or(default))
    };
    let defaults = Retention::default();
    store.retention = Retention {
        raw_days: days("HISTORY_RAW_DAYS", defaults.raw_days)?,
        five_min_days: days("HISTORY_5MIN_DAYS", defaults.five_min_days)?,
        hourly_days: days("HISTORY_HOURLY_DAYS", defaults.hourly_days)?,
    };
    Ok(store)
}

/// `JK_SIM_INVERTER_SEC`: the demo inverter's poll interval (10 s like the real poller).
pub fn sim_inverter_interval(env: &Env) -> Result<Duration, ConfigError> {
    Ok(env
        .seconds("JK_SIM_INVERTER_SEC", 0.01..=3_600.0)?
        .unwrap_or(Duration::from_secs(10)))
}
