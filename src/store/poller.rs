//! The `inverter_poller` table (`migrations/0008_inverter_poller.sql`): where jkmon's own
//! inverter poller stands and what its last poll read, written by the process that polls and
//! read by every view (the web server and the bot may run in other processes).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{named_params, Connection, OptionalExtension};
use serde::Serialize;

use crate::inverter::payload::{Grid, Mode};
use crate::inverter::poll::{InverterPoll, InverterState};

/// Polls a reader may miss before it stops believing the stored state (the poller's process
/// was killed, or the machine stopped).
const MISSED_POLLS: u32 = 3;

/// Records a change of the poller's state.
pub fn set_state(
    conn: &Connection,
    state: InverterState,
    detail: &str,
    model: &str,
    link: &str,
    interval: Duration,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO inverter_poller (id, model, link, state, detail, since_ms, interval_ms)
         VALUES (1, :model, :link, :state, :detail, :now, :interval)
         ON CONFLICT (id) DO UPDATE SET
             model = excluded.model, link = excluded.link, state = excluded.state,
             detail = excluded.detail, since_ms = excluded.since_ms,
             interval_ms = excluded.interval_ms",
    )?
    .execute(named_params! {
        ":model": model, ":link": link, ":state": state.as_str(), ":detail": detail,
        ":now": now_ms, ":interval": interval.as_millis() as i64,
    })?;
    Ok(())
}

/// Records the newest poll (no row yet: nothing, the state comes first).
pub fn set_poll(conn: &Connection, poll: &InverterPoll) -> rusqlite::Result<()> {
    let values = crate::inverter::registers::at_resolution(poll.model, &poll.values);
    let values: serde_json::Map<String, serde_json::Value> = values
        .iter()
        .map(|(k, v)| ((*k).to_string(), serde_json::json!(v)))
        .collect();
    conn.prepare_cached(
        "UPDATE inverter_poller SET polled_ms = ?1, mode_code = ?2, poll_values = ?3 WHERE id = 1",
    )?
    .execute(rusqlite::params![
        poll.at.timestamp_millis(),
        poll.values.get("operating_mode").map(|m| *m as i64),
        serde_json::Value::Object(values).to_string()
    ])?;
    Ok(())
}

/// The poller's process stops: its state is history from now on.
pub fn stopped(conn: &Connection, now_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE inverter_poller SET state = 'stopped', detail = 'jkmon stopped', since_ms = ?1
         WHERE id = 1",
        [now_ms],
    )?;
    Ok(())
}

/// Another program polls the inverter from now on: no state of jkmon's poller is shown.
pub fn forget(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM inverter_poller", [])?;
    Ok(())
}

/// jkmon's own inverter poller as the views show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PollerView {
    pub model: String,
    pub link: String,
    /// `connecting`, `online`, `offline` or `stopped`; `offline` too when the stored state is
    /// older than three polls (the poller's process is gone).
    pub state: String,
    pub online: bool,
    pub detail: String,
    pub since: DateTime<Utc>,
    pub polled_at: Option<DateTime<Utc>>,
    /// The working mode in words (`on mains`, `off-grid (battery)`, …) and its code.
    pub mode: Option<String>,
    pub mode_code: Option<u16>,
    /// The grid by the one rule ([`crate::inverter::payload::grid`]) on the last poll's
    /// values; unknown while the poller is not online.
    pub grid: Grid,
    /// `true` only when the grid is down, `null` when it is unknown (for readers of the
    /// older field).
    pub grid_lost: Option<bool>,
    /// Every value the last poll read, by jkmon's names (with their units: `_v`, `_w`, …).
    pub values: BTreeMap<String, f64>,
}

/// The poller's row, judged at `now`; `None` where jkmon does not poll the inverter.
pub fn view(conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<Option<PollerView>> {
    let row = conn
        .query_row(
            "SELECT model, link, state, detail, since_ms, polled_ms, mode_code, poll_values,
                    interval_ms
             FROM inverter_poller WHERE id = 1",
            [],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, i64>(8)?,
                ))
            },
        )
        .optional()?;
    let Some((model, link, mut state, mut detail, since_ms, polled_ms, mode, values, interval_ms)) =
        row
    else {
        return Ok(None);
    };
    let ms = |t: i64| DateTime::from_timestamp_millis(t).unwrap_or_default();
    let last_sign_of_life = polled_ms.unwrap_or(since_ms).max(since_ms);
    let late_ms = interval_ms.max(1_000) * i64::from(MISSED_POLLS);
    if state != "stopped" && now.timestamp_millis() - last_sign_of_life > late_ms {
        detail = format!(
            "no poll for {} s: is jkmon (the process that polls the inverter) running?",
            (now.timestamp_millis() - last_sign_of_life) / 1000
        );
        state = "offline".into();
    }
    let values: BTreeMap<String, f64> = values
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default();
    let mode_code = mode.and_then(|m| u16::try_from(m).ok());
    let online = state == "online";
    let grid = if online {
        crate::inverter::payload::grid(
            mode_code.map(Mode::from_code),
            values.get("grid_voltage_v").copied(),
        )
    } else {
        Grid::Unknown
    };
    Ok(Some(PollerView {
        model,
        link,
        online,
        state,
        detail,
        since: ms(since_ms),
        polled_at: polled_ms.map(ms),
        mode: mode_code.map(|c| Mode::from_code(c).describe()),
        mode_code,
        grid,
        grid_lost: grid.is_up().map(|up| !up),
        values,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreConfig};

    fn poll(mode: f64, grid_v: f64, at: DateTime<Utc>) -> InverterPoll {
        InverterPoll {
            model: &crate::inverter::registers::SMG_II_6K,
            at,
            values: [("operating_mode", mode), ("grid_voltage_v", grid_v)]
                .into_iter()
                .collect(),
            mode: Some(Mode::from_code(mode as u16)),
            row: Ok(String::new()),
            errors: Vec::new(),
            took: Duration::ZERO,
            state: InverterState::Online,
        }
    }

    #[test]
    fn the_views_see_the_state_the_mode_and_a_poller_that_went_away() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), StoreConfig::default()).unwrap();
        let conn = store.connection();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(view(conn, t0).unwrap(), None, "no poller, no view");
        let every = Duration::from_secs(10);
        set_state(
            conn,
            InverterState::Online,
            "reading",
            "K",
            "link",
            every,
            t0.timestamp_millis(),
        )
        .unwrap();
        set_poll(conn, &poll(2.0, 230.0, t0)).unwrap();
        let v = view(conn, t0).unwrap().unwrap();
        assert_eq!((v.state.as_str(), v.online), ("online", true));
        assert_eq!(v.mode.as_deref(), Some("on mains"));
        assert_eq!(
            (v.grid_lost, v.values["grid_voltage_v"]),
            (Some(false), 230.0)
        );
        // off-grid with the grid gone, as the inverter says it
        let t1 = t0 + chrono::Duration::seconds(10);
        set_poll(conn, &poll(3.0, 0.0, t1)).unwrap();
        assert_eq!(view(conn, t1).unwrap().unwrap().grid_lost, Some(true));
        // off-grid by choice (battery first) with the grid there is no grid loss
        set_poll(conn, &poll(3.0, 229.0, t1)).unwrap();
        assert_eq!(view(conn, t1).unwrap().unwrap().grid_lost, Some(false));
        // off-grid, and the poll could not read the grid voltage: unknown, never a loss
        let mut partial = poll(3.0, 0.0, t1);
        partial.values.remove("grid_voltage_v");
        set_poll(conn, &partial).unwrap();
        let v = view(conn, t1).unwrap().unwrap();
        assert_eq!((v.grid, v.grid_lost), (Grid::Unknown, None));
        // three polls missed: the stored "online" is not believed
        let late = view(conn, t1 + chrono::Duration::seconds(31))
            .unwrap()
            .unwrap();
        assert_eq!((late.state.as_str(), late.online), ("offline", false));
        assert!(late.detail.contains("is jkmon"), "{}", late.detail);
        assert_eq!((late.grid, late.grid_lost), (Grid::Unknown, None));
        stopped(conn, t1.timestamp_millis()).unwrap();
        let v = view(conn, t1 + chrono::Duration::hours(1))
            .unwrap()
            .unwrap();
        assert_eq!(v.state, "stopped");
        forget(conn).unwrap();
        assert_eq!(view(conn, t1).unwrap(), None);
    }
}
