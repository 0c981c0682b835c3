//! The JSON shape of every decoded frame. Field names are part of jkmon's interface (`jkmon
//! decode --json`, `jkmon read --json`, and later MQTT): units in the names, `null` where the
//! BMS does not report a value. Passcodes are never part of it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::battery::{Snapshot, SocSource};
use crate::protocol::cell_info::{Balancing, CellInfo, ChargeStatus, DryContacts};
use crate::protocol::command::Command;
use crate::protocol::control::{self, Switch};
use crate::protocol::decoder::Decoded;
use crate::protocol::device_info::DeviceInfo;
use crate::protocol::logbook::Logbook;
use crate::protocol::rs485::{Rs485Exchange, Rs485Register};
use crate::protocol::settings::Settings;
use crate::protocol::Variant;

fn milli(v: impl Into<i64>) -> f64 {
    v.into() as f64 / 1000.0
}
fn micro(v: u32) -> f64 {
    f64::from(v) / 1_000_000.0
}
fn deci(v: impl Into<i64>) -> f64 {
    v.into() as f64 / 10.0
}

/// A frame's kind in its JSON (`cell_info`, `device_info`, …): written from a constant,
/// owned when read back.
pub type FrameType = Cow<'static, str>;

/// The cell-info frame as jkmon shows it. Read back from the store as the same type, so a
/// renamed field fails to compile in every view rather than show "–".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellInfoJson {
    pub frame_type: FrameType,
    pub variant: Variant,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rs485_address: Option<u8>,
    pub counter: u8,
    pub cell_count: usize,
    pub cell_voltages_v: Vec<f64>,
    pub cell_resistances_ohm: Vec<f64>,
    pub cell_min_v: Option<f64>,
    pub cell_max_v: Option<f64>,
    pub cell_avg_v: Option<f64>,
    pub cell_delta_v: Option<f64>,
    /// 1-based.
    pub cell_min_index: Option<usize>,
    pub cell_max_index: Option<usize>,
    /// The BMS's own average and delta (may lag the cells by a few mV).
    pub bms_cell_avg_v: Option<f64>,
    pub bms_cell_delta_v: Option<f64>,
    pub total_voltage_v: f64,
    /// Positive = charging, negative = discharging.
    pub current_a: Option<f64>,
    /// V·I, signed like the current.
    pub power_w: Option<f64>,
    /// Power into the battery (0 while it discharges): the unsigned sensor energy dashboards
    /// integrate for energy charged.
    pub charge_power_w: Option<f64>,
    /// Power out of the battery (0 while it charges), for energy discharged.
    pub discharge_power_w: Option<f64>,
    /// The BMS's unsigned power field.
    pub bms_power_w: Option<f64>,
    /// The BMS's own state of charge.
    pub soc_pct: Option<u8>,
    pub remaining_capacity_ah: Option<f64>,
    pub nominal_capacity_ah: Option<f64>,
    pub cycle_count: Option<u32>,
    pub cycle_capacity_ah: Option<f64>,
    pub soh_pct: Option<u8>,
    /// `mos` and `t1`…`t5`, only the sensors that are present.
    pub temperatures_c: TemperaturesC,
    pub balance_current_a: Option<f64>,
    pub balancing: bool,
    /// `off`, `charging`, `discharging`, `active` (direction unknown) or `mode_N`.
    pub balancing_mode: String,
    pub charging_enabled: Option<bool>,
    pub discharging_enabled: Option<bool>,
    pub heating: Option<bool>,
    /// The heater's current (JK02_32S; see [`CellInfo::keep_what_the_firmware_fills`]).
    #[serde(default)]
    pub heating_current_a: Option<f64>,
    /// The precharge circuit is on (JK02_32S).
    #[serde(default)]
    pub precharging: Option<bool>,
    /// `bulk`, `absorption` or `float` (JK-PB, firmware 15 and later).
    #[serde(default)]
    pub charge_status: Option<ChargeStatus>,
    /// The JK-PB's dry contacts, `true` = closed (firmware 14 and later).
    #[serde(default)]
    pub dry_contacts: Option<DryContacts>,
    pub alarms: Vec<String>,
    pub alarm_bits: u32,
    pub uptime_s: Option<u32>,
}

pub const SENSOR_KEYS: [&str; 5] = ["t1", "t2", "t3", "t4", "t5"];

/// The temperature probes that are present (°C): the MOSFET sensor and up to five probes. In
/// JSON an object with only the present ones (`{"mos": 24.5, "t1": 21.0}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemperaturesC {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mos: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t3: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t4: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t5: Option<f64>,
}

impl TemperaturesC {
    /// The probes `t1`…`t5` in order, present or not.
    pub fn probes(&self) -> [Option<f64>; 5] {
        [self.t1, self.t2, self.t3, self.t4, self.t5]
    }

    /// Every present sensor with its JSON key, `mos` first.
    pub fn present(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        std::iter::once(("mos", self.mos))
            .chain(SENSOR_KEYS.iter().copied().zip(self.probes()))
            .filter_map(|(k, t)| Some((k, t?)))
    }

    /// The first probe that is present, else the MOSFET sensor: the battery's temperature
    /// where one number is shown.
    pub fn battery_c(&self) -> Option<f64> {
        self.probes().into_iter().flatten().next().or(self.mos)
    }
}

impl CellInfoJson {
    pub fn new(c: &CellInfo, rs485_address: Option<u8>) -> Self {
        let stats = c.stats();
        let probe = |i: usize| c.temperatures.sensors_dc[i].map(deci);
        let temperatures_c = TemperaturesC {
            mos: c.temperatures.mos_dc.map(deci),
            t1: probe(0),
            t2: probe(1),
            t3: probe(2),
            t4: probe(3),
            t5: probe(4),
        };
        CellInfoJson {
            frame_type: "cell_info".into(),
            variant: c.variant,
            rs485_address,
            counter: c.counter,
            cell_count: c.cell_count(),
            cell_voltages_v: c.cell_voltages_uv.iter().map(|v| micro(*v)).collect(),
            cell_resistances_ohm: c.cell_resistances_uohm.iter().map(|v| micro(*v)).collect(),
            cell_min_v: stats.map(|s| micro(s.min_uv)),
            cell_max_v: stats.map(|s| micro(s.max_uv)),
            cell_avg_v: stats.map(|s| micro(s.avg_uv)),
            cell_delta_v: stats.map(|s| micro(s.delta_uv)),
            cell_min_index: stats.map(|s| s.min_index),
            cell_max_index: stats.map(|s| s.max_index),
            bms_cell_avg_v: c.bms_cell_avg_uv.map(micro),
            bms_cell_delta_v: c.bms_cell_delta_uv.map(micro),
            total_voltage_v: milli(c.total_voltage_mv),
            current_a: c.current_ma.map(milli),
            power_w: c.power_mw().map(milli),
            charge_power_w: c.power_mw().map(|p| milli(p.max(0))),
            discharge_power_w: c.power_mw().map(|p| milli((-p).max(0))),
            bms_power_w: c.bms_power_mw.map(milli),
            soc_pct: c.soc_pct,
            remaining_capacity_ah: c.remaining_capacity_mah.map(milli),
            nominal_capacity_ah: c.nominal_capacity_mah.map(milli),
            cycle_count: c.cycle_count,
            cycle_capacity_ah: c.cycle_capacity_mah.map(milli),
            soh_pct: c.soh_pct,
            temperatures_c,
            balance_current_a: c.balance_current_ma.map(milli),
            balancing: c.balancing.is_active(),
            balancing_mode: match c.balancing {
                Balancing::Off => "off".into(),
                Balancing::Charging => "charging".into(),
                Balancing::Discharging => "discharging".into(),
                Balancing::Active => "active".into(),
                Balancing::Other(b) => format!("mode_{b}"),
            },
            charging_enabled: c.charging_enabled,
            discharging_enabled: c.discharging_enabled,
            heating: c.heating,
            heating_current_a: c.extended.heating_current_ma.map(milli),
            precharging: c.extended.precharging,
            charge_status: c.extended.charge_status,
            dry_contacts: c.extended.dry_contacts,
            alarms: c.alarms.names(),
            alarm_bits: c.alarms.bits,
            uptime_s: c.uptime_s,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfoJson {
    pub frame_type: FrameType,
    pub variant: Variant,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rs485_address: Option<u8>,
    pub model: String,
    pub hardware_version: String,
    pub software_version: String,
    pub device_name: String,
    pub serial_number: String,
    pub manufacturing_date: String,
    pub uptime_s: Option<u32>,
    pub power_on_count: Option<u32>,
    pub user_data: String,
}

impl DeviceInfoJson {
    pub fn new(d: &DeviceInfo, variant: Variant, rs485_address: Option<u8>) -> Self {
        DeviceInfoJson {
            frame_type: "device_info".into(),
            variant,
            rs485_address,
            model: d.model.clone(),
            hardware_version: d.hardware_version.clone(),
            software_version: d.software_version.clone(),
            device_name: d.device_name.clone(),
            serial_number: d.serial_number.clone(),
            manufacturing_date: d.manufacturing_date.clone(),
            uptime_s: d.uptime_s,
            power_on_count: d.power_on_count,
            user_data: d.user_data.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SettingsJson {
    pub frame_type: FrameType,
    pub variant: Option<Variant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rs485_address: Option<u8>,
    pub cell_count: u8,
    pub cell_ovp_v: Option<f64>,
    pub cell_ovp_recovery_v: Option<f64>,
    pub cell_uvp_v: Option<f64>,
    pub cell_uvp_recovery_v: Option<f64>,
    pub balance_start_v: Option<f64>,
    pub balance_trigger_v: Option<f64>,
    pub soc_100_v: Option<f64>,
    pub soc_0_v: Option<f64>,
    pub request_charge_v: Option<f64>,
    pub request_float_v: Option<f64>,
    pub power_off_v: Option<f64>,
    pub smart_sleep_v: Option<f64>,
    pub max_charge_current_a: Option<f64>,
    pub max_discharge_current_a: Option<f64>,
    pub max_balance_current_a: Option<f64>,
    pub charge_ocp_delay_s: Option<u32>,
    pub charge_ocp_recovery_s: Option<u32>,
    pub discharge_ocp_delay_s: Option<u32>,
    pub discharge_ocp_recovery_s: Option<u32>,
    pub scp_recovery_s: Option<u32>,
    pub scp_delay_us: Option<u32>,
    pub charge_otp_c: Option<f64>,
    pub charge_otp_recovery_c: Option<f64>,
    pub discharge_otp_c: Option<f64>,
    pub discharge_otp_recovery_c: Option<f64>,
    pub charge_utp_c: Option<f64>,
    pub charge_utp_recovery_c: Option<f64>,
    pub mos_otp_c: Option<f64>,
    pub mos_otp_recovery_c: Option<f64>,
    pub nominal_capacity_ah: Option<f64>,
    pub charge_switch: Option<bool>,
    pub discharge_switch: Option<bool>,
    pub balancer_switch: Option<bool>,
    pub heating_switch: Option<bool>,
    pub heating_start_c: Option<i8>,
    pub heating_stop_c: Option<i8>,
    pub device_address: Option<u8>,
    pub precharge_time_s: Option<u8>,
    /// `rs485` or `can`.
    pub port: Option<&'static str>,
    pub smart_sleep_h: Option<u8>,
    pub data_field_enable_0: Option<u8>,
    pub low_soc_alarm_pct: Option<u8>,
    pub voltage_calibration: Option<f32>,
}

impl SettingsJson {
    pub fn new(s: &Settings, rs485_address: Option<u8>) -> Self {
        let v = |x: Option<u32>| x.map(milli);
        let c = |x: Option<i32>| x.map(deci);
        SettingsJson {
            frame_type: "settings".into(),
            variant: s.variant,
            rs485_address,
            cell_count: s.cell_count,
            cell_ovp_v: v(s.cell_ovp_mv),
            cell_ovp_recovery_v: v(s.cell_ovp_recovery_mv),
            cell_uvp_v: v(s.cell_uvp_mv),
            cell_uvp_recovery_v: v(s.cell_uvp_recovery_mv),
            balance_start_v: v(s.balance_start_mv),
            balance_trigger_v: v(s.balance_trigger_mv),
            soc_100_v: v(s.soc_100_mv),
            soc_0_v: v(s.soc_0_mv),
            request_charge_v: v(s.request_charge_mv),
            request_float_v: v(s.request_float_mv),
            power_off_v: v(s.power_off_mv),
            smart_sleep_v: v(s.smart_sleep_mv),
            max_charge_current_a: v(s.max_charge_current_ma),
            max_discharge_current_a: v(s.max_discharge_current_ma),
            max_balance_current_a: v(s.max_balance_current_ma),
            charge_ocp_delay_s: s.charge_ocp_delay_s,
            charge_ocp_recovery_s: s.charge_ocp_recovery_s,
            discharge_ocp_delay_s: s.discharge_ocp_delay_s,
            discharge_ocp_recovery_s: s.discharge_ocp_recovery_s,
            scp_recovery_s: s.scp_recovery_s,
            scp_delay_us: s.scp_delay_us,
            charge_otp_c: c(s.charge_otp_dc),
            charge_otp_recovery_c: c(s.charge_otp_recovery_dc),
            discharge_otp_c: c(s.discharge_otp_dc),
            discharge_otp_recovery_c: c(s.discharge_otp_recovery_dc),
            charge_utp_c: c(s.charge_utp_dc),
            charge_utp_recovery_c: c(s.charge_utp_recovery_dc),
            mos_otp_c: c(s.mos_otp_dc),
            mos_otp_recovery_c: c(s.mos_otp_recovery_dc),
            nominal_capacity_ah: v(s.nominal_capacity_mah),
            charge_switch: s.charge_switch,
            discharge_switch: s.discharge_switch,
            balancer_switch: s.balancer_switch,
            heating_switch: s.heating_switch,
            heating_start_c: s.heating_start_c,
            heating_stop_c: s.heating_stop_c,
            device_address: s.device_address,
            precharge_time_s: s.precharge_time_s,
            port: s
                .port_rs485
                .map(|rs485| if rs485 { "rs485" } else { "can" }),
            smart_sleep_h: s.smart_sleep_h,
            data_field_enable_0: s.data_field_enable_0,
            low_soc_alarm_pct: s.low_soc_alarm_pct,
            voltage_calibration: s.voltage_calibration,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LogEntryJson {
    pub time_s: u32,
    pub code: u8,
    pub event: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogbookJson {
    pub frame_type: &'static str,
    pub log_count: u32,
    pub entries: Vec<LogEntryJson>,
}

impl LogbookJson {
    pub fn new(l: &Logbook) -> Self {
        LogbookJson {
            frame_type: "logbook",
            log_count: l.log_count,
            entries: l
                .entries
                .iter()
                .map(|e| LogEntryJson {
                    time_s: e.time_s,
                    code: e.code,
                    event: e.description(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CommandJson {
    pub frame_type: &'static str,
    pub command: u8,
    pub description: String,
}

impl CommandJson {
    pub fn new(c: &Command) -> Self {
        CommandJson {
            frame_type: "command",
            command: c.command,
            description: c.describe(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Rs485Json {
    pub frame_type: &'static str,
    pub address: u8,
    pub register: u16,
    pub asks_for: Option<&'static str>,
}

impl Rs485Json {
    pub fn new(kind: &'static str, e: &Rs485Exchange) -> Self {
        Rs485Json {
            frame_type: kind,
            address: e.address,
            register: e.register,
            asks_for: Rs485Register::from_address(e.register).map(Rs485Register::name),
        }
    }
}

/// The JSON objects of one decoded item (a serial `4E 57` response gives three: its cell info,
/// device info and settings parts).
pub fn values(decoded: &Decoded, rs485_address: Option<u8>) -> Vec<serde_json::Value> {
    let to = |v: Result<serde_json::Value, serde_json::Error>| v.unwrap_or(serde_json::Value::Null);
    match decoded {
        Decoded::CellInfo(c) => vec![to(serde_json::to_value(CellInfoJson::new(
            c,
            rs485_address,
        )))],
        Decoded::DeviceInfo(d, v) => {
            vec![to(serde_json::to_value(DeviceInfoJson::new(
                d,
                *v,
                rs485_address,
            )))]
        }
        Decoded::Settings(s) => vec![to(serde_json::to_value(SettingsJson::new(
            s,
            rs485_address,
        )))],
        Decoded::Logbook(l) => vec![to(serde_json::to_value(LogbookJson::new(l)))],
        Decoded::Serial(r) => vec![
            to(serde_json::to_value(CellInfoJson::new(&r.cell_info, None))),
            to(serde_json::to_value(DeviceInfoJson::new(
                &r.device_info,
                Variant::Serial4e57,
                None,
            ))),
            to(serde_json::to_value(SettingsJson::new(&r.settings, None))),
        ],
        Decoded::Command(c) => vec![to(serde_json::to_value(CommandJson::new(c)))],
        Decoded::Rs485Request(e) => {
            vec![to(serde_json::to_value(Rs485Json::new("rs485_request", e)))]
        }
        Decoded::Rs485Tail(e) => vec![to(serde_json::to_value(Rs485Json::new("rs485_tail", e)))],
        Decoded::Rs485Switch(w) => vec![serde_json::json!({
            "frame_type": if w.on.is_some() { "rs485_switch_write" } else { "rs485_switch_answer" },
            "address": w.address,
            "switch": w.switch.as_str(),
            "on": w.on,
        })],
    }
}

/// The snapshot of `jkmon read --json`: the cell-info object plus the SOC jkmon uses. The
/// store keeps it in `bms_latest` and every view reads it back as this type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotJson {
    #[serde(flatten)]
    pub cell_info: CellInfoJson,
    /// The SOC jkmon shows and stores: from the voltage curve or the BMS (`soc_source`).
    pub soc_effective_pct: Option<f64>,
    pub soc_source: SocSource,
    /// Every alarm group (`cell`, `pack`, `current`, `temperature`, `mosfet`, `system`) with
    /// whether one of its alarms is raised.
    pub alarm_groups: BTreeMap<Cow<'static, str>, bool>,
    /// The switches as the BMS's own settings frame reports them (`charging`, `discharging`,
    /// `balancer`, `heater`), where it does; empty before the first settings frame.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub switches: BTreeMap<String, bool>,
}

impl SnapshotJson {
    /// [`CellInfo::example`] as the views read it back (SOC from the BMS), for tests and
    /// benchmarks.
    pub fn example() -> Self {
        let cell_info = CellInfo::example();
        SnapshotJson::new(&Snapshot {
            soc_effective_pct: cell_info.soc_pct.map(f64::from),
            soc_source: SocSource::Bms,
            cell_info,
            device_info: None,
            settings: None,
        })
    }

    pub fn new(s: &Snapshot) -> Self {
        SnapshotJson {
            cell_info: CellInfoJson::new(&s.cell_info, None),
            soc_effective_pct: s.soc_effective_pct.map(|p| (p * 10.0).round() / 10.0),
            soc_source: s.soc_source,
            alarm_groups: s
                .cell_info
                .alarms
                .groups()
                .into_iter()
                .map(|(g, raised)| (Cow::Borrowed(g), raised))
                .collect(),
            switches: s
                .settings
                .as_ref()
                .map(|settings| {
                    Switch::ALL
                        .into_iter()
                        .filter_map(|w| {
                            Some((w.as_str().to_string(), control::state(settings, w)?))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the store writes into `bms_latest` reads back as the same typed snapshot, for
    /// every variant's example and with sensors and values missing.
    #[test]
    fn the_snapshot_reads_back_as_it_was_written() {
        let mut sparse = SnapshotJson::example();
        sparse.cell_info.temperatures_c = TemperaturesC {
            t2: Some(-4.5),
            ..TemperaturesC::default()
        };
        sparse.cell_info.current_a = None;
        sparse.soc_effective_pct = None;
        for s in [SnapshotJson::example(), sparse] {
            let text = serde_json::to_string(&s).unwrap();
            let back: SnapshotJson = serde_json::from_str(&text).unwrap();
            assert_eq!(back, s, "{text}");
        }
    }

    /// The JSON keeps the names and shapes `jkmon read --json`, the API and MQTT have always
    /// had: only present sensors, the SOC source as a word, the frame type.
    #[test]
    fn the_json_shape_is_the_interface() {
        let mut s = SnapshotJson::example();
        s.cell_info.temperatures_c = TemperaturesC {
            mos: Some(24.5),
            t1: Some(21.0),
            ..TemperaturesC::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["frame_type"], "cell_info");
        assert_eq!(v["soc_source"], "bms");
        assert_eq!(
            v["temperatures_c"],
            serde_json::json!({"mos": 24.5, "t1": 21.0})
        );
        assert!(v["alarm_groups"]["cell"].is_boolean());
        assert!(v.get("cell_info").is_none(), "flattened: {v}");
        // the unsigned powers split the signed one
        let p = s.cell_info.power_w.unwrap();
        assert_eq!(v["charge_power_w"], p.max(0.0));
        assert_eq!(v["discharge_power_w"], (-p).max(0.0));
        assert_eq!(s.cell_info.temperatures_c.battery_c(), Some(21.0));
    }
}
