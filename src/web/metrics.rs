//! `/metrics`: the Prometheus text exposition format (version 0.0.4), checked by
//! `promtool check metrics` in the tests.
//!
//! - per battery, labelled only `battery` (its position): `jkmon_battery_info` carries the
//!   name, the BMS's model, hardware and software versions, serial number and link as labels
//!   with the value 1, for joining (`* on(battery) group_left(name) jkmon_battery_info`);
//! - `jkmon_battery_*` values in base units (volts, amperes, watts, coulombs, joules, seconds,
//!   ratios 0–1) from the latest snapshot — the same values as `/api/v1/status`; what only
//!   grows (cycles, cycled charge) is a counter; a battery that is offline shows only
//!   `jkmon_battery_online 0` and the time of its last reading, so graphs gap rather than draw
//!   stale values;
//! - per cell (`cell`, 1-based) and per temperature probe (`sensor`: `mos`, `t1`…);
//! - per alarm group (`group`);
//! - energy: `jkmon_battery_charged_energy_joules_total` and `…_discharged_…` counters for
//!   every battery jkmon has counted (offline too: a counter keeps its value), and the stored
//!   energy and time to empty or full of the online ones;
//! - per link (`battery` where the link is one battery's own, so renaming it keeps its
//!   counters; `link`, the port, for the RS485 bus its packs share): `jkmon_frames_decoded_total`,
//!   `jkmon_frames_rejected_total`, `jkmon_reconnects_total` — only where this process runs the
//!   sessions (`jkmon run`, not `jkmon web` alone);
//! - the standard `process_*` metrics of this process.

use crate::protocol::cell_info::ChargeStatus;
use std::fmt::Write;
use std::sync::Arc;

use super::AppState;
use crate::report::json::SnapshotJson;
use crate::store::energy::EnergyView;
use crate::store::read::{BatteryView, StatusView};
use crate::store::StoreError;
use crate::telemetry::{LinkCounters, SinkCounters, Telemetry};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: read fresh on every scrape (Prometheus sets the pace).
pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, StoreError> {
    let status = state.readers.status(&state.read).await?;
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

/// An online battery's latest reading.
struct Reading<'a> {
    /// The `battery` label: its position.
    battery: &'a str,
    /// When the reading was taken (Unix time, s).
    taken_s: f64,
    s: &'a SnapshotJson,
}

/// A battery family read from one reading.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&Reading) -> Option<f64>,
}

const fn gauge(
    name: &'static str,
    value: fn(&Reading) -> Option<f64>,
    help: &'static str,
) -> Family {
    Family {
        name,
        kind: "gauge",
        help,
        value,
    }
}

const fn counter(
    name: &'static str,
    value: fn(&Reading) -> Option<f64>,
    help: &'static str,
) -> Family {
    Family {
        kind: "counter",
        ..gauge(name, value, help)
    }
}

fn flag(v: Option<bool>) -> Option<f64> {
    v.map(|on| if on { 1.0 } else { 0.0 })
}

/// Coulombs in an ampere-hour.
const COULOMBS_PER_AH: f64 = 3600.0;

/// A percentage as a ratio 0–1.
fn ratio(pct: Option<f64>) -> Option<f64> {
    pct.map(|p| p / 100.0)
}

const FAMILIES: [Family; 23] = [
    gauge(
        "jkmon_battery_voltage_volts",
        |r| Some(r.s.cell_info.total_voltage_v),
        "Pack voltage.",
    ),
    gauge(
        "jkmon_battery_current_amperes",
        |r| r.s.cell_info.current_a,
        "Pack current: positive charging, negative discharging.",
    ),
    gauge(
        "jkmon_battery_power_watts",
        |r| r.s.cell_info.power_w,
        "Pack power, signed like the current.",
    ),
    gauge(
        "jkmon_battery_charge_power_watts",
        |r| r.s.cell_info.charge_power_w,
        "Power into the battery (0 while it discharges).",
    ),
    gauge(
        "jkmon_battery_discharge_power_watts",
        |r| r.s.cell_info.discharge_power_w,
        "Power out of the battery (0 while it charges).",
    ),
    gauge(
        "jkmon_battery_soc_ratio",
        |r| ratio(r.s.soc_effective_pct),
        "State of charge as jkmon shows it, 0-1 (see soc_source in the API).",
    ),
    gauge(
        "jkmon_battery_bms_soc_ratio",
        |r| ratio(r.s.cell_info.soc_pct.map(f64::from)),
        "State of charge as the BMS computes it, 0-1.",
    ),
    gauge(
        "jkmon_battery_soh_ratio",
        |r| ratio(r.s.cell_info.soh_pct.map(f64::from)),
        "State of health reported by the BMS, 0-1.",
    ),
    gauge(
        "jkmon_battery_remaining_charge_coulombs",
        |r| {
            r.s.cell_info
                .remaining_capacity_ah
                .map(|ah| ah * COULOMBS_PER_AH)
        },
        "Remaining capacity (3600 C = 1 Ah).",
    ),
    gauge(
        "jkmon_battery_nominal_charge_coulombs",
        |r| {
            r.s.cell_info
                .nominal_capacity_ah
                .map(|ah| ah * COULOMBS_PER_AH)
        },
        "Full-charge capacity set in the BMS (3600 C = 1 Ah).",
    ),
    counter(
        "jkmon_battery_cycled_charge_coulombs_total",
        |r| {
            r.s.cell_info
                .cycle_capacity_ah
                .map(|ah| ah * COULOMBS_PER_AH)
        },
        "Charge cycled through the battery, as the BMS counts it (3600 C = 1 Ah).",
    ),
    counter(
        "jkmon_battery_cycles_total",
        |r| r.s.cell_info.cycle_count.map(f64::from),
        "Charge cycles counted by the BMS.",
    ),
    gauge(
        "jkmon_battery_cell_min_volts",
        |r| r.s.cell_info.cell_min_v,
        "Lowest cell voltage.",
    ),
    gauge(
        "jkmon_battery_cell_max_volts",
        |r| r.s.cell_info.cell_max_v,
        "Highest cell voltage.",
    ),
    gauge(
        "jkmon_battery_cell_avg_volts",
        |r| r.s.cell_info.cell_avg_v,
        "Average cell voltage.",
    ),
    gauge(
        "jkmon_battery_cell_delta_volts",
        |r| r.s.cell_info.cell_delta_v,
        "Highest minus lowest cell voltage.",
    ),
    gauge(
        "jkmon_battery_balance_current_amperes",
        |r| r.s.cell_info.balance_current_a,
        "Balancer current.",
    ),
    gauge(
        "jkmon_battery_balancing",
        |r| flag(Some(r.s.cell_info.balancing)),
        "1 while the balancer is working.",
    ),
    gauge(
        "jkmon_battery_heating_current_amperes",
        |r| r.s.cell_info.heating_current_a,
        "The heater's current (JK-PB, or while heating).",
    ),
    gauge(
        "jkmon_battery_precharging",
        |r| flag(r.s.cell_info.precharging),
        "1 while the precharge circuit is on.",
    ),
    gauge(
        "jkmon_battery_charging_enabled",
        |r| flag(r.s.cell_info.charging_enabled),
        "1 while the charge switch (MOSFET) is on.",
    ),
    gauge(
        "jkmon_battery_discharging_enabled",
        |r| flag(r.s.cell_info.discharging_enabled),
        "1 while the discharge switch (MOSFET) is on.",
    ),
    gauge(
        "jkmon_battery_start_time_seconds",
        |r| {
            r.s.cell_info
                .uptime_s
                .map(|up| (r.taken_s - f64::from(up)).round())
        },
        "When the BMS started (Unix time): the reading's time minus the BMS's uptime.",
    ),
];

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
    let links = telemetry.map(Telemetry::links).unwrap_or_default();
    let batteries: Vec<(String, &BatteryView)> = status
        .batteries
        .iter()
        .map(|b| (b.position.to_string(), b))
        .collect();
    info(&mut out, &batteries, &links);
    presence(&mut out, &batteries);
    // only batteries that are online show values
    let live: Vec<Reading> = batteries
        .iter()
        .filter(|(_, b)| b.online)
        .filter_map(|(pos, b)| {
            Some(Reading {
                battery: pos.as_str(),
                taken_s: b.taken_at?.timestamp_millis() as f64 / 1000.0,
                s: b.snapshot.as_ref()?,
            })
        })
        .collect();
    families(&mut out, &live);
    per_item(&mut out, &live);
    energy(&mut out, &batteries);
    if let Some(p) = &status.poller {
        inverter(&mut out, p);
    }
    if let Some(t) = telemetry {
        link_counters(&mut out, &links);
        if let Some(sink) = &t.influx {
            influx(&mut out, sink);
        }
    }
    if let Some(p) = process {
        process_metrics(&mut out, p);
    }
    out.text
}

/// A value of the inverter's register map as a metric: its name in base units, the factor to
/// them, and whether it only grows. `None` for what is no measurement (the clock) or is said
/// another way (the mode, the legacy battery current register).
fn inverter_metric(name: &str) -> Option<(String, f64, bool)> {
    const UNITS: [(&str, &str, f64); 8] = [
        ("_va", "_voltamperes", 1.0),
        ("_v", "_volts", 1.0),
        ("_a", "_amperes", 1.0),
        ("_w", "_watts", 1.0),
        ("_hz", "_hertz", 1.0),
        ("_c", "_celsius", 1.0),
        ("_pct", "_ratio", 0.01),
        ("_kwh", "_joules", 3.6e6),
    ];
    if !crate::inverter::registers::is_measurement(name) {
        return None;
    }
    let (stem, unit, factor) = UNITS
        .iter()
        .find_map(|(suffix, unit, factor)| Some((name.strip_suffix(suffix)?, unit, *factor)))?;
    let total = stem.ends_with("_total");
    let stem = stem.strip_suffix("_total").unwrap_or(stem);
    let metric = format!(
        "jkmon_inverter_{stem}{unit}{}",
        if total { "_total" } else { "" }
    );
    Some((metric, factor, total))
}

/// jkmon's own inverter poller: `jkmon_inverter_up`, the working mode's code, the time of the
/// last poll, and, while it is online, every value its register map gives, in base units.
fn inverter(out: &mut Out, p: &crate::store::poller::PollerView) {
    let labels = [("model", p.model.as_str())];
    out.family(
        "jkmon_inverter_up",
        "gauge",
        "1 while jkmon's own inverter poller reads the inverter, else 0.",
    );
    out.sample(
        "jkmon_inverter_up",
        &labels,
        if p.online { 1.0 } else { 0.0 },
    );
    if let Some(at) = p.polled_at {
        out.family(
            "jkmon_inverter_last_poll_timestamp_seconds",
            "gauge",
            "When the inverter was last polled (Unix time).",
        );
        out.sample(
            "jkmon_inverter_last_poll_timestamp_seconds",
            &labels,
            at.timestamp_millis() as f64 / 1000.0,
        );
    }
    if !p.online {
        return;
    }
    if let Some(code) = p.mode_code {
        out.family(
            "jkmon_inverter_mode",
            "gauge",
            "The inverter's working mode (register 201: 2 mains, 3 off-grid, 4 bypass, 6 fault, ...).",
        );
        out.sample("jkmon_inverter_mode", &labels, f64::from(code));
    }
    // absent while unknown (the grid voltage not read this poll): no series says "down"
    if let Some(up) = p.grid.is_up() {
        out.family(
            "jkmon_inverter_grid_up",
            "gauge",
            "1 while the inverter reads a grid voltage, 0 when it reads none; absent when unknown.",
        );
        out.sample(
            "jkmon_inverter_grid_up",
            &labels,
            if up { 1.0 } else { 0.0 },
        );
    }
    for (name, value) in &p.values {
        let Some((metric, factor, total)) = inverter_metric(name) else {
            continue;
        };
        let kind = if total { "counter" } else { "gauge" };
        out.family(
            &metric,
            kind,
            &format!("The inverter's {name}, in base units."),
        );
        out.sample(&metric, &labels, value * factor);
    }
}

/// `jkmon_battery_info`: what identifies each battery, as labels (empty where unknown).
fn info(out: &mut Out, batteries: &[(String, &BatteryView)], links: &[LinkCounters]) {
    out.family(
        "jkmon_battery_info",
        "gauge",
        "Always 1; labels name the battery, its BMS (model, hw, sw, serial) and its link.",
    );
    for (pos, b) in batteries {
        // the link shared with other batteries (an RS485 bus), by which its counters go
        let link = links
            .iter()
            .find(|l| l.batteries.contains(&b.position) && l.batteries.len() > 1)
            .map_or("", |l| l.link.as_str());
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let (model, hw, sw, serial) = (
            text(&b.model),
            text(&b.hardware_version),
            text(&b.software_version),
            text(&b.serial_number),
        );
        let labels = [
            ("battery", pos.as_str()),
            ("name", b.name.as_str()),
            ("model", &model),
            ("hw", &hw),
            ("sw", &sw),
            ("serial", &serial),
            ("link", link),
        ];
        out.sample("jkmon_battery_info", &labels, 1.0);
    }
}

/// Whether each battery is online, and when its latest reading was taken.
fn presence(out: &mut Out, batteries: &[(String, &BatteryView)]) {
    out.family(
        "jkmon_battery_online",
        "gauge",
        "1 while the battery delivers fresh readings.",
    );
    for (pos, b) in batteries {
        let online = if b.online { 1.0 } else { 0.0 };
        out.sample("jkmon_battery_online", &[("battery", pos)], online);
    }
    out.family(
        "jkmon_battery_last_reading_timestamp_seconds",
        "gauge",
        "When the battery's latest reading was taken (Unix time).",
    );
    for (pos, b) in batteries {
        if let Some(t) = b.taken_at {
            let at = t.timestamp_millis() as f64 / 1000.0;
            let name = "jkmon_battery_last_reading_timestamp_seconds";
            out.sample(name, &[("battery", pos)], at);
        }
    }
}

/// One family per [`FAMILIES`] entry that some online battery reports.
fn families(out: &mut Out, live: &[Reading]) {
    for family in &FAMILIES {
        let samples: Vec<(&str, f64)> = live
            .iter()
            .filter_map(|r| Some((r.battery, (family.value)(r)?)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        out.family(family.name, family.kind, family.help);
        for (battery, v) in samples {
            out.sample(family.name, &[("battery", battery)], v);
        }
    }
}

/// Joules in a kilowatt-hour.
const JOULES_PER_KWH: f64 = 3.6e6;

/// An energy family: its name, type, help and value from a battery's energy view.
type EnergyFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&EnergyView) -> Option<f64>,
);

const ENERGY: [EnergyFamily; 5] = [
    (
        "jkmon_battery_charged_energy_joules_total",
        "counter",
        "Energy into the battery since jkmon first read it, integrated from every snapshot.",
        |e| Some(e.charged_kwh * JOULES_PER_KWH),
    ),
    (
        "jkmon_battery_discharged_energy_joules_total",
        "counter",
        "Energy out of the battery since jkmon first read it, integrated from every snapshot.",
        |e| Some(e.discharged_kwh * JOULES_PER_KWH),
    ),
    (
        "jkmon_battery_stored_energy_joules",
        "gauge",
        "Remaining capacity times pack voltage.",
        |e| e.stored_kwh.map(|k| k * JOULES_PER_KWH),
    ),
    (
        "jkmon_battery_time_to_empty_seconds",
        "gauge",
        "Time to empty at the recent average discharging power (absent while idle or charging).",
        |e| e.time_to_empty_s,
    ),
    (
        "jkmon_battery_time_to_full_seconds",
        "gauge",
        "Time to full at the recent average charging power (absent while idle or discharging).",
        |e| e.time_to_full_s,
    ),
];

/// The energy families: counters for every battery with counts, levels for online ones.
fn energy(out: &mut Out, batteries: &[(String, &BatteryView)]) {
    for (name, kind, help, value) in ENERGY {
        let samples: Vec<(&str, f64)> = batteries
            .iter()
            .filter(|(_, b)| kind == "counter" || b.online)
            .filter_map(|(pos, b)| Some((pos.as_str(), value(b.energy.as_ref()?)?)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        out.family(name, kind, help);
        for (pos, v) in samples {
            out.sample(name, &[("battery", pos)], v);
        }
    }
}

/// A family with one sample per item of each battery (a cell, a probe, an alarm group).
struct PerItem {
    name: &'static str,
    help: &'static str,
    /// The item's label.
    label: &'static str,
    items: fn(&SnapshotJson) -> Vec<(String, f64)>,
}

/// `values` labelled 1, 2, … (cell 1 first).
fn numbered(values: &[f64]) -> Vec<(String, f64)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| ((i + 1).to_string(), *v))
        .collect()
}

const PER_ITEM: [PerItem; 6] = [
    PerItem {
        name: "jkmon_battery_cell_voltage_volts",
        help: "Voltage of each cell (cell 1 first).",
        label: "cell",
        items: |s| numbered(&s.cell_info.cell_voltages_v),
    },
    PerItem {
        name: "jkmon_battery_cell_resistance_ohms",
        help: "Resistance of each cell's wire as the BMS measures it.",
        label: "cell",
        items: |s| numbered(&s.cell_info.cell_resistances_ohm),
    },
    PerItem {
        name: "jkmon_battery_temperature_celsius",
        help: "Temperature of each probe (mos = the BMS's own sensor).",
        label: "sensor",
        items: |s| {
            s.cell_info
                .temperatures_c
                .present()
                .map(|(k, t)| (k.to_string(), t))
                .collect()
        },
    },
    PerItem {
        name: "jkmon_battery_charge_status",
        help: "1 for the JK-PB charger's stage (bulk, absorption, float), 0 for the others.",
        label: "status",
        items: |s| {
            let Some(now) = s.cell_info.charge_status else {
                return Vec::new();
            };
            ChargeStatus::ALL
                .iter()
                .map(|st| (st.as_str().to_string(), if *st == now { 1.0 } else { 0.0 }))
                .collect()
        },
    },
    PerItem {
        name: "jkmon_battery_dry_contact_closed",
        help: "1 while the JK-PB's dry contact is closed.",
        label: "contact",
        items: |s| {
            s.cell_info.dry_contacts.map_or_else(Vec::new, |d| {
                vec![
                    ("1".to_string(), if d.dry1 { 1.0 } else { 0.0 }),
                    ("2".to_string(), if d.dry2 { 1.0 } else { 0.0 }),
                ]
            })
        },
    },
    PerItem {
        name: "jkmon_battery_alarm",
        help: "1 while an alarm of the group is raised.",
        label: "group",
        items: |s| {
            s.alarm_groups
                .iter()
                .map(|(g, raised)| (g.to_string(), if *raised { 1.0 } else { 0.0 }))
                .collect()
        },
    },
];

fn per_item(out: &mut Out, live: &[Reading]) {
    for family in &PER_ITEM {
        let mut first = true;
        for r in live {
            for (key, v) in (family.items)(r.s) {
                if first {
                    out.family(family.name, "gauge", family.help);
                    first = false;
                }
                let labels = [("battery", r.battery), (family.label, &key)];
                out.sample(family.name, &labels, v);
            }
        }
    }
}

/// The counters of each link this process runs: labelled `battery` where the link is one
/// battery's own, else `link` (an RS485 bus, named by its port).
fn link_counters(out: &mut Out, links: &[LinkCounters]) {
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
        for l in links {
            let v = [l.frames_decoded, l.frames_rejected, l.reconnects][pick] as f64;
            match l.batteries.as_slice() {
                // keyed by the battery's position, never its name: a renamed battery keeps
                // its counters
                [one] => out.sample(name, &[("battery", &one.to_string())], v),
                _ => out.sample(name, &[("link", &l.link)], v),
            }
        }
    }
}

/// The InfluxDB sink's counters (where `INFLUX_URL` turned it on).
fn influx(out: &mut Out, c: &SinkCounters) {
    let get = SinkCounters::get;
    for (name, kind, help, v) in [
        (
            "jkmon_influx_points_made_total",
            "counter",
            "Points made from snapshots and polls for InfluxDB.",
            get(&c.made),
        ),
        (
            "jkmon_influx_points_written_total",
            "counter",
            "Points InfluxDB took.",
            get(&c.written),
        ),
        (
            "jkmon_influx_points_dropped_total",
            "counter",
            "Points dropped, the oldest first, because the buffer (INFLUX_BUFFER_POINTS) was full.",
            get(&c.dropped),
        ),
        (
            "jkmon_influx_points_rejected_total",
            "counter",
            "Points InfluxDB refused as malformed (not sent again).",
            get(&c.rejected),
        ),
        (
            "jkmon_influx_sent_bytes_total",
            "counter",
            "Bytes of the writes InfluxDB took, as sent (compressed where INFLUX_GZIP is on).",
            get(&c.sent_bytes),
        ),
        (
            "jkmon_influx_failed_writes_total",
            "counter",
            "Writes that failed: InfluxDB away, or refusing the configuration.",
            get(&c.failed_writes),
        ),
        (
            "jkmon_influx_points_waiting",
            "gauge",
            "Points waiting for InfluxDB.",
            get(&c.waiting),
        ),
    ] {
        out.family(name, kind, help);
        out.sample(name, &[], v as f64);
    }
    let last = get(&c.last_written_ms);
    if last > 0 {
        let name = "jkmon_influx_last_write_timestamp_seconds";
        out.family(
            name,
            "gauge",
            "When InfluxDB last took a batch (Unix time).",
        );
        out.sample(name, &[], last as f64 / 1000.0);
    }
}

/// The standard `process_*` metrics.
fn process_metrics(out: &mut Out, p: &Process) {
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
    use crate::report::json::TemperaturesC;

    fn battery(position: usize, name: &str, online: bool) -> BatteryView {
        BatteryView {
            online,
            snapshot: Some({
                let mut s = SnapshotJson::example();
                let c = &mut s.cell_info;
                (c.total_voltage_v, c.current_a) = (53.125, Some(-4.5));
                c.power_w = Some(-239.0625);
                (c.charge_power_w, c.discharge_power_w) = (Some(0.0), Some(239.0625));
                c.balancing = true;
                c.cell_voltages_v = vec![3.32, 3.321];
                c.temperatures_c = TemperaturesC {
                    mos: Some(24.5),
                    t1: Some(-3.0),
                    ..TemperaturesC::default()
                };
                c.soh_pct = None;
                s.alarm_groups = [("cell".into(), false), ("temperature".into(), true)].into();
                s
            }),
            ..BatteryView::example(position, name)
        }
    }

    fn status(batteries: Vec<BatteryView>) -> StatusView {
        StatusView {
            generated_at: chrono::Utc::now(),
            batteries,
            bank: None,
            inverter: None,
            poller: None,
        }
    }

    #[test]
    fn values_in_base_units_labelled_by_position_and_named_once_in_info() {
        let mut first = battery(1, "Garage \"left\"\\A\nB", true);
        first.serial_number = Some("4112345".into());
        first.model = Some("JK_PB2A16S20P".into());
        let text = render(&status(vec![first, battery(2, "Off", false)]), None, None);
        let b1 = r#"{battery="1"}"#;
        for line in [
            format!("jkmon_battery_voltage_volts{b1} 53.125"),
            format!("jkmon_battery_current_amperes{b1} -4.5"),
            format!("jkmon_battery_balancing{b1} 1"),
            // the JK-PB's last values: its stage as a state set, its contacts, its heater
            r#"jkmon_battery_charge_status{battery="1",status="float"} 1"#.into(),
            r#"jkmon_battery_charge_status{battery="1",status="bulk"} 0"#.into(),
            r#"jkmon_battery_dry_contact_closed{battery="1",contact="1"} 1"#.into(),
            r#"jkmon_battery_dry_contact_closed{battery="1",contact="2"} 0"#.into(),
            format!("jkmon_battery_heating_current_amperes{b1} 0.514"),
            format!("jkmon_battery_precharging{b1} 0"),
            // discharging: all of the power is discharge power
            format!("jkmon_battery_charge_power_watts{b1} 0"),
            format!("jkmon_battery_discharge_power_watts{b1} 239.0625"),
            // percentages as ratios, ampere-hours as coulombs
            format!("jkmon_battery_bms_soc_ratio{b1} 0.99"),
            format!("jkmon_battery_nominal_charge_coulombs{b1} 1130400"),
            r#"jkmon_battery_cell_voltage_volts{battery="1",cell="2"} 3.321"#.into(),
            r#"jkmon_battery_temperature_celsius{battery="1",sensor="t1"} -3"#.into(),
            r#"jkmon_battery_alarm{battery="1",group="temperature"} 1"#.into(),
            r#"jkmon_battery_online{battery="2"} 0"#.into(),
            // the name only in the info series, escaped
            r#"jkmon_battery_info{battery="1",name="Garage \"left\"\\A\nB",model="JK_PB2A16S20P",hw="",sw="",serial="4112345",link=""} 1"#.into(),
            r#"jkmon_battery_info{battery="2",name="Off",model="",hw="",sw="",serial="",link=""} 1"#.into(),
        ] {
            assert!(text.contains(&format!("{line}\n")), "no {line} in\n{text}");
        }
        assert_eq!(text.matches("name=").count(), 2, "{text}");
        assert!(text.contains("# TYPE jkmon_battery_cycles_total counter\n"));
        assert!(text.contains("# TYPE jkmon_battery_cycled_charge_coulombs_total counter\n"));
        // the BMS's start: the reading's time minus its uptime, to the second
        let start = text
            .lines()
            .find_map(|l| l.strip_prefix("jkmon_battery_start_time_seconds{battery=\"1\"} "))
            .unwrap()
            .parse::<f64>()
            .unwrap();
        let uptime = f64::from(SnapshotJson::example().cell_info.uptime_s.unwrap());
        let now = chrono::Utc::now().timestamp() as f64;
        assert!((now - uptime - start).abs() <= 2.0, "{start}");
        // an offline battery shows no values; a value the BMS does not report has no family
        assert!(!text.contains("{battery=\"2\"} 53.125"));
        assert!(!text.contains("jkmon_battery_soh_ratio"));
        // every family once, TYPE after HELP
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut unique = types.clone();
        unique.dedup();
        assert_eq!(types.len(), unique.len());
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn energy_counters_in_joules_for_every_counted_battery_levels_only_when_online() {
        let with_energy = |position, name: &str, online| {
            let mut b = battery(position, name, online);
            b.energy = Some(EnergyView {
                charged_kwh: 1.5,
                discharged_kwh: 0.25,
                stored_kwh: Some(4.0),
                time_to_empty_s: Some(7_200.0),
                ..EnergyView::default()
            });
            b
        };
        let text = render(
            &status(vec![with_energy(1, "A", true), with_energy(2, "B", false)]),
            None,
            None,
        );
        assert!(text.contains("# TYPE jkmon_battery_charged_energy_joules_total counter\n"));
        assert!(text.contains("jkmon_battery_charged_energy_joules_total{battery=\"1\"} 5400000\n"));
        assert!(
            text.contains("jkmon_battery_discharged_energy_joules_total{battery=\"2\"} 900000\n"),
            "an offline battery's counter keeps its value: {text}"
        );
        assert!(text.contains("jkmon_battery_stored_energy_joules{battery=\"1\"} 14400000\n"));
        assert!(!text.contains("jkmon_battery_stored_energy_joules{battery=\"2\""));
        assert!(text.contains("jkmon_battery_time_to_empty_seconds{battery=\"1\"} 7200\n"));
        assert!(
            !text.contains("jkmon_battery_time_to_full_seconds"),
            "no value, no family"
        );
    }

    #[test]
    fn counters_and_process_metrics() {
        let t = Telemetry::per_battery(&["Garage".into()]);
        let p = Process::read().expect("/proc is there on Linux");
        assert!(p.cpu_s >= 0.0 && p.resident_bytes.unwrap() > 0.0);
        assert!(p.start_time_s > 1.6e9, "{p:?}");
        let text = render(
            &status(vec![battery(1, "Garage", true)]),
            Some(&t),
            Some(&p),
        );
        assert!(text.contains("# TYPE jkmon_frames_rejected_total counter\n"));
        // a battery's own link: keyed by its position, not its name (a rename keeps the series)
        assert!(
            text.contains("jkmon_frames_decoded_total{battery=\"1\"} 0\n"),
            "{text}"
        );
        assert!(text.contains(",link=\"\"} 1\n"), "{text}");
        let renamed = Telemetry::per_battery(&["Shed".into()]);
        let counters = |t: &Telemetry| -> Vec<String> {
            render(&status(vec![]), Some(t), None)
                .lines()
                .filter(|l| l.starts_with("jkmon_frames") || l.starts_with("jkmon_reconnects"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(counters(&t), counters(&renamed));
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(text.contains("process_resident_memory_bytes "));
        // a bus serves several batteries: the link only
        let bus = Telemetry::shared("RS485 bus on /dev/ttyUSB0".into(), 2);
        let text = render(&status(vec![]), Some(&bus), None);
        assert!(text.contains("jkmon_reconnects_total{link=\"RS485 bus on /dev/ttyUSB0\"} 0\n"));
    }
}
