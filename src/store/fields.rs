//! The readings keys of one battery: what the inverter monitor's readers (its dashboard, its
//! bot, people's scripts) expect in a `readings` payload, named and formatted exactly as the
//! Python monitor wrote them. Pure: a snapshot in, a JSON object out.
//!
//! | key | value |
//! |---|---|
//! | `battery_voltage` | pack voltage, V, `"%.1f"` |
//! | `battery_current` | A, `"%.1f"`, + charging / − discharging (the BMS's sign) |
//! | `battery_soc` | %, `"%.0f"` (the SOC jkmon shows: curve or BMS, see `SOC_SOURCE`) |
//! | `battery_power` | V·I, W, `"%.0f"`, signed like the current |
//! | `temperature` | °C, `"%.0f"`: the first battery sensor, else the MOSFET sensor |
//! | `bms_cell_count` | integer |
//! | `bms_cell_min_v`, `bms_cell_max_v`, `bms_cell_delta_v` | V, `"%.3f"` |
//! | `bms_name`, `bms_address` | the configured name; the address when there is one |
//! | `bms_updated_at` | when the snapshot was taken (ISO 8601, local time with its offset) |
//!
//! Battery 1's keys carry no prefix; battery N ≥ 2 prefixes every key with `batteryN_`. A value
//! the BMS does not report (JK04 has no current) is left out rather than written as a guess.
//! Rust's `{:.N}` rounds exactly as Python's `%.Nf` (both correctly rounded, ties to even, and
//! `-0` for a small negative), so a value reads the same as the Python monitor would write it.

use serde_json::{Map, Value};

use crate::battery::Snapshot;

/// `""` for battery 1, `"batteryN_"` for N ≥ 2 (`position` is 1-based).
pub fn prefix(position: usize) -> String {
    if position <= 1 {
        String::new()
    } else {
        format!("battery{position}_")
    }
}

/// The keys of one battery for a readings payload.
pub fn readings_fields(
    position: usize,
    name: &str,
    address: Option<&str>,
    snapshot: &Snapshot,
    taken_at: chrono::DateTime<chrono::Local>,
) -> Map<String, Value> {
    let p = prefix(position);
    let c = &snapshot.cell_info;
    let mut m = Map::new();
    let mut put = |key: &str, v: Value| {
        m.insert(format!("{p}{key}"), v);
    };
    let text = |s: String| Value::String(s);
    let volts = f64::from(c.total_voltage_mv) / 1000.0;
    put("battery_voltage", text(format!("{volts:.1}")));
    if let Some(ma) = c.current_ma {
        let amps = f64::from(ma) / 1000.0;
        put("battery_current", text(format!("{amps:.1}")));
        put("battery_power", text(format!("{:.0}", volts * amps)));
    }
    if let Some(soc) = snapshot.soc_effective_pct {
        put("battery_soc", text(format!("{soc:.0}")));
    }
    if let Some(dc) = battery_temperature_dc(snapshot) {
        put("temperature", text(format!("{:.0}", f64::from(dc) / 10.0)));
    }
    put("bms_cell_count", Value::from(c.cell_count()));
    if let Some(s) = c.stats() {
        let v = |uv: u32| text(format!("{:.3}", f64::from(uv) / 1e6));
        put("bms_cell_min_v", v(s.min_uv));
        put("bms_cell_max_v", v(s.max_uv));
        put("bms_cell_delta_v", v(s.delta_uv));
    }
    put("bms_name", text(name.to_string()));
    if let Some(a) = address {
        put("bms_address", text(a.to_string()));
    }
    put(
        "bms_updated_at",
        text(taken_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)),
    );
    m
}

/// The temperature shown as the battery's: T1, else the first present sensor, else the MOSFET.
pub fn battery_temperature_dc(snapshot: &Snapshot) -> Option<i16> {
    let t = &snapshot.cell_info.temperatures;
    t.sensors_dc.iter().flatten().next().copied().or(t.mos_dc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::battery::soc::{estimator, SocSource, VoltageCurve};
    use crate::protocol::cell_info::{encode_jk02, JK02_32S};

    fn snapshot(current_ma: i32, cells_mv: &[u16]) -> Snapshot {
        let mut c = crate::protocol::CellInfo::example();
        c.cell_voltages_uv = cells_mv.iter().map(|mv| u32::from(*mv) * 1000).collect();
        c.cell_resistances_uohm = vec![0; cells_mv.len()];
        c.total_voltage_mv = cells_mv.iter().map(|v| u32::from(*v)).sum();
        c.current_ma = Some(current_ma);
        c.temperatures.sensors_dc = [Some(185), Some(190), None, None, None];
        c.soc_pct = Some(85);
        let frame = encode_jk02(&c, &JK02_32S);
        let c = crate::protocol::cell_info::decode(&frame, None).unwrap();
        Snapshot::new(
            c,
            None,
            None,
            estimator(SocSource::Bms, &VoltageCurve::default()).as_ref(),
        )
    }

    fn at() -> chrono::DateTime<chrono::Local> {
        chrono::DateTime::parse_from_rfc3339("2026-01-16T21:32:00+02:00")
            .unwrap()
            .with_timezone(&chrono::Local)
    }

    #[test]
    fn battery_one_is_unprefixed_and_formatted_like_the_python_monitor() {
        // 16 cells: 15 × 3.287 V + 3.295 V = 52.600 V; +5.25 A → "5.2" (ties to even like %.1f).
        let mut cells = [3287u16; 16];
        cells[3] = 3295;
        let s = snapshot(5250, &cells);
        let f = readings_fields(1, "JK_24v_1", Some("C8:47:80:12:34:56"), &s, at());
        assert_eq!(f["battery_voltage"], "52.6");
        assert_eq!(f["battery_current"], "5.2");
        assert_eq!(f["battery_power"], format!("{:.0}", 52.6 * 5.25));
        assert_eq!(f["battery_soc"], "85");
        assert_eq!(f["temperature"], "18"); // 18.5 → 18, ties to even like %.0f
        assert_eq!(f["bms_cell_count"], 16);
        assert_eq!(f["bms_cell_min_v"], "3.287");
        assert_eq!(f["bms_cell_max_v"], "3.295");
        assert_eq!(f["bms_cell_delta_v"], "0.008");
        assert_eq!(f["bms_name"], "JK_24v_1");
        assert_eq!(f["bms_address"], "C8:47:80:12:34:56");
        assert!(f["bms_updated_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-16T"));
    }

    #[test]
    fn battery_two_and_up_are_prefixed_and_an_absent_address_is_left_out() {
        let s = snapshot(-12_340, &[3300; 8]);
        let f = readings_fields(3, "Shed", None, &s, at());
        assert_eq!(f["battery3_battery_current"], "-12.3");
        assert_eq!(f["battery3_battery_voltage"], "26.4");
        assert!(f.keys().all(|k| k.starts_with("battery3_")));
        assert!(!f.contains_key("battery3_bms_address"));
        assert_eq!(prefix(1), "");
        assert_eq!(prefix(2), "battery2_");
    }
}
