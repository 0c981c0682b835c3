//! Names of the alarm bits. Two tables: the BLE / RS485 alarm word (§2.3) and the warning word
//! (tag 0x8B) of the serial `4E 57` protocol (§3.3). Names are stable snake_case keys (they are
//! part of the JSON interface); [`label`] gives the text for people.

/// BLE / RS485 alarm word, bit 0 first: u32 at 166 (JK02_32S), u16 at 136 (JK02_24S).
/// Bits 0-23 follow JK's own register map (PDF V1.1, block 0x1200 offset 0xA0); bits 24-28
/// follow esphome-jk-bms, which the PDF does not list. Bits 3 and 4 are named "unused" and
/// "battery fully charged" by esphome; the official names are used here.
pub const BLE_ALARMS: [Option<&str>; 32] = [
    Some("wire_resistance"),
    Some("mosfet_overtemperature"),
    Some("cell_count_mismatch"),
    Some("current_sensor_error"),
    Some("cell_overvoltage"),
    Some("pack_overvoltage"),
    Some("charge_overcurrent"),
    Some("charge_short_circuit"),
    Some("charge_overtemperature"),
    Some("charge_undertemperature"),
    Some("coprocessor_communication_error"),
    Some("cell_undervoltage"),
    Some("pack_undervoltage"),
    Some("discharge_overcurrent"),
    Some("discharge_short_circuit"),
    Some("discharge_overtemperature"),
    Some("charge_mosfet_abnormal"),
    Some("discharge_mosfet_abnormal"),
    Some("gps_disconnected"),
    Some("modify_password_in_time"),
    Some("discharge_on_failed"),
    Some("battery_overtemperature"),
    Some("temperature_sensor_anomaly"),
    Some("parallel_module_anomaly"),
    Some("short_circuit_release_failed"),
    Some("discharge_overcurrent_2"),
    Some("discharge_overcurrent_3"),
    Some("discharge_undertemperature"),
    Some("gps_remote_lock"),
    None,
    None,
    None,
];

/// Serial `4E 57` warning word (tag 0x8B), bit 0 first (§3.3).
pub const SERIAL_WARNINGS: [Option<&str>; 16] = [
    Some("low_capacity"),
    Some("mosfet_overtemperature"),
    Some("charge_overvoltage"),
    Some("discharge_undervoltage"),
    Some("battery_overtemperature"),
    Some("charge_overcurrent"),
    Some("discharge_overcurrent"),
    Some("cell_voltage_difference"),
    Some("box_overtemperature"),
    Some("battery_undertemperature"),
    Some("cell_overvoltage"),
    Some("cell_undervoltage"),
    Some("protection_309_a"),
    Some("protection_309_b"),
    None,
    None,
];

/// Which table an alarm word is read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmTable {
    Ble,
    Serial,
}

/// An alarm word with the table that names its bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alarms {
    pub bits: u32,
    pub table: AlarmTable,
}

impl Alarms {
    pub fn none(table: AlarmTable) -> Alarms {
        Alarms { bits: 0, table }
    }

    /// Names of the raised bits, lowest bit first; an unnamed bit is `bit_N`.
    pub fn names(&self) -> Vec<String> {
        let table: &[Option<&str>] = match self.table {
            AlarmTable::Ble => &BLE_ALARMS,
            AlarmTable::Serial => &SERIAL_WARNINGS,
        };
        (0..32)
            .filter(|bit| self.bits & (1 << bit) != 0)
            .map(|bit| match table.get(bit).copied().flatten() {
                Some(name) => name.to_string(),
                None => format!("bit_{bit}"),
            })
            .collect()
    }
}

/// The alarm groups, in the order they are shown: what an owner checks first when one is raised.
/// Every named bit of both tables belongs to exactly one ([`group`]); MQTT publishes one binary
/// sensor per group.
pub const ALARM_GROUPS: [&str; 6] = ["cell", "pack", "current", "temperature", "mosfet", "system"];

/// The group of an alarm key (a name from [`BLE_ALARMS`] or [`SERIAL_WARNINGS`], or `bit_N`):
/// `cell` (a cell's voltage or the spread), `pack` (pack voltage, capacity), `current`
/// (over-current, short circuit), `temperature`, `mosfet` (a switch that did not switch) or
/// `system` (sensors, wiring, communication, anything unnamed).
pub fn group(key: &str) -> &'static str {
    match key {
        "cell_overvoltage" | "cell_undervoltage" | "cell_voltage_difference" => "cell",
        "pack_overvoltage"
        | "pack_undervoltage"
        | "charge_overvoltage"
        | "discharge_undervoltage"
        | "low_capacity" => "pack",
        "charge_overcurrent"
        | "discharge_overcurrent"
        | "discharge_overcurrent_2"
        | "discharge_overcurrent_3"
        | "charge_short_circuit"
        | "discharge_short_circuit"
        | "short_circuit_release_failed" => "current",
        "mosfet_overtemperature"
        | "charge_overtemperature"
        | "charge_undertemperature"
        | "discharge_overtemperature"
        | "discharge_undertemperature"
        | "battery_overtemperature"
        | "battery_undertemperature"
        | "box_overtemperature"
        | "temperature_sensor_anomaly" => "temperature",
        "charge_mosfet_abnormal" | "discharge_mosfet_abnormal" | "discharge_on_failed" => "mosfet",
        _ => "system",
    }
}

impl Alarms {
    /// Every group of [`ALARM_GROUPS`] with whether any of its alarms is raised.
    pub fn groups(&self) -> std::collections::BTreeMap<&'static str, bool> {
        let raised: Vec<&str> = self.names().iter().map(|n| group(n)).collect();
        ALARM_GROUPS
            .iter()
            .map(|g| (*g, raised.contains(g)))
            .collect()
    }
}

/// The key with underscores as spaces and the first letter capitalised: `cell_overvoltage` →
/// `Cell overvoltage`.
pub fn label(key: &str) -> String {
    let words: Vec<String> = key
        .split('_')
        .enumerate()
        .map(|(i, w)| match w {
            "mosfet" => "MOSFET".into(),
            "gps" => "GPS".into(),
            w if i == 0 => {
                let mut chars = w.chars();
                chars
                    .next()
                    .map(|f| f.to_uppercase().collect::<String>() + chars.as_str())
                    .unwrap_or_default()
            }
            w => w.into(),
        })
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_bit_has_a_deliberate_group() {
        let system = [
            "wire_resistance",
            "cell_count_mismatch",
            "current_sensor_error",
            "coprocessor_communication_error",
            "gps_disconnected",
            "modify_password_in_time",
            "parallel_module_anomaly",
            "gps_remote_lock",
            "protection_309_a",
            "protection_309_b",
        ];
        for name in BLE_ALARMS.iter().chain(SERIAL_WARNINGS.iter()).flatten() {
            let g = group(name);
            assert!(ALARM_GROUPS.contains(&g), "{name}");
            // only the names listed above fall through to `system`
            assert_eq!(g == "system", system.contains(name), "{name} is in {g}");
        }
        assert_eq!(group("bit_30"), "system");
        let a = Alarms {
            bits: (1 << 4) | (1 << 14), // cell overvoltage, discharge short circuit
            table: AlarmTable::Ble,
        };
        let groups = a.groups();
        assert_eq!(groups.len(), ALARM_GROUPS.len());
        let raised: Vec<&str> = groups
            .iter()
            .filter(|(_, on)| **on)
            .map(|(g, _)| *g)
            .collect();
        assert_eq!(raised, ["cell", "current"]);
        assert!(Alarms::none(AlarmTable::Serial)
            .groups()
            .values()
            .all(|on| !on));
    }

    #[test]
    fn observed_alarm_words_name_their_bits() {
        // 0x00090010: bits 4, 16 and 19 on a sensorless lab board (reference §2.3).
        let a = Alarms {
            bits: 0x0009_0010,
            table: AlarmTable::Ble,
        };
        assert_eq!(
            a.names(),
            [
                "cell_overvoltage",
                "charge_mosfet_abnormal",
                "modify_password_in_time"
            ]
        );
        let unnamed = Alarms {
            bits: 1 << 30,
            table: AlarmTable::Ble,
        };
        assert_eq!(unnamed.names(), ["bit_30"]);
        let serial = Alarms {
            bits: 0b1000_0000,
            table: AlarmTable::Serial,
        };
        assert_eq!(serial.names(), ["cell_voltage_difference"]);
        assert_eq!(label("cell_overvoltage"), "Cell overvoltage");
        assert_eq!(label("mosfet"), "MOSFET");
        assert_eq!(label("charge_mosfet_abnormal"), "Charge MOSFET abnormal");
    }
}
