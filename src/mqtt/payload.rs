//! The MQTT payloads of one snapshot. Pure.

use serde_json::{json, Map, Value};

use chrono::NaiveDate;

use crate::battery::Snapshot;
use crate::report::json::{DeviceInfoJson, SnapshotJson};
use crate::store::energy::{Counters, EnergyView};

/// The state: the JSON of `jkmon read --json`, and with the battery's counters an `energy`
/// object (`/api/v1/status`'s: kWh in and out, today's, stored energy, time left — as of
/// `today`, and with no time left for a battery that is not `online`).
pub fn state(
    snapshot: &Snapshot,
    energy: Option<&Counters>,
    today: NaiveDate,
    online: bool,
) -> Value {
    let json = SnapshotJson::new(snapshot);
    let mut state = serde_json::to_value(&json).unwrap_or(Value::Null);
    if let (Some(c), Some(map)) = (energy, state.as_object_mut()) {
        let view = EnergyView::new(c, today, Some(&json), online);
        map.insert(
            "energy".into(),
            serde_json::to_value(view).unwrap_or(Value::Null),
        );
    }
    state
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
    fn the_state_is_the_json_of_jkmon_read() {
        let s = snapshot(CellInfo::example());
        let v = state(&s, None, chrono::Local::now().date_naive(), true);
        assert_eq!(
            v,
            serde_json::to_value(SnapshotJson::new(&s)).unwrap(),
            "same fields, same values"
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
