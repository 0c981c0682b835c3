//! A simulated inverter poller for `jkmon run --demo`: a thread with its own database
//! connection that inserts a row into `readings` every interval, shaped exactly like the Python
//! monitor's rows (every value a string with its fixed decimals, `status_text` the mode name,
//! `created_at` as the table already writes it — naive UTC to the second, the Python poller's
//! `utcnow().isoformat(timespec="seconds")`, on a new table). It stands for the other program
//! that shares the database, so the demo shows the merge working as it does in a real
//! installation.

use std::f64::consts::PI;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{Local, Timelike};
use rusqlite::Connection;
use serde_json::{json, Value};

use super::CreatedAtFormat;
use crate::transport::sim::Rng;

/// The running simulated inverter; dropping [`SimInverter::stop`]'s handle ends it.
pub struct SimInverter {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SimInverter {
    /// Starts inserting into the database at `path` (already migrated by the store). The first
    /// row is in the table when this returns.
    pub fn start(path: &Path, interval: Duration, seed: u64) -> rusqlite::Result<SimInverter> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let format = CreatedAtFormat::learn(&conn)?;
        let mut rng = Rng::new(seed ^ 0x1a7e_47e2);
        let insert = move |rng: &mut Rng| {
            let now = Local::now();
            let hour = f64::from(now.num_seconds_from_midnight()) / 3600.0;
            let payload = row(hour, rng).to_string();
            conn.execute(
                "INSERT INTO readings (created_at, payload) VALUES (?1, ?2)",
                rusqlite::params![format.format(now.to_utc()), payload],
            )
        };
        insert(&mut rng)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("jkmon-sim-inverter".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    if let Err(e) = insert(&mut rng) {
                        tracing::warn!("simulated inverter: could not insert a reading: {e}");
                    }
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(SimInverter {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Ends the thread and waits for it (at most one insert).
    pub fn stop(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One reading at `hour` (0–24, local): PV follows the sun, the load wanders, the inverter runs
/// SBU while the sun covers the load and LINE otherwise.
pub fn row(hour: f64, rng: &mut Rng) -> Value {
    let sun = ((hour - 6.0) / 12.0 * PI).sin().max(0.0);
    let pv_w = 3_000.0 * sun * (0.85 + 0.15 * rng.unit().abs());
    let load_w = 350.0
        + 250.0 * rng.unit().abs()
        + if (18.0..22.0).contains(&hour) {
            600.0
        } else {
            0.0
        };
    let sbu = pv_w > load_w;
    let grid_v = 228.0 + 4.0 * rng.unit();
    let grid_w = if sbu { 0.0 } else { (load_w - pv_w).max(0.0) };
    let out_v = 230.0 + rng.unit();
    let battery_v = 52.4 + 0.6 * sun + 0.1 * rng.unit();
    let battery_w = if sbu { pv_w - load_w } else { 0.0 };
    let battery_a = battery_w / battery_v;
    let pv_v = if pv_w > 0.0 { 380.0 + 20.0 * sun } else { 0.0 };
    json!({
        "grid_voltage": format!("{grid_v:.1}"),
        "grid_power": format!("{grid_w:.0}"),
        "grid_current": if grid_w > 0.0 { format!("{:.2}", grid_w / grid_v) } else { "N/A".into() },
        "ac_output_voltage": format!("{out_v:.1}"),
        "ac_output_freq": format!("{:.2}", 50.0 + 0.02 * rng.unit()),
        "ac_output_power": format!("{load_w:.0}"),
        "ac_output_current": format!("{:.1}", load_w / out_v),
        "battery_voltage": format!("{battery_v:.1}"),
        "battery_current": format!("{battery_a:.1}"),
        "battery_power": format!("{battery_w:.0}"),
        "battery_soc": format!("{:.0}", 60.0 + 30.0 * sun),
        "battery_charge_power": format!("{:.0}", grid_w - load_w),
        "pv_input_voltage": format!("{pv_v:.1}"),
        "pv_input_power": format!("{pv_w:.0}"),
        "pv_input_current": format!("{:.1}", if pv_v > 0.0 { pv_w / pv_v } else { 0.0 }),
        "temperature": format!("{:.0}", 27.0 + 5.0 * sun),
        "status_text": if sbu { "SBU" } else { "LINE" },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_look_like_the_python_pollers() {
        let mut rng = Rng::new(1);
        for hour in [0.0, 9.5, 12.0, 19.0] {
            let r = row(hour, &mut rng);
            let m = r.as_object().unwrap();
            assert_eq!(m.len(), 17);
            for (k, v) in m {
                let s = v.as_str().unwrap_or_else(|| panic!("{k} is not a string"));
                assert!(
                    s == "N/A" || k == "status_text" || s.parse::<f64>().is_ok(),
                    "{k}={s}"
                );
            }
            assert!(["SBU", "LINE"].contains(&m["status_text"].as_str().unwrap()));
        }
        assert_eq!(row(0.0, &mut rng)["pv_input_power"], "0");
    }
}
