//! `/metrics`: the Prometheus text exposition format (version 0.0.4).
//!
//! - per battery (labels `battery` = position, `name`): `jkmon_battery_*` gauges from the
//!   latest snapshot in the store — the same values as `/api/v1/status` and `jkmon read
//!   --json`; a battery that is offline shows only `jkmon_battery_online 0` and the time of
//!   its last reading, so graphs gap rather than draw stale values;
//! - per cell (`cell`, 1-based) and per temperature probe (`sensor`: `mos`, `t1`…);
//! - per alarm group (`group`);
//! - per link (`link`: a battery, or the RS485 bus its packs share): `jkmon_frames_decoded_total`,
//!   `jkmon_frames_rejected_total`, `jkmon_reconnects_total` — only where this process runs the
//!   sessions (`jkmon run`, not `jkmon web` alone);
//! - the standard `process_*` metrics of this process.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use crate::store::StoreError;

use crate::store::read::StatusView;
use crate::telemetry::Telemetry;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: read fresh on every scrape (Prometheus sets the pace).
pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, StoreError> {
    let config = state.read.clone();
    let status = state
        .readers
        .run(move |c| crate::store::read::status(c, &config, chrono::Utc::now()))
        .await?;
    let telemetry = state.telemetry.clone();
    let text = render(&status, telemetry.as_deref(), Process::read().as_ref());
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// A label value escaped for the exposition format.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: Rust prints the shortest form that reads back as the same `f64`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// The exposition being written: one family at a time, all its samples together.
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }
}

/// A battery gauge read from one snapshot field.
struct Gauge {
    name: &'static str,
    help: &'static str,
    field: &'static str,
}

const fn g(name: &'static str, field: &'static str, help: &'static str) -> Gauge {
    Gauge { name, help, field }
}

const GAUGES: [Gauge; 19] = [
    g(
        "jkmon_battery_voltage_volts",
        "total_voltage_v",
        "Pack voltage.",
    ),
    g(
        "jkmon_battery_current_amperes",
        "current_a",
        "Pack current: positive charging, negative discharging.",
    ),
    g(
        "jkmon_battery_power_watts",
        "power_w",
        "Pack power, signed like the current.",
    ),
    g(
        "jkmon_battery_soc_percent",
        "soc_effective_pct",
        "State of charge as jkmon shows it (see soc_source in the API).",
    ),
    g(
        "jkmon_battery_bms_soc_percent",
        "soc_pct",
        "State of charge as the BMS computes it.",
    ),
    g(
        "jkmon_battery_soh_percent",
        "soh_pct",
        "State of health reported by the BMS.",
    ),
    g(
        "jkmon_battery_remaining_capacity_amp_hours",
        "remaining_capacity_ah",
        "Remaining capacity.",
    ),
    g(
        "jkmon_battery_nominal_capacity_amp_hours",
        "nominal_capacity_ah",
        "Full-charge capacity set in the BMS.",
    ),
    g(
        "jkmon_battery_cycle_capacity_amp_hours",
        "cycle_capacity_ah",
        "Charge cycled through the battery, as the BMS counts it.",
    ),
    g(
        "jkmon_battery_cycles",
        "cycle_count",
        "Charge cycles counted by the BMS.",
    ),
    g(
        "jkmon_battery_cell_min_volts",
        "cell_min_v",
        "Lowest cell voltage.",
    ),
    g(
        "jkmon_battery_cell_max_volts",
        "cell_max_v",
        "Highest cell voltage.",
    ),
    g(
        "jkmon_battery_cell_avg_volts",
        "cell_avg_v",
        "Average cell voltage.",
    ),
    g(
        "jkmon_battery_cell_delta_volts",
        "cell_delta_v",
        "Highest minus lowest cell voltage.",
    ),
    g(
        "jkmon_battery_balance_current_amperes",
        "balance_current_a",
        "Balancer current.",
    ),
    g(
        "jkmon_battery_balancing",
        "balancing",
        "1 while the balancer is working.",
    ),
    g(
        "jkmon_battery_charging_enabled",
        "charging_enabled",
        "1 while the charge switch (MOSFET) is on.",
    ),
    g(
        "jkmon_battery_discharging_enabled",
        "discharging_enabled",
        "1 while the discharge switch (MOSFET) is on.",
    ),
    g(
        "jkmon_battery_uptime_seconds",
        "uptime_s",
        "Time since the BMS started.",
    ),
];

/// A JSON value as a sample value (`true` = 1).
fn value(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// The exposition of `status`, `telemetry` (when this process runs the sessions) and
/// `process` (when it could be read).
pub fn render(
    status: &StatusView,
    telemetry: Option<&Telemetry>,
    process: Option<&Process>,
) -> String {
    let mut out = Out {
        text: String::new(),
    };
    out.family("jkmon_build_info", "gauge", "jkmon's version.");
    out.sample(
        "jkmon_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    let batteries: Vec<(String, &crate::store::read::BatteryView)> = status
        .batteries
        .iter()
        .map(|b| (b.position.to_string(), b))
        .collect();
    out.family(
        "jkmon_battery_online",
        "gauge",
        "1 while the battery delivers fresh readings.",
    );
    for (pos, b) in &batteries {
        let online = if b.online { 1.0 } else { 0.0 };
        out.sample(
            "jkmon_battery_online",
            &[("battery", pos), ("name", &b.name)],
            online,
        );
    }
    out.family(
        "jkmon_battery_last_reading_timestamp_seconds",
        "gauge",
        "When the battery's latest reading was taken (Unix time).",
    );
    for (pos, b) in &batteries {
        if let Some(t) = b.taken_at {
            let at = t.timestamp_millis() as f64 / 1000.0;
            let labels = [("battery", pos.as_str()), ("name", b.name.as_str())];
            out.sample("jkmon_battery_last_reading_timestamp_seconds", &labels, at);
        }
    }
    // only batteries that are online show values
    let live: Vec<(&str, &str, &Value)> = batteries
        .iter()
        .filter(|(_, b)| b.online)
        .filter_map(|(pos, b)| Some((pos.as_str(), b.name.as_str(), b.snapshot.as_ref()?)))
        .collect();
    for gauge in &GAUGES {
        let samples: Vec<(&str, &str, f64)> = live
            .iter()
            .filter_map(|(pos, name, s)| Some((*pos, *name, value(s.get(gauge.field)?)?)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        out.family(gauge.name, "gauge", gauge.help);
        for (pos, name, v) in samples {
            out.sample(gauge.name, &[("battery", pos), ("name", name)], v);
        }
    }
    let per_item =
        |out: &mut Out, name: &str, help: &str, field: &str, label: &str, one_based: bool| {
            let mut first = true;
            for (pos, battery, s) in &live {
                let items: Vec<(String, f64)> = match s.get(field) {
                    Some(Value::Array(a)) => a
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| {
                            Some(((i + usize::from(one_based)).to_string(), value(v)?))
                        })
                        .collect(),
                    Some(Value::Object(o)) => o
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), value(v)?)))
                        .collect(),
                    _ => Vec::new(),
                };
                for (key, v) in items {
                    if first {
                        out.family(name, "gauge", help);
                        first = false;
                    }
                    out.sample(
                        name,
                        &[("battery", pos), ("name", battery), (label, &key)],
                        v,
                    );
                }
            }
        };
    per_item(
        &mut out,
        "jkmon_battery_cell_voltage_volts",
        "Voltage of each cell (cell 1 first).",
        "cell_voltages_v",
        "cell",
        true,
    );
    per_item(
        &mut out,
        "jkmon_battery_cell_resistance_ohms",
        "Resistance of each cell's wire as the BMS measures it.",
        "cell_resistances_ohm",
        "cell",
        true,
    );
    per_item(
        &mut out,
        "jkmon_battery_temperature_celsius",
        "Temperature of each probe (mos = the BMS's own sensor).",
        "temperatures_c",
        "sensor",
        false,
    );
    per_item(
        &mut out,
        "jkmon_battery_alarm",
        "1 while an alarm of the group is raised.",
        "alarm_groups",
        "group",
        false,
    );
    if let Some(t) = telemetry {
        let links = t.links();
        for (name, help, pick) in [
            (
                "jkmon_frames_decoded_total",
                "Frames that passed their checks and decoded.",
                0,
            ),
            (
                "jkmon_frames_rejected_total",
                "Frames (or bytes) that failed their checks.",
                1,
            ),
            (
                "jkmon_reconnects_total",
                "Retries after a lost connection or a failed attempt.",
                2,
            ),
        ] {
            out.family(name, "counter", help);
            for l in &links {
                let v = [l.frames_decoded, l.frames_rejected, l.reconnects][pick];
                out.sample(name, &[("link", &l.link)], v as f64);
            }
        }
    }
    if let Some(p) = process {
        let metrics = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                Some(p.cpu_s),
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                p.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                p.virtual_bytes,
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                Some(p.start_time_s),
            ),
            (
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                p.max_fds,
            ),
        ];
        for (name, kind, help, v) in metrics {
            if let Some(v) = v {
                out.family(name, kind, help);
                out.sample(name, &[], v);
            }
        }
    }
    out.text
}

/// This process as Linux's `/proc` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub cpu_s: f64,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub start_time_s: f64,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
}

/// Clock ticks per second in `/proc` (USER_HZ, 100 on every Linux architecture jkmon runs on).
const USER_HZ: f64 = 100.0;

impl Process {
    /// Reads `/proc/self`; `None` where there is no `/proc` (not Linux).
    pub fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // the fields after the command name, which may itself hold spaces and parentheses
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 2..)?
            .split_whitespace()
            .collect();
        let tick = |i: usize| fields.get(i)?.parse::<f64>().ok();
        // fields[0] is field 3 of proc(5): utime is 14, stime 15, starttime 22
        let cpu_s = (tick(11)? + tick(12)?) / USER_HZ;
        let boot_s = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        let start_time_s = boot_s + tick(19)? / USER_HZ;
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map(|k| k * 1024.0)
        };
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))?
                    .split_whitespace()
                    .nth(3)?
                    .parse::<f64>()
                    .ok()
            });
        Some(Process {
            cpu_s,
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            start_time_s,
            open_fds,
            max_fds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::read::BatteryView;
    use serde_json::json;

    fn battery(position: usize, name: &str, online: bool) -> BatteryView {
        BatteryView {
            position,
            name: name.into(),
            address: None,
            state: "streaming".into(),
            state_detail: None,
            online,
            taken_at: Some(chrono::Utc::now()),
            age_s: Some(1.0),
            model: None,
            hardware_version: None,
            software_version: None,
            serial_number: None,
            snapshot: Some(json!({
                "total_voltage_v": 53.125,
                "current_a": -4.5,
                "balancing": true,
                "cell_voltages_v": [3.32, 3.321],
                "temperatures_c": {"mos": 24.5, "t1": -3.0},
                "alarm_groups": {"cell": false, "temperature": true},
                "soh_pct": null
            })),
        }
    }

    fn status(batteries: Vec<BatteryView>) -> StatusView {
        StatusView {
            generated_at: chrono::Utc::now(),
            batteries,
            bank: None,
            inverter: None,
        }
    }

    #[test]
    fn values_labels_and_families() {
        let text = render(
            &status(vec![
                battery(1, "Garage \"left\"\\A\nB", true),
                battery(2, "Off", false),
            ]),
            None,
            None,
        );
        let name = r#"name="Garage \"left\"\\A\nB""#;
        assert!(
            text.contains(&format!(
                "jkmon_battery_voltage_volts{{battery=\"1\",{name}}} 53.125\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "jkmon_battery_current_amperes{{battery=\"1\",{name}}} -4.5\n"
        )));
        assert!(text.contains(&format!(
            "jkmon_battery_balancing{{battery=\"1\",{name}}} 1\n"
        )));
        assert!(text.contains(&format!(
            "jkmon_battery_cell_voltage_volts{{battery=\"1\",{name},cell=\"2\"}} 3.321\n"
        )));
        assert!(text.contains(&format!(
            "jkmon_battery_temperature_celsius{{battery=\"1\",{name},sensor=\"t1\"}} -3\n"
        )));
        assert!(text.contains(&format!(
            "jkmon_battery_alarm{{battery=\"1\",{name},group=\"temperature\"}} 1\n"
        )));
        assert!(text.contains("jkmon_battery_online{battery=\"2\",name=\"Off\"} 0\n"));
        // an offline battery shows no values; a value the BMS does not report has no family
        assert!(!text.contains("battery=\"2\",name=\"Off\"} 53.125"));
        assert!(!text.contains("jkmon_battery_soh_percent"));
        // every family once, TYPE after HELP
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut unique = types.clone();
        unique.dedup();
        assert_eq!(types.len(), unique.len());
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn counters_and_process_metrics() {
        let t = Telemetry::per_battery(&["Garage".into()]);
        let p = Process::read().expect("/proc is there on Linux");
        assert!(p.cpu_s >= 0.0 && p.resident_bytes.unwrap() > 0.0);
        assert!(p.start_time_s > 1.6e9, "{p:?}");
        let text = render(&status(vec![]), Some(&t), Some(&p));
        assert!(text.contains("# TYPE jkmon_frames_rejected_total counter\n"));
        assert!(text.contains("jkmon_frames_decoded_total{link=\"Garage\"} 0\n"));
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(text.contains("process_resident_memory_bytes "));
    }
}
