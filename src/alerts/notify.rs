//! Telling a transition: a Telegram message to `TELEGRAM_CHAT_ID`, a JSON POST to
//! `ALERT_WEBHOOK_URL`, and `ALERT_COMMAND` run with the transition in its environment. Each
//! has a timeout and runs in a task of its own, so a slow Bot API or a hanging command never
//! holds up the next evaluation, let alone the BMS sessions.

use std::future::IntoFuture;
use std::time::Duration;

use serde_json::json;
use teloxide::prelude::*;
use teloxide::types::ParseMode;

use super::Transition;
use crate::telegram::{escape, TelegramConfig};

/// How long one notification may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    /// `ALERT_WEBHOOK_URL`.
    pub webhook_url: Option<String>,
    /// `ALERT_COMMAND`, run with `sh -c`.
    pub command: Option<String>,
    /// `ALERT_COMMAND_TIMEOUT_SEC` (default 30).
    pub command_timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook_url: None,
            command: None,
            command_timeout: Duration::from_secs(30),
        }
    }
}

/// Where transitions go.
#[derive(Clone)]
pub struct Notifier {
    pub telegram: Option<(Bot, ChatId, TelegramConfig)>,
    pub webhook: Option<(reqwest::Client, String)>,
    pub command: Option<(String, Duration)>,
}

impl Notifier {
    pub fn new(bot: Option<&TelegramConfig>, config: &NotifyConfig) -> Result<Notifier, String> {
        let telegram = match bot {
            Some(b) => match b.chat_id {
                Some(chat) => Some((b.bot()?, ChatId(chat), b.clone())),
                None => None,
            },
            None => None,
        };
        let webhook = config.webhook_url.clone().map(|url| {
            let client = reqwest::Client::builder()
                .timeout(SEND_TIMEOUT)
                .build()
                .unwrap_or_default();
            (client, url)
        });
        Ok(Notifier {
            telegram,
            webhook,
            command: config.command.clone().map(|c| (c, config.command_timeout)),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.telegram.is_none() && self.webhook.is_none() && self.command.is_none()
    }

    /// Tells `t` everywhere configured, each in its own task. `ALERT_COMMAND` runs on every
    /// transition (a relay must follow the state); the messages only when `t.notify` (not the
    /// same news again within `ALERT_REPEAT_MIN_SEC`).
    pub fn send(&self, t: &Transition) {
        if let Some((command, timeout)) = self.command.clone() {
            let t = t.clone();
            tokio::spawn(async move { run_command(&command, timeout, &t).await });
        }
        if !t.notify {
            return;
        }
        let emoji = if t.to.is_bad() { "⚠️" } else { "✅" };
        if let Some((bot, chat, config)) = self.telegram.clone() {
            let text = format!("{emoji} <b>{}</b>", escape(&t.message));
            tokio::spawn(async move {
                let sent = tokio::time::timeout(
                    SEND_TIMEOUT,
                    bot.send_message(chat, text)
                        .parse_mode(ParseMode::Html)
                        .into_future(),
                )
                .await;
                match sent {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!("alert: Telegram: {}", config.redact(&e.to_string()))
                    }
                    Err(_) => {
                        tracing::warn!("alert: Telegram did not answer within {SEND_TIMEOUT:?}")
                    }
                }
            });
        }
        if let Some((client, url)) = self.webhook.clone() {
            let body = json!({
                "event": "jkmon.alert",
                "subject": t.subject,
                "battery": t.battery,
                "battery_name": t.battery_name,
                "from": t.from,
                "to": t.to,
                "message": t.message,
                "values": t.values,
                "at": chrono::Utc::now(),
            });
            tokio::spawn(async move {
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => tracing::warn!("alert: webhook answered {}", r.status()),
                    Err(e) => tracing::warn!("alert: webhook: {}", e.without_url()),
                }
            });
        }
    }
}

/// The environment `ALERT_COMMAND` gets.
pub fn command_env(t: &Transition) -> Vec<(&'static str, String)> {
    let battery = match &t.values {
        super::rules::Values::Battery(v) => v.clone(),
        super::rules::Values::Grid { .. } | super::rules::Values::Inverter { .. } => {
            super::rules::BatteryValues::default()
        }
    };
    let value = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    vec![
        ("JKMON_ALERT_SUBJECT", t.subject.clone()),
        (
            "JKMON_ALERT_BATTERY",
            t.battery.map(|b| b.to_string()).unwrap_or_default(),
        ),
        (
            "JKMON_ALERT_BATTERY_NAME",
            t.battery_name.clone().unwrap_or_default(),
        ),
        ("JKMON_ALERT_FROM", t.from.to_string()),
        ("JKMON_ALERT_TO", t.to.to_string()),
        ("JKMON_ALERT_MESSAGE", t.message.clone()),
        ("JKMON_ALERT_SOC_PCT", value(battery.soc_pct)),
        ("JKMON_ALERT_VOLTAGE_V", value(battery.voltage_v)),
        ("JKMON_ALERT_CURRENT_A", value(battery.current_a)),
        ("JKMON_ALERT_CELL_MIN_V", value(battery.cell_min_v)),
        ("JKMON_ALERT_CELL_MAX_V", value(battery.cell_max_v)),
        (
            "JKMON_ALERT_VALUES",
            serde_json::to_string(&t.values).unwrap_or_default(),
        ),
    ]
}

async fn run_command(command: &str, timeout: Duration, t: &Transition) {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(command_env(t))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("alert: ALERT_COMMAND could not start: {e}");
            return;
        }
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            tracing::info!("alert: ALERT_COMMAND for {} → {} exited 0", t.subject, t.to)
        }
        Ok(Ok(status)) => {
            tracing::warn!(
                "alert: ALERT_COMMAND for {} → {} exited with {status}",
                t.subject,
                t.to
            )
        }
        Ok(Err(e)) => tracing::warn!("alert: ALERT_COMMAND: {e}"),
        Err(_) => {
            let _ = child.kill().await;
            tracing::warn!(
                "alert: ALERT_COMMAND for {} → {} killed after {timeout:?}",
                t.subject,
                t.to
            );
        }
    }
}
