//! Days of made-up history in an empty database (`jkmon fill-demo`), as if jkmon had run beside
//! the inverter poller all along: an inverter row every 10 s with the battery keys merged in, a
//! BMS history row every 30 s with its energy counted, then the same downsampling and chart
//! aggregation as in production. What the installation did comes from an [`Invented`] source
//! (the simulator's, in `crate::demo`); the store only writes it.

use chrono::{DateTime, Local};
use rusqlite::TransactionBehavior;

use super::{fields, Battery, Bucket, Store, StoreError};
use serde_json::{Map, Value};

use crate::battery::energy::Meter;
use crate::battery::Snapshot;

const INVERTER_EVERY_S: i64 = 10;
const BMS_EVERY_S: i64 = 30;

/// A made-up installation, moment by moment.
pub trait Invented {
    /// Each battery's snapshot at unix second `t`, `elapsed_s` after the first moment, in the
    /// order of the batteries.
    fn batteries_at(&mut self, t: i64, elapsed_s: f64) -> Vec<Snapshot>;
    /// The inverter's row at `when`, as jkmon's own poller writes it (without the batteries'
    /// keys, which the store merges in).
    fn inverter_at(&mut self, when: DateTime<Local>) -> Map<String, Value>;
}

/// Fills `days` days up to `now_ms` for `batteries` from `source`; `progress(day, days)` after
/// each day.
/// Refuses a database that already holds readings: it never mixes invented rows into real ones.
pub fn fill(
    store: &mut Store,
    batteries: &[Battery],
    days: u32,
    now_ms: i64,
    source: &mut dyn Invented,
    mut progress: impl FnMut(u32, u32),
) -> Result<(), StoreError> {
    let existing: i64 = store
        .conn
        .query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0))?;
    if existing > 0 {
        return Err(StoreError::NotEmpty(existing));
    }
    store.register(batteries, now_ms)?;
    let ids: Vec<i64> = batteries
        .iter()
        .map(|b| store.devices[&b.position].0)
        .collect();
    // on a 30-second boundary, so the BMS samples fall on the 10-second inverter steps
    let start_s = (now_ms / 1000 - i64::from(days) * 86_400).div_euclid(BMS_EVERY_S) * BMS_EVERY_S;
    let mut demo = Demo {
        batteries,
        ids,
        source,
        latest: vec![None; batteries.len()],
        meters: batteries
            .iter()
            .map(|_| Meter::new(std::time::Duration::from_secs(60)))
            .collect(),
        energy: vec![super::energy::Pending::default(); batteries.len()],
        start_s,
    };
    for day in 0..days {
        let tx = store
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let day_start = start_s + i64::from(day) * 86_400;
        for t in (day_start..day_start + 86_400).step_by(INVERTER_EVERY_S as usize) {
            if t % BMS_EVERY_S == 0 {
                demo.batteries_at(&tx, t)?;
            }
            demo.inverter_at(&tx, t)?;
        }
        for (id, pending) in demo.ids.iter().zip(&mut demo.energy) {
            super::energy::write(&tx, *id, pending, (day_start + 86_400) * 1000)?;
            *pending = super::energy::Pending::default();
        }
        tx.commit()?;
        progress(day + 1, days);
    }
    demo.latest_snapshots(store, now_ms)?;
    while store.maintain(now_ms)?.more {}
    Ok(())
}

/// The simulated installation being written.
struct Demo<'a> {
    batteries: &'a [Battery],
    /// `bms_devices.id` of each battery.
    ids: Vec<i64>,
    source: &'a mut dyn Invented,
    /// Each battery's newest snapshot so far.
    latest: Vec<Option<Snapshot>>,
    /// Each battery's energy, counted as the writer counts it, and what the day brought.
    meters: Vec<Meter>,
    energy: Vec<super::energy::Pending>,
    start_s: i64,
}

impl Demo<'_> {
    /// Every battery's reading at unix second `t`, as a history row.
    fn batteries_at(&mut self, tx: &rusqlite::Transaction, t: i64) -> Result<(), StoreError> {
        let snapshots = self.source.batteries_at(t, (t - self.start_s) as f64);
        for (i, snapshot) in snapshots.into_iter().enumerate().take(self.ids.len()) {
            let mut bucket = Bucket::default();
            bucket.add(&snapshot);
            bucket.to_row(self.ids[i], 0, t * 1000).insert(tx)?;
            if let (Some(mw), Some(at)) = (
                snapshot.cell_info.power_mw(),
                DateTime::from_timestamp(t, 0),
            ) {
                let meter = &mut self.meters[i];
                let step = meter.add(at.with_timezone(&Local), mw as f64 / 1000.0);
                self.energy[i].add(&step, meter.average_w());
            }
            self.latest[i] = Some(snapshot);
        }
        Ok(())
    }

    /// The inverter's row at unix second `t`, with the batteries' keys merged in and
    /// `created_at` as the Python poller writes it.
    fn inverter_at(&mut self, tx: &rusqlite::Transaction, t: i64) -> Result<(), StoreError> {
        let when: DateTime<Local> = DateTime::from_timestamp(t, 0)
            .unwrap_or_default()
            .with_timezone(&Local);
        let mut map = self.source.inverter_at(when);
        for (b, snapshot) in self.batteries.iter().zip(&self.latest) {
            if let Some(s) = snapshot {
                map.extend(fields::readings_fields(
                    b.position,
                    &b.name,
                    b.address.as_deref(),
                    s,
                    when,
                ));
            }
        }
        let payload = Value::Object(map);
        tx.prepare_cached("INSERT INTO readings (created_at, payload) VALUES (?1, ?2)")?
            .execute(rusqlite::params![
                super::CreatedAtFormat::default().format(when.to_utc()),
                payload.to_string()
            ])?;
        Ok(())
    }

    /// The latest snapshot of each battery, as the writer leaves it.
    fn latest_snapshots(&self, store: &mut Store, now_ms: i64) -> Result<(), StoreError> {
        let tx = store.conn.transaction()?;
        for (id, snapshot) in self.ids.iter().zip(&self.latest) {
            if let Some(s) = snapshot {
                let json =
                    serde_json::json!({ "snapshot": crate::report::json::SnapshotJson::new(s) });
                tx.execute(
                    "INSERT OR REPLACE INTO bms_latest (device_id, taken_ms, snapshot) VALUES (?1, ?2, ?3)",
                    rusqlite::params![id, now_ms, json.to_string()],
                )?;
                tx.execute(
                    "UPDATE bms_devices SET last_seen_ms = ?1, cell_count = ?2, variant = ?3 WHERE id = ?4",
                    rusqlite::params![now_ms, s.cell_info.cell_count() as i64, s.cell_info.variant.as_str(), id],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
