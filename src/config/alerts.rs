//! Telegram, the alert rules and where alerts go.

use std::time::Duration;

use super::env::{invalid, Env};
use super::ConfigError;
use crate::alerts::{AlertConfig, CellLevels, NotifyConfig};
use crate::telegram::TelegramConfig;

/// `TELEGRAM_*`: `None` without a bot token.
pub fn telegram(env: &Env) -> Result<Option<TelegramConfig>, ConfigError> {
    let Some(token) = env.get("TELEGRAM_BOT_TOKEN") else {
        return Ok(None);
    };
    if !token.contains(':') || token.contains(char::is_whitespace) {
        return Err(invalid(
            "TELEGRAM_BOT_TOKEN",
            "***",
            "expected the token @BotFather gave, like 123456:ABC-DEF…",
        ));
    }
    let api_url = env
        .get("TELEGRAM_API_URL")
        .unwrap_or_else(|| "https://api.telegram.org".into());
    if reqwest::Url::parse(&api_url).is_err() {
        return Err(invalid(
            "TELEGRAM_API_URL",
            &api_url,
            "expected a URL like https://api.telegram.org or http://127.0.0.1:8081",
        ));
    }
    let chat_id = |var: &'static str, v: &str| -> Result<i64, ConfigError> {
        v.trim().parse::<i64>().map_err(|_| {
            invalid(
                var,
                v,
                "expected a chat id like 123456789 or -1001234567890 (send /chatid to the bot to see it)",
            )
        })
    };
    let allowed = match env.get("TELEGRAM_ALLOWED_CHAT_IDS") {
        Some(v) => v
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| chat_id("TELEGRAM_ALLOWED_CHAT_IDS", p))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    Ok(Some(TelegramConfig {
        token,
        api_url,
        chat_id: env
            .get("TELEGRAM_CHAT_ID")
            .map(|v| chat_id("TELEGRAM_CHAT_ID", &v))
            .transpose()?,
        allowed,
    }))
}

/// `BMS_CELL_LEVELS`: `low,high` volts per battery, batteries separated by `;`.
fn cell_levels(env: &Env) -> Result<Vec<CellLevels>, ConfigError> {
    let Some(v) = env.get("BMS_CELL_LEVELS") else {
        return Ok(Vec::new());
    };
    let bad = |problem: &str| invalid("BMS_CELL_LEVELS", &v, problem);
    let mut levels = Vec::new();
    for pair in v.split(';') {
        let parts: Vec<&str> = pair.split(',').map(str::trim).collect();
        let volts: Vec<f64> = parts.iter().filter_map(|p| p.parse().ok()).collect();
        if parts.len() != 2 || volts.len() != 2 {
            return Err(bad("expected low,high cell volts per battery, batteries separated by ;, like 3.0,3.1;2.8,2.9"));
        }
        if !(1.0..=5.0).contains(&volts[0]) || volts[1] <= volts[0] || volts[1] > 5.0 {
            return Err(bad(
                "each pair is low,high in volts between 1 and 5, with high above low",
            ));
        }
        levels.push(CellLevels {
            low_mv: (volts[0] * 1000.0).round() as u32,
            high_mv: (volts[1] * 1000.0).round() as u32,
        });
    }
    Ok(levels)
}

/// The alert rules' thresholds.
pub fn alerts(env: &Env) -> Result<AlertConfig, ConfigError> {
    let mut alerts = AlertConfig {
        cell_levels: cell_levels(env)?,
        delta_mv: env.number("ALERT_CELL_DELTA_MV", 1u32..=2_000, "80")?,
        soc_low_pct: env.number("ALERT_SOC_LOW", 1u8..=99, "20")?.map(f64::from),
        ..AlertConfig::default()
    };
    if let Some(n) = env.number("BMS_CELL_LEVEL_SAMPLES", 1u32..=1_000, "3")? {
        alerts.samples = n;
    }
    if let Some(d) = env.seconds("GRID_DEBOUNCE_SEC", 0.0..=3_600.0)? {
        alerts.grid_debounce = d;
    }
    if let Some(d) = env.seconds("ALERT_REPEAT_MIN_SEC", 0.0..=86_400.0)? {
        alerts.repeat_min = d;
    }
    Ok(alerts)
}

/// Where alerts go besides Telegram: the webhook and the command.
pub fn notify(env: &Env) -> Result<NotifyConfig, ConfigError> {
    let mut notify = NotifyConfig {
        webhook_url: env.get("ALERT_WEBHOOK_URL"),
        command: env.get("ALERT_COMMAND"),
        ..NotifyConfig::default()
    };
    if let Some(url) = &notify.webhook_url {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(invalid(
                "ALERT_WEBHOOK_URL",
                url,
                "expected an http:// or https:// URL",
            ));
        }
    }
    if let Some(d) = env.seconds("ALERT_COMMAND_TIMEOUT_SEC", 0.1..=3_600.0)? {
        notify.command_timeout = d;
    }
    Ok(notify)
}

/// `ALERT_CHECK_SEC`: how often the alert rules look.
pub fn check_every(env: &Env) -> Result<Duration, ConfigError> {
    Ok(env
        .seconds("ALERT_CHECK_SEC", 0.1..=3_600.0)?
        .unwrap_or(crate::alerts::CHECK_EVERY))
}
