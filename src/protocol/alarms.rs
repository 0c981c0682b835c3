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

/// The key with underscores as spaces and the first letter capitalised: `cell_overvoltage` →
/// `Cell overvoltage`.
pub fn label(key: &str) -> String {
    let text = key.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
