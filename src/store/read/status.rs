//! The latest state of every battery and of the inverter, from the file (and, in the process
//! that runs the sessions, the newest snapshots).

use super::views::{
    BankView, BatteryView, InverterView, StatusView, INVERTER_KEYS, SWITCH_WRITES_SHOWN,
};
use super::{local_day, ReadConfig};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::Value;

use crate::battery::link::State;
use crate::report::json::SnapshotJson;
use crate::store::energy::{self, EnergyView};
use crate::store::live::Live;
use crate::store::{Battery, StoreError, OWN_ROW_SOURCE};

fn age_s(then_ms: i64, now: DateTime<Utc>) -> f64 {
    ((now.timestamp_millis() - then_ms) as f64 / 1000.0).max(0.0)
}

/// The batteries a reader shows: the configured ones, or, where none is configured, the ones
/// the database holds (per position the one seen last, so an old configuration's battery at
/// the same place does not show twice).
pub fn batteries(conn: &Connection, config: &ReadConfig) -> Result<Vec<Battery>, StoreError> {
    if !config.batteries.is_empty() {
        return Ok(config.batteries.clone());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT position, name, address FROM bms_devices
         ORDER BY position, COALESCE(last_seen_ms, first_seen_ms) DESC, id DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Battery {
            position: usize::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
            name: r.get(1)?,
            address: r.get(2)?,
        })
    })?;
    let mut out: Vec<Battery> = Vec::new();
    for b in rows {
        let b = b?;
        if b.position > 0 && out.last().is_none_or(|l| l.position != b.position) {
            out.push(b);
        }
    }
    Ok(out)
}

/// Every battery, the bank, and the latest readings row.
pub fn status(
    conn: &Connection,
    config: &ReadConfig,
    now: DateTime<Utc>,
) -> Result<StatusView, StoreError> {
    let list = batteries(conn, config)?;
    let mut views = Vec::with_capacity(list.len());
    for b in &list {
        views.push(battery(conn, config, b, now)?);
    }
    let bank = (views.len() >= 2).then(|| bank(&views));
    Ok(StatusView {
        generated_at: now,
        batteries: views,
        bank,
        inverter: latest_reading(conn, now, config.inverter_max_gap)?,
        poller: crate::store::poller::view(conn, now)?,
    })
}

/// What `bms_latest.snapshot` holds (see `write_battery`).
#[derive(Deserialize)]
struct Latest {
    snapshot: SnapshotJson,
}

fn battery(
    conn: &Connection,
    config: &ReadConfig,
    b: &Battery,
    now: DateTime<Utc>,
) -> Result<BatteryView, StoreError> {
    let mut view = BatteryView {
        position: b.position,
        name: b.name.clone(),
        address: b.address.clone(),
        state: State::Disconnected,
        state_detail: None,
        online: false,
        taken_at: None,
        age_s: None,
        model: None,
        hardware_version: None,
        software_version: None,
        serial_number: None,
        snapshot: None,
        energy: None,
        switch_writes: crate::store::switches::recent(conn, &b.device_key(), SWITCH_WRITES_SHOWN)?,
    };
    let row = conn
        .query_row(
            "SELECT d.state, d.state_detail, d.model, d.hardware_version, d.software_version,
                    d.serial_number, l.taken_ms, l.snapshot
             FROM bms_devices AS d LEFT JOIN bms_latest AS l ON l.device_id = d.id
             WHERE d.device_key = ?1",
            [b.device_key()],
            |r| {
                view.state = State::from_stored(&r.get::<_, String>(0)?);
                view.state_detail = r.get::<_, Option<String>>(1)?.filter(|d| !d.is_empty());
                view.model = r.get(2)?;
                view.hardware_version = r.get(3)?;
                view.software_version = r.get(4)?;
                view.serial_number = r.get(5)?;
                Ok((r.get::<_, Option<i64>>(6)?, r.get::<_, Option<String>>(7)?))
            },
        )
        .optional()?;
    let Some((taken_ms, snapshot)) = row else {
        return Ok(view);
    };
    view.age_s = taken_ms.map(|t| age_s(t, now));
    view.taken_at = taken_ms.and_then(DateTime::from_timestamp_millis);
    let age = view.age_s.map(Duration::from_secs_f64);
    view.online = config.liveness.online(view.state, age);
    view.snapshot = snapshot.and_then(|text| match serde_json::from_str::<Latest>(&text) {
        Ok(latest) => Some(latest.snapshot),
        Err(e) => {
            // another version's snapshot: the battery shows no values rather than wrong ones
            tracing::debug!("battery {}: the stored snapshot does not read: {e}", b.name);
            None
        }
    });
    let counters = energy::counters(conn, &b.device_key(), local_day(now))?;
    view.energy = Some(EnergyView::new(
        &counters,
        local_day(now),
        view.snapshot.as_ref(),
        view.online,
    ));
    Ok(view)
}

/// Puts each battery's newest snapshot from `live` over the database's, where it is newer, and
/// judges freshness again by it.
pub fn overlay(view: &mut StatusView, live: &Live, config: &ReadConfig) {
    let now = view.generated_at;
    for b in &mut view.batteries {
        if let Some((snapshot, at)) = live.get(b.position) {
            if b.taken_at.is_none_or(|t| t < at) {
                let age = age_s(at.timestamp_millis(), now);
                b.snapshot = Some(SnapshotJson::new(&snapshot));
                b.taken_at = Some(at);
                b.age_s = Some(age);
                b.online = config
                    .liveness
                    .online(b.state, Some(Duration::from_secs_f64(age)));
            }
        }
        if let Some(counters) = live.energy(b.position) {
            b.energy = Some(EnergyView::new(
                &counters,
                local_day(now),
                b.snapshot.as_ref(),
                b.online,
            ));
        }
    }
    if view.batteries.len() >= 2 {
        view.bank = Some(bank(&view.batteries));
    }
}

fn bank(batteries: &[BatteryView]) -> BankView {
    let online: Vec<&SnapshotJson> = batteries
        .iter()
        .filter(|b| b.online)
        .filter_map(|b| b.snapshot.as_ref())
        .collect();
    let (mut weighted, mut weights) = (0.0, 0.0);
    for s in &online {
        if let Some(soc) = s.soc_effective_pct {
            let w = s
                .cell_info
                .nominal_capacity_ah
                .filter(|c| *c > 0.0)
                .unwrap_or(1.0);
            weighted += soc * w;
            weights += w;
        }
    }
    BankView {
        energy: EnergyView::bank(batteries.iter().filter_map(|b| b.energy.as_ref())),
        batteries_online: online.len(),
        current_a: online.iter().filter_map(|s| s.cell_info.current_a).sum(),
        power_w: online.iter().filter_map(|s| s.cell_info.power_w).sum(),
        soc_pct: (weights > 0.0).then(|| (weighted / weights * 10.0).round() / 10.0),
    }
}

/// The newest `readings` row, whatever wrote it.
pub fn latest_reading(
    conn: &Connection,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> Result<Option<InverterView>, StoreError> {
    // payload and error as any writer left them: a BLOB or text that is not UTF-8 is no JSON
    let text = |v: rusqlite::types::ValueRef| match v {
        rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).ok().map(str::to_string),
        _ => None,
    };
    let row: Option<(i64, String, Option<String>, Option<String>)> = conn
        .query_row(
            "SELECT id, created_at, payload, error FROM readings ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    text(r.get_ref(1)?).unwrap_or_default(),
                    text(r.get_ref(2)?),
                    text(r.get_ref(3)?),
                ))
            },
        )
        .optional()?;
    Ok(row.map(|(id, created_at, payload, error)| {
        let payload = payload
            .and_then(|p| serde_json::from_str::<Value>(&p).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            });
        let has_inverter_data = payload.as_ref().is_some_and(|m| {
            m.get("source").and_then(Value::as_str) != Some(OWN_ROW_SOURCE)
                && INVERTER_KEYS.iter().any(|k| m.contains_key(*k))
        });
        let age_s = parse_created_at(&created_at).map(|t| age_s(t.timestamp_millis(), now));
        InverterView {
            id,
            stale: age_s.is_none_or(|a| a > stale_after.as_secs_f64()),
            age_s,
            created_at,
            has_inverter_data,
            error,
            payload,
        }
    }))
}

pub use crate::store::readings::parse_utc as parse_created_at;
