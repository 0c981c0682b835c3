//! InfluxDB line protocol: what a snapshot and an inverter poll become, one line per point.
//! Pure: text in, text out.
//!
//! - `jkmon_battery`, tagged `battery` (its position), `name` and `serial` (once the BMS's
//!   device info told it): every scalar value of the snapshot under its `/api/v1/status` key
//!   (units in the names: `total_voltage_v`, `current_a`, `soc_pct`…), the alarm groups as
//!   `alarm_<group>`, the switches as `switch_<name>`, the dry contacts as `dry_contact_1`/`_2`;
//! - `jkmon_cell`, tagged also `cell` (1-based): `voltage_v`, `resistance_ohm`;
//! - `jkmon_temperature`, tagged also `sensor` (`mos`, `t1`…): `temperature_c`;
//! - `jkmon_inverter`, tagged `model`: every value the poll read (its register map's names, at
//!   their resolution), the working mode and, where the grid voltage was read, `grid_up`.
//!
//! A value the hardware did not report is not written: InfluxDB shows no value, never a 0 or
//! the one before. Each field keeps one type for ever (a whole number in the JSON is an
//! integer here, a fraction a float), as InfluxDB requires within a shard.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::inverter::payload::{grid, Mode};
use crate::inverter::poll::InverterPoll;
use crate::inverter::registers::{at_resolution, is_measurement};
use crate::report::json::SnapshotJson;

/// Keys of the snapshot JSON that are not written as battery fields: the frame's own
/// bookkeeping, and what is written another way (cells, probes, groups, switches, contacts).
const NOT_FIELDS: [&str; 11] = [
    "frame_type",
    "variant",
    "rs485_address",
    "counter",
    "cell_voltages_v",
    "cell_resistances_ohm",
    "temperatures_c",
    "alarms",
    "alarm_groups",
    "switches",
    "dry_contacts",
];

/// One point being written: the measurement and its tags, then fields, then the time.
struct Point {
    text: String,
    fields: usize,
}

impl Point {
    fn new(measurement: &str, tags: &[(&str, &str)]) -> Point {
        let mut text = escape(measurement, &[',', ' ']);
        for (k, v) in tags.iter().filter(|(_, v)| !v.is_empty()) {
            let _ = write!(
                text,
                ",{}={}",
                escape(k, &[',', '=', ' ']),
                escape(v, &[',', '=', ' '])
            );
        }
        Point { text, fields: 0 }
    }

    fn key(&mut self, key: &str) {
        self.text.push(if self.fields == 0 { ' ' } else { ',' });
        self.fields += 1;
        self.text.push_str(&escape(key, &[',', '=', ' ']));
        self.text.push('=');
    }

    /// A float field; NaN and the infinities are no value.
    fn float(&mut self, key: &str, v: f64) {
        if v.is_finite() {
            self.key(key);
            let _ = write!(self.text, "{v}");
        }
    }

    fn int(&mut self, key: &str, v: i64) {
        self.key(key);
        let _ = write!(self.text, "{v}i");
    }

    fn flag(&mut self, key: &str, v: bool) {
        self.key(key);
        self.text.push_str(if v { "true" } else { "false" });
    }

    fn string(&mut self, key: &str, v: &str) {
        self.key(key);
        self.text.push('"');
        self.text.push_str(&escape(v, &['"', '\\']));
        self.text.push('"');
    }

    /// A JSON value as a field of its own type; `null` (not reported) is left out.
    fn json(&mut self, key: &str, v: &Value) {
        match v {
            Value::Bool(b) => self.flag(key, *b),
            Value::Number(n) if n.is_f64() => self.float(key, n.as_f64().unwrap_or(f64::NAN)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => self.int(key, i),
                None => self.float(key, n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => self.string(key, s),
            Value::Null | Value::Array(_) | Value::Object(_) => {}
        }
    }

    /// The line, with its time in milliseconds; `None` without a field (InfluxDB refuses it).
    fn finish(mut self, at: DateTime<Utc>) -> Option<String> {
        if self.fields == 0 {
            return None;
        }
        let _ = write!(self.text, " {}", at.timestamp_millis());
        Some(self.text)
    }
}

/// `s` with every character of `special` (and the backslash before it) escaped; a line break,
/// which no part of a line may hold, becomes a space.
fn escape(s: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            c if special.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Who a battery's points belong to.
#[derive(Debug, Clone, Copy)]
pub struct Battery<'a> {
    /// Its position (1-based), as in `/metrics` and the API.
    pub position: usize,
    pub name: &'a str,
    /// The BMS's serial number, once its device info was read.
    pub serial: Option<&'a str>,
}

/// The lines of one battery snapshot taken `at`: the battery, each cell, each probe.
pub fn battery(who: Battery, snapshot: &SnapshotJson, at: DateTime<Utc>) -> Vec<String> {
    let position = who.position.to_string();
    let tags = [
        ("battery", position.as_str()),
        ("name", who.name),
        ("serial", who.serial.unwrap_or("")),
    ];
    let Ok(Value::Object(json)) = serde_json::to_value(snapshot) else {
        return Vec::new();
    };
    let mut lines = Vec::with_capacity(2 + snapshot.cell_info.cell_count);
    lines.extend(battery_point(&tags, &json).finish(at));
    let info = &snapshot.cell_info;
    let resistances = &info.cell_resistances_ohm;
    for (i, v) in info.cell_voltages_v.iter().enumerate() {
        let cell = (i + 1).to_string();
        let mut p = Point::new("jkmon_cell", &with(&tags, ("cell", &cell)));
        p.float("voltage_v", *v);
        if let Some(r) = resistances.get(i) {
            p.float("resistance_ohm", *r);
        }
        lines.extend(p.finish(at));
    }
    for (sensor, c) in info.temperatures_c.present() {
        let mut p = Point::new("jkmon_temperature", &with(&tags, ("sensor", sensor)));
        p.float("temperature_c", c);
        lines.extend(p.finish(at));
    }
    lines
}

fn with<'a>(tags: &[(&'a str, &'a str)], more: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
    let mut all = tags.to_vec();
    all.push(more);
    all
}

/// The `jkmon_battery` point: every scalar of the snapshot JSON, and its groups and switches.
fn battery_point(tags: &[(&str, &str)], json: &Map<String, Value>) -> Point {
    let mut p = Point::new("jkmon_battery", tags);
    for (key, value) in json
        .iter()
        .filter(|(k, _)| !NOT_FIELDS.contains(&k.as_str()))
    {
        p.json(key, value);
    }
    if let Some(Value::Array(alarms)) = json.get("alarms") {
        let names: Vec<&str> = alarms.iter().filter_map(Value::as_str).collect();
        p.string("alarms", &names.join(", "));
    }
    for (object, prefix) in [("alarm_groups", "alarm_"), ("switches", "switch_")] {
        if let Some(Value::Object(map)) = json.get(object) {
            for (k, v) in map {
                p.json(&format!("{prefix}{k}"), v);
            }
        }
    }
    if let Some(Value::Object(contacts)) = json.get("dry_contacts") {
        for (k, v) in contacts {
            p.json(&k.replace("dry", "dry_contact_"), v);
        }
    }
    p
}

/// The `jkmon_inverter` point of one poll; `None` when the poll read nothing (a gap).
pub fn inverter(poll: &InverterPoll) -> Option<String> {
    let mut p = Point::new("jkmon_inverter", &[("model", poll.model.key)]);
    for (name, v) in at_resolution(poll.model, &poll.values) {
        if is_measurement(name) {
            p.float(name, v);
        }
    }
    if p.fields == 0 {
        return None; // a poll whose every block failed said nothing, not even the mode
    }
    if let Some(mode) = poll.mode {
        p.string("mode", &mode.describe());
        p.int("mode_code", i64::from(mode_code(mode)));
    }
    if let Some(up) = grid(poll.mode, poll.values.get("grid_voltage_v").copied()).is_up() {
        p.flag("grid_up", up);
    }
    p.finish(poll.at)
}

fn mode_code(mode: Mode) -> u16 {
    match mode {
        Mode::PowerOn => 0,
        Mode::Standby => 1,
        Mode::Mains => 2,
        Mode::OffGrid => 3,
        Mode::Bypass => 4,
        Mode::Charging => 5,
        Mode::Fault => 6,
        Mode::Other(n) => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_765_000_000_123).unwrap()
    }

    /// The fields of a line: between the first unescaped space and the last space, split on
    /// the commas outside quotes.
    fn fields(line: &str) -> Vec<(String, String)> {
        let (mut out, mut part) = (Vec::new(), String::new());
        let (mut quoted, mut escaped, mut started) = (false, false, false);
        let end = line.rfind(' ').unwrap();
        for c in line[..end].chars() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = !quoted,
                ' ' if !quoted && !started => {
                    started = true;
                    continue;
                }
                ',' if !quoted && started => {
                    out.push(std::mem::take(&mut part));
                    continue;
                }
                _ => {}
            }
            if started {
                part.push(c);
            }
        }
        out.push(part);
        out.iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn names_tags_and_strings_are_escaped() {
        let mut p = Point::new("m x", &[("name", "Garage, left=1"), ("serial", "")]);
        p.string("s", "say \"hi\" \\ there\nnow");
        assert_eq!(
            p.finish(at()).unwrap(),
            "m\\ x,name=Garage\\,\\ left\\=1 s=\"say \\\"hi\\\" \\\\ there now\" 1765000000123"
        );
    }

    #[test]
    fn a_point_without_a_value_is_no_line() {
        let mut p = Point::new("m", &[]);
        p.float("nan", f64::NAN);
        p.json("unknown", &Value::Null);
        assert_eq!(p.finish(at()), None);
    }

    #[test]
    fn a_snapshot_gives_the_battery_every_cell_and_every_probe() {
        let s = SnapshotJson::example();
        let who = Battery {
            position: 2,
            name: "Shed",
            serial: Some("4022"),
        };
        let lines = battery(who, &s, at());
        let info = &s.cell_info;
        let probes = info.temperatures_c.present().count();
        assert_eq!(lines.len(), 1 + info.cell_count + probes, "{lines:#?}");
        assert!(lines[0].starts_with("jkmon_battery,battery=2,name=Shed,serial=4022 "));
        let f = fields(&lines[0]);
        let get = |k: &str| f.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("total_voltage_v").unwrap().parse::<f64>().unwrap(),
            info.total_voltage_v
        );
        // whole numbers stay integers, fractions floats, flags booleans
        assert_eq!(
            get("cycle_count"),
            Some(&*format!("{}i", info.cycle_count.unwrap()))
        );
        assert_eq!(
            get("balancing"),
            Some(if info.balancing { "true" } else { "false" })
        );
        assert!(get("alarm_cell").is_some(), "{f:?}");
        assert_eq!(get("frame_type"), None);
        assert!(
            lines[1].starts_with("jkmon_cell,battery=2,name=Shed,serial=4022,cell=1 voltage_v=")
        );
        assert!(lines.last().unwrap().contains("temperature_c="));
        assert!(lines.iter().all(|l| l.ends_with(" 1765000000123")));
    }

    #[test]
    fn what_the_bms_did_not_report_is_not_written() {
        let mut s = SnapshotJson::example();
        s.cell_info.current_a = None;
        s.cell_info.soh_pct = None;
        let who = Battery {
            position: 1,
            name: "B",
            serial: None,
        };
        let line = &battery(who, &s, at())[0];
        assert!(
            line.starts_with("jkmon_battery,battery=1,name=B "),
            "{line}"
        );
        let f = fields(line);
        assert!(
            !f.iter().any(|(k, _)| k == "current_a" || k == "soh_pct"),
            "{f:?}"
        );
    }

    fn poll(values: &[(&'static str, f64)]) -> InverterPoll {
        use crate::inverter::registers::SMG_II_11K;
        let values: crate::inverter::registers::Values = values.iter().copied().collect();
        InverterPoll {
            model: &SMG_II_11K,
            at: at(),
            mode: crate::inverter::payload::mode(&values),
            values,
            row: Ok(String::new()),
            errors: Vec::new(),
            took: std::time::Duration::ZERO,
            state: crate::inverter::poll::InverterState::Online,
        }
    }

    #[test]
    fn an_inverter_poll_writes_what_it_read_and_the_grid_only_when_its_voltage_was_read() {
        let line = inverter(&poll(&[
            ("operating_mode", 3.0),
            ("grid_voltage_v", 231.70000000000002),
            ("pv_power_w", 1_200.0),
        ]))
        .unwrap();
        let f = fields(&line);
        let get = |k: &str| f.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("grid_voltage_v"),
            Some("231.7"),
            "at the register's resolution"
        );
        assert_eq!(get("mode"), Some("\"off-grid (battery)\""));
        assert_eq!(get("mode_code"), Some("3i"));
        assert_eq!(get("grid_up"), Some("true"));
        assert_eq!(get("operating_mode"), None, "said as the mode");
        // the block with the grid voltage not read: no grid, no zero
        let line = inverter(&poll(&[("pv_power_w", 1_200.0)])).unwrap();
        assert!(!line.contains("grid"), "{line}");
        // nothing read: no point at all, a gap
        assert_eq!(inverter(&poll(&[])), None);
    }
}
