//! Alerts: [`rules`] decide (pure, with injected time), [`notify`] tells (Telegram, a webhook,
//! a command), [`run`] ties them to the store on an interval, off the poller's path.
//!
//! Layer 6 (a view): may use `store`, `report` and `telegram` (not `session`); never another
//! view.

pub mod notify;
pub mod rules;

pub use rules::{AlertConfig, AlertState, CellLevels, Transition};

use std::time::Duration;

use rusqlite::OptionalExtension;
use tokio_util::sync::CancellationToken;

use crate::store::read::{ReadConfig, Readers};
pub use notify::{Notifier, NotifyConfig};

/// How often the rules look at the store.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// The state saved by an earlier run, or a fresh one.
fn load(path: &std::path::Path, busy: Duration) -> Result<AlertState, crate::store::StoreError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(busy)?;
    let text: Option<String> = conn
        .query_row("SELECT state FROM alert_state WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

fn save(
    path: &std::path::Path,
    busy: Duration,
    state: &AlertState,
) -> Result<(), crate::store::StoreError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(busy)?;
    conn.execute(
        "INSERT INTO alert_state (id, state, updated_ms) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
        rusqlite::params![
            serde_json::to_string(state).unwrap_or_default(),
            crate::store::now_ms()
        ],
    )?;
    Ok(())
}

/// Everything the alert loop needs.
pub struct Runner {
    /// The database (its `alert_state` table keeps the rules' memory).
    pub path: std::path::PathBuf,
    pub busy: Duration,
    pub readers: Readers,
    pub read_config: ReadConfig,
    pub config: AlertConfig,
    pub notifier: Notifier,
    /// `ALERT_CHECK_SEC`.
    pub every: Duration,
}

/// Evaluates the rules every `every` until `stop`, saving the state before telling anyone, so
/// a crash in between loses a message rather than repeating one.
pub async fn run(runner: Runner, stop: CancellationToken) {
    let Runner {
        path,
        busy,
        readers,
        read_config,
        config,
        notifier,
        every,
    } = runner;
    let p = path.clone();
    let mut state = match tokio::task::spawn_blocking(move || load(&p, busy)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!("alerts: could not read the saved alert state ({e}); starting afresh");
            AlertState::default()
        }
        Err(_) => AlertState::default(),
    };
    loop {
        match readers.status(&read_config).await {
            Ok(status) => {
                let before = state.clone();
                let transitions = state.evaluate(&config, &status, crate::store::now_ms());
                if state != before {
                    let (p, s) = (path.clone(), state.clone());
                    match tokio::task::spawn_blocking(move || save(&p, busy, &s)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!("alerts: could not save the alert state: {e}"),
                        Err(_) => {}
                    }
                }
                for t in &transitions {
                    if t.notify {
                        tracing::info!("alert: {} ({} → {})", t.message, t.from, t.to);
                    } else {
                        tracing::info!(
                            "alert: {} ({} → {}; no message again so soon, ALERT_REPEAT_MIN_SEC)",
                            t.message,
                            t.from,
                            t.to
                        );
                    }
                    notifier.send(t);
                }
            }
            Err(e) => tracing::warn!("alerts: cannot read the database: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}
