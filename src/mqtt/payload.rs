//! The MQTT payloads of one snapshot. Pure.

use serde_json::{json, Map, Value};

use chrono::{DateTime, Local, Timelike};

use crate::battery::Snapshot;
use crate::report::json::{DeviceInfoJson, SnapshotJson};
use crate::store::energy::{Counters, EnergyView};

/// Home Assistant keeps at most this many characters of a state.
pub const HA_STATE_MAX: usize = 255;

/// The state: the JSON of `jkmon read --json`, and for Home Assistant
/// - `alarms_text`: the active alarms in words, within [`HA_STATE_MAX`] characters;
/// - `bms_started_at`: when the BMS started (`now` less its uptime, to the minute), the
///   timestamp Home Assistant wants rather than a count of seconds;
/// - with the battery's counters, an `energy` object (`/api/v1/status`'s: kWh in and out,
///   today's, stored energy, time left — with no time left for a battery that is not `online`).
pub fn state(
    snapshot: &Snapshot,
    energy: Option<&Counters>,
    now: DateTime<Local>,
    online: bool,
) -> Value {
    let json = SnapshotJson::new(snapshot);
    let mut state = serde_json::to_value(&json).unwrap_or(Value::Null);
    let Some(map) = state.as_object_mut() else {
        return state;
    };
    map.insert(
        "alarms_text".into(),
        Value::from(alarms_text(&json.cell_info.alarms)),
    );
    if let Some(up) = json.cell_info.uptime_s {
        let started = now - chrono::Duration::seconds(i64::from(up));
        if let Some(minute) = started.with_second(0).and_then(|t| t.with_nanosecond(0)) {
            map.insert(
                "bms_started_at".into(),
                Value::from(minute.to_utc().to_rfc3339()),
            );
        }
    }
    if let Some(c) = energy {
        let view = EnergyView::new(c, now.date_naive(), Some(&json), online);
        map.insert(
            "energy".into(),
            serde_json::to_value(view).unwrap_or(Value::Null),
        );
    }
    state
}

/// Adds what `state` reports to `reported`, the union of every state of a battery so far: each
/// key with its newest value that was not null (objects key by key; an array at its longest).
/// Discovery is built from it, so an entity once announced stays when a later frame lacks its
/// value — and [`fill_unreported`] makes that value `null`, which Home Assistant shows as
/// unknown.
pub fn remember(reported: &mut Value, state: &Value) {
    let (Some(known), Some(now)) = (reported.as_object_mut(), state.as_object()) else {
        if !state.is_null() {
            *reported = state.clone();
        }
        return;
    };
    for (key, v) in now {
        match (known.get_mut(key), v) {
            (Some(old @ Value::Object(_)), Value::Object(_)) => remember(old, v),
            (Some(Value::Array(old)), Value::Array(new)) if new.len() < old.len() => {
                old[..new.len()].clone_from_slice(new);
            }
            (Some(_), Value::Null) => {}
            _ => _ = known.insert(key.clone(), v.clone()),
        }
    }
}

/// `state` with every key `reported` has: a key this state lacks is `null` (an object's keys
/// each null, an array's missing elements null), so every template finds its key and shows
/// unknown rather than the previous value.
pub fn fill_unreported(state: &mut Value, reported: &Value) {
    let (Some(out), Some(known)) = (state.as_object_mut(), reported.as_object()) else {
        return;
    };
    for (key, shape) in known {
        match (out.get_mut(key), shape) {
            (Some(v @ Value::Object(_)), Value::Object(_)) => fill_unreported(v, shape),
            // an object reported before and null now: each of its keys null, so a template
            // that reads one finds it (and shows unknown, never "off")
            (Some(v @ Value::Null), Value::Object(_)) => *v = nulls(shape),
            (Some(Value::Array(a)), Value::Array(all)) => {
                a.resize(a.len().max(all.len()), Value::Null);
            }
            (Some(_), _) => {}
            (None, _) => _ = out.insert(key.clone(), nulls(shape)),
        }
    }
}

/// `shape` with every leaf null.
fn nulls(shape: &Value) -> Value {
    match shape {
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), nulls(v))).collect()),
        Value::Array(a) => Value::Array(vec![Value::Null; a.len()]),
        _ => Value::Null,
    }
}

/// `cell undervoltage, charge overcurrent`, or `none`; alarms that do not fit in
/// [`HA_STATE_MAX`] characters are counted at the end (`… (+3 more)`).
pub fn alarms_text(alarms: &[String]) -> String {
    if alarms.is_empty() {
        return "none".into();
    }
    let words: Vec<String> = alarms.iter().map(|a| a.replace('_', " ")).collect();
    let all = words.join(", ");
    if all.chars().count() <= HA_STATE_MAX {
        return all;
    }
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        let more = format!(" … (+{} more)", words.len() - i);
        let next = if out.is_empty() {
            w.clone()
        } else {
            format!("{out}, {w}")
        };
        let rest = words.len() - i - 1;
        let tail = if rest == 0 { 0 } else { more.chars().count() };
        if next.chars().count() + tail > HA_STATE_MAX {
            return format!("{out}{more}");
        }
        out = next;
    }
    out
}

/// Who the BMS is (model, versions, serial number, uptime; never its passcodes), when it said.
pub fn device(snapshot: &Snapshot) -> Option<Value> {
    let info = snapshot.device_info.as_ref()?;
    serde_json::to_value(DeviceInfoJson::new(info, snapshot.cell_info.variant, None)).ok()
}

/// NodeJKBMS's `protectionStatus` keys, each with the jkmon alarm keys (of either table) that
/// set it.
const NODEJKBMS_PROTECTIONS: [(&str, &[&str]); 12] = [
    ("lowCapacity", &["low_capacity"]),
    ("bmsOvertemp", &["mosfet_overtemperature"]),
    ("packOvervolt", &["charge_overvoltage", "pack_overvoltage"]),
    (
        "packUndervolt",
        &["discharge_undervoltage", "pack_undervoltage"],
    ),
    (
        "packOvertemp",
        &[
            "battery_overtemperature",
            "charge_overtemperature",
            "discharge_overtemperature",
        ],
    ),
    ("chargeOvercurrent", &["charge_overcurrent"]),
    (
        "dischargeOvercurrent",
        &[
            "discharge_overcurrent",
            "discharge_overcurrent_2",
            "discharge_overcurrent_3",
        ],
    ),
    ("cellCurrentDifference", &["cell_voltage_difference"]),
    ("packOvertemp2", &["box_overtemperature"]),
    (
        "packUndertemp",
        &[
            "battery_undertemperature",
            "charge_undertemperature",
            "discharge_undertemperature",
        ],
    ),
    ("singleCellOvervolt", &["cell_overvoltage"]),
    ("singleCellUndervolt", &["cell_undervoltage"]),
];

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.into(), v);
    }
}

/// NodeJKBMS's `<topic>/pack`: its key names, in jkmon's units (volts, amps, amp-hours, °C).
/// Values the BMS does not report are left out.
pub fn nodejkbms_pack(snapshot: &Snapshot) -> Value {
    let c = &snapshot.cell_info;
    let j = SnapshotJson::new(snapshot).cell_info;
    let mut m = Map::new();
    m.insert("packV".into(), json!(j.total_voltage_v));
    put(&mut m, "packA", j.current_a.map(|v| json!(v)));
    let balance = j.remaining_capacity_ah.or_else(|| {
        // NodeJKBMS's own estimate when the BMS does not say
        Some((j.nominal_capacity_ah? * f64::from(j.soc_pct?) / 100.0).floor())
    });
    put(&mut m, "packBalCap", balance.map(|v| json!(v)));
    put(
        &mut m,
        "packRateCap",
        j.nominal_capacity_ah.map(|v| json!(v)),
    );
    put(
        &mut m,
        "packCycleCap",
        j.cycle_capacity_ah.map(|v| json!(v)),
    );
    m.insert("packNumberOfCells".into(), json!(j.cell_count));
    let raised = c.alarms.names();
    let protections: Map<String, Value> = NODEJKBMS_PROTECTIONS
        .iter()
        .map(|(key, ours)| {
            let on = raised.iter().any(|r| ours.contains(&r.as_str()));
            ((*key).to_string(), json!(on))
        })
        .collect();
    m.insert("protectionStatus".into(), Value::Object(protections));
    put(&mut m, "packNumberCycles", j.cycle_count.map(|v| json!(v)));
    m.insert(
        "tempSensorCount".into(),
        json!(j.temperatures_c.present().count()),
    );
    // NodeJKBMS's NTC0 is the BMS's own (MOSFET) sensor, NTC1… the battery probes
    let mut ntc = Map::new();
    let sensors = std::iter::once(j.temperatures_c.mos).chain(j.temperatures_c.probes());
    for (i, t) in sensors.enumerate() {
        if let Some(t) = t {
            ntc.insert(format!("NTC{i}"), json!(t));
        }
    }
    m.insert("tempSensorValues".into(), Value::Object(ntc));
    put(
        &mut m,
        "bmsSWVersion",
        snapshot
            .device_info
            .as_ref()
            .map(|d| json!(d.software_version)),
    );
    put(&mut m, "packSOC", j.soc_pct.map(|v| json!(v)));
    let mut fets = Map::new();
    put(&mut fets, "charging", j.charging_enabled.map(|v| json!(v)));
    put(
        &mut fets,
        "discharging",
        j.discharging_enabled.map(|v| json!(v)),
    );
    fets.insert("balancing".into(), json!(j.balancing));
    m.insert("FETStatus".into(), Value::Object(fets));
    put(
        &mut m,
        "balancerSwitch",
        snapshot
            .settings
            .as_ref()
            .and_then(|s| s.balancer_switch)
            .map(|on| json!(u8::from(on))),
    );
    put(&mut m, "bmsOnMinutes", j.uptime_s.map(|s| json!(s / 60)));
    put(
        &mut m,
        "userData",
        snapshot.device_info.as_ref().map(|d| json!(d.user_data)),
    );
    Value::Object(m)
}

/// NodeJKBMS's `<topic>/cells`: `cell0mV` (whole millivolts) and `cell0V` for every cell, the
/// first cell as 0.
pub fn nodejkbms_cells(snapshot: &Snapshot) -> Value {
    let mut m = Map::new();
    for (i, uv) in snapshot.cell_info.cell_voltages_uv.iter().enumerate() {
        let mv = (f64::from(*uv) / 1000.0).round();
        m.insert(format!("cell{i}mV"), json!(mv as u32));
        m.insert(format!("cell{i}V"), json!(f64::from(*uv) / 1_000_000.0));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_once_reported_and_now_missing_is_null_not_gone() {
        let mut reported = Value::Null;
        let first = json!({"soc_pct": 50, "temperatures_c": {"mos": 20.0, "t1": 18.5},
                           "cell_voltages_v": [3.3, 3.31, 3.29], "switches": {"charging": true}});
        remember(&mut reported, &first);
        // a frame without T1, with two cells, without the settings frame's switches, and
        // without a SOC
        let mut later = json!({"soc_pct": null, "temperatures_c": {"mos": 21.0},
                               "cell_voltages_v": [3.3, 3.32]});
        remember(&mut reported, &later);
        fill_unreported(&mut later, &reported);
        assert_eq!(
            later,
            json!({"soc_pct": null, "temperatures_c": {"mos": 21.0, "t1": null},
                   "cell_voltages_v": [3.3, 3.32, null], "switches": {"charging": null}})
        );
        // what discovery is built from keeps the newest value reported of each
        assert_eq!(reported["soc_pct"], 50);
        assert_eq!(reported["temperatures_c"]["mos"], 21.0);
        assert_eq!(reported["temperatures_c"]["t1"], 18.5);
        assert_eq!(reported["cell_voltages_v"].as_array().unwrap().len(), 3);
    }
    use crate::battery::SocSource;
    use crate::protocol::alarms::{AlarmTable, Alarms};
    use crate::protocol::CellInfo;

    fn snapshot(cells: CellInfo) -> Snapshot {
        Snapshot {
            soc_effective_pct: cells.soc_pct.map(f64::from),
            soc_source: SocSource::Bms,
            cell_info: cells,
            device_info: None,
            settings: None,
        }
    }

    #[test]
    fn alarms_read_as_words_and_fit_home_assistants_255_characters() {
        assert_eq!(alarms_text(&[]), "none");
        assert_eq!(
            alarms_text(&["cell_undervoltage".into(), "charge_overcurrent".into()]),
            "cell undervoltage, charge overcurrent"
        );
        let many: Vec<String> = crate::protocol::alarms::ALARM_GROUPS
            .iter()
            .flat_map(|_| {
                [
                    "discharge_overcurrent_2",
                    "battery_undertemperature",
                    "cell_voltage_difference",
                ]
            })
            .map(String::from)
            .collect();
        assert!(many.len() >= 11);
        let text = alarms_text(&many);
        assert!(text.chars().count() <= HA_STATE_MAX, "{}", text.len());
        assert!(text.starts_with("discharge overcurrent 2, "), "{text}");
        let shown = text.matches(", ").count() + 1;
        assert!(
            text.ends_with(&format!("(+{} more)", many.len() - shown)),
            "{text}"
        );
        assert!(!text.contains('_'));
    }

    #[test]
    fn the_bms_start_is_a_timestamp_to_the_minute() {
        let mut c = CellInfo::example();
        c.uptime_s = Some(3 * 86_400 + 125);
        let now: DateTime<Local> = "2026-11-27T12:30:40Z"
            .parse::<DateTime<chrono::Utc>>()
            .unwrap()
            .into();
        let v = state(&snapshot(c), None, now, true);
        assert_eq!(v["bms_started_at"], "2026-11-24T12:28:00+00:00");
    }

    #[test]
    fn the_state_is_the_json_of_jkmon_read() {
        let s = snapshot(CellInfo::example());
        let v = state(&s, None, chrono::Local::now(), true);
        let read = serde_json::to_value(SnapshotJson::new(&s)).unwrap();
        for (k, want) in read.as_object().unwrap() {
            assert_eq!(&v[k], want, "{k}: same fields, same values");
        }
        let extra: Vec<&String> = v
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| read.get(k.as_str()).is_none())
            .collect();
        assert_eq!(
            extra,
            ["alarms_text", "bms_started_at"],
            "and Home Assistant's two"
        );
        assert_eq!(v["cell_count"], 4);
        assert!(v["alarm_groups"]["cell"].is_boolean());
        assert!(device(&s).is_none());
    }

    #[test]
    fn nodejkbms_payloads_use_its_names() {
        let mut c = CellInfo::example();
        c.alarms = Alarms {
            bits: (1 << 4) | (1 << 15), // cell overvoltage, discharge overtemperature
            table: AlarmTable::Ble,
        };
        let s = snapshot(c.clone());
        let pack = nodejkbms_pack(&s);
        assert_eq!(pack["packV"], f64::from(c.total_voltage_mv) / 1000.0);
        assert_eq!(pack["packNumberOfCells"], c.cell_voltages_uv.len());
        assert_eq!(pack["protectionStatus"]["singleCellOvervolt"], true);
        assert_eq!(pack["protectionStatus"]["packOvertemp"], true);
        assert_eq!(pack["protectionStatus"]["packUndertemp"], false);
        assert_eq!(
            pack["protectionStatus"].as_object().unwrap().len(),
            12,
            "every NodeJKBMS protection key"
        );
        assert_eq!(pack["FETStatus"]["charging"], c.charging_enabled.unwrap());
        let t = c.temperatures.mos_dc.unwrap();
        assert_eq!(pack["tempSensorValues"]["NTC0"], f64::from(t) / 10.0);
        let cells = nodejkbms_cells(&s);
        let first = c.cell_voltages_uv[0];
        assert_eq!(cells["cell0mV"], first / 1000);
        assert_eq!(cells["cell0V"], f64::from(first) / 1e6);
        assert_eq!(
            cells.as_object().unwrap().len(),
            2 * c.cell_voltages_uv.len()
        );
    }
}
