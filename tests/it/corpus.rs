//! Every real capture in `tests/fixtures/jk-frames.json` against the decoders: variants detected,
//! every value a source states matched through the public JSON interface, fragments
//! reassembled, corrupt entries rejected with the right error, commands and RS485 requests
//! reproduced byte for byte.

use crate::common;
use jkmon::protocol::assembler::{Assembler, AssemblerConfig, Item};
use jkmon::protocol::checksum::sum8;
use jkmon::protocol::command::{self, CMD_CELL_INFO, CMD_DEVICE_INFO};
use jkmon::protocol::rs485::{self, Rs485Register};
use jkmon::protocol::{serial, DecodeError, Decoded, StreamDecoder, VariantChoice};
use jkmon::report::json;
use serde_json::Value;

use common::{corpus, field, hex_bytes};

/// Feeds bytes through an assembler as one chunk each and returns all items.
fn assemble(chunks: &[Vec<u8>], config: AssemblerConfig) -> Vec<Item> {
    let mut a = Assembler::new(config);
    let mut items = Vec::new();
    for c in chunks {
        a.push(c);
        items.extend(std::iter::from_fn(|| a.poll()));
    }
    a.finish();
    items.extend(std::iter::from_fn(|| a.poll()));
    items
}

fn is_frame_entry(e: &Value) -> bool {
    matches!(field(e, "transport"), "ble" | "rs485_pb")
        && matches!(
            field(e, "frame_type"),
            "cell_info" | "device_info" | "settings" | "logbook"
        )
}

/// Decodes the first frame of an entry; returns the decoded item and its JSON objects.
fn decode_entry(e: &Value) -> (Decoded, Vec<Value>) {
    let bytes = hex_bytes(field(e, "hex"));
    let config = if field(e, "transport") == "serial_4e57" {
        AssemblerConfig::serial()
    } else {
        AssemblerConfig::any()
    };
    let items = assemble(&[bytes], config);
    let first = items
        .iter()
        .find(|i| matches!(i, Item::Frame { .. } | Item::SerialFrame { .. }))
        .unwrap_or_else(|| panic!("entry {}: no frame assembled: {items:?}", e["id"]));
    let address = match first {
        Item::Frame { frame, .. } => frame.rs485_address,
        _ => None,
    };
    let decoded = StreamDecoder::new(VariantChoice::Auto)
        .decode(first)
        .unwrap_or_else(|err| panic!("entry {}: {err}", e["id"]));
    let values = json::values(&decoded, address);
    (decoded, values)
}

#[test]
fn every_valid_frame_decodes_with_its_variant_detected() {
    let corpus = corpus();
    let mut checked = 0;
    for e in corpus
        .iter()
        .filter(|e| is_frame_entry(e) && e["checksum_ok"] == true)
    {
        let (_, values) = decode_entry(e);
        let v = &values[0];
        assert_eq!(v["frame_type"], e["frame_type"], "entry {}", e["id"]);
        let want = field(e, "variant").to_ascii_lowercase();
        if want != "unknown" && field(e, "frame_type") != "logbook" {
            assert_eq!(
                v["variant"],
                want.as_str(),
                "entry {} ({})",
                e["id"],
                field(e, "source")
            );
        }
        if let Some(addr) = e["rs485_address"].as_u64() {
            if e.get("modbus_trailer_hex").is_some() {
                assert_eq!(v["rs485_address"], addr, "entry {}", e["id"]);
            }
        }
        if field(e, "frame_type") == "cell_info" {
            let cells = v["cell_voltages_v"].as_array().unwrap();
            assert_eq!(cells.len() as u64, v["cell_count"].as_u64().unwrap());
        }
        // the plausibility rules clear nothing a real BMS sent
        if let (Decoded::CellInfo(mut c), _) = decode_entry(e) {
            assert_eq!(c.drop_implausible(), [], "entry {}", e["id"]);
        }
        checked += 1;
    }
    assert!(checked >= 150, "only {checked} frames checked");
    eprintln!("decoded {checked} checksum-valid corpus frames with their variants");
}

/// `16D18H39M52S` → seconds.
fn dhms(s: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            let n: u64 = num.parse().ok()?;
            num.clear();
            total += n * match c {
                'D' => 86_400,
                'H' => 3_600,
                'M' => 60,
                'S' => 1,
                _ => return None,
            };
        }
    }
    Some(total)
}

enum Outcome {
    Match,
    Mismatch(String),
    /// A value the source derived itself or stated wrongly; the reason is printed.
    NotABmsValue(&'static str),
    Unmapped,
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
}

/// Half a unit of the last decimal the source states (`-2.6` → 0.05): a value matches to the
/// precision it was stated with.
fn stated_precision(want: &Value) -> f64 {
    let s = want.to_string();
    match s.split_once('.') {
        Some((_, frac)) if !s.contains('e') => 0.5 * 10f64.powi(-(frac.len() as i32)) + 1e-12,
        _ => 0.0,
    }
}

fn close(got: &Value, want: &Value, tol: f64) -> Outcome {
    let tol = tol.max(stated_precision(want));
    match (num(got), num(want)) {
        (Some(g), Some(w)) if (g - w).abs() <= tol => Outcome::Match,
        _ => Outcome::Mismatch(format!("got {got}, source states {want}")),
    }
}

fn same(got: &Value, want: &Value) -> Outcome {
    if got == want || (got.is_number() && want.is_number() && close(got, want, 1e-9).is_match()) {
        Outcome::Match
    } else {
        Outcome::Mismatch(format!("got {got}, source states {want}"))
    }
}

impl Outcome {
    fn is_match(&self) -> bool {
        matches!(self, Outcome::Match)
    }
}

fn cell_index(key: &str, prefix: &str) -> Option<usize> {
    let rest = key.strip_prefix(prefix)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse::<usize>()
        .ok()
        .filter(|n| *n >= 1)
        .map(|n| n - 1)
}

/// Compares one stated value of a cell-info entry with jkmon's JSON.
fn check_cell_info(key: &str, want: &Value, j: &Value, raw: &[u8]) -> Outcome {
    let t = |k: &str| j["temperatures_c"][k].clone();
    let neg = |v: &Value| Value::from(-num(v).unwrap_or(f64::NAN));
    let mv = 0.0005;
    if let Some(i) = cell_index(key, "cell").filter(|_| key.ends_with("_v")) {
        return close(&j["cell_voltages_v"][i], want, mv);
    }
    if let Some(i) = cell_index(key, "Voltage_Cell").or_else(|| cell_index(key, "Voltage Cell")) {
        return close(&j["cell_voltages_v"][i], want, 1e-6);
    }
    if let Some(i) =
        cell_index(key, "Resistance_Cell").or_else(|| cell_index(key, "Resistance Cell"))
    {
        return close(&j["cell_resistances_ohm"][i], want, 1e-6);
    }
    match key {
        "cells_active" | "cell_count" => same(&j["cell_count"], want),
        "total_voltage_v" | "voltage" | "Battery_Voltage" | "total_voltage_v_sum_of_cells" => {
            close(&j["total_voltage_v"], want, mv)
        }
        "current_a" | "current" | "current_a_on_wire" => close(&j["current_a"], want, mv),
        "current_batmon_convention" | "current_a_batmon_sign" => close(&neg(&j["current_a"]), want, mv),
        "min_cell_v" | "Lowest Cell Voltage" => close(&j["cell_min_v"], &want.get(0).unwrap_or(want).clone(), 1e-6),
        "max_cell_v" | "Highest Cell Voltage" => close(&j["cell_max_v"], &want.get(0).unwrap_or(want).clone(), 1e-6),
        "min_cell" | "Lowest Cell" => same(&j["cell_min_index"], want),
        "max_cell" | "Highest Cell" => same(&j["cell_max_index"], want),
        "delta_v" => close(&j["cell_delta_v"], want, mv),
        "delta_voltage" | "Delta_Cell_Voltage" | "Delta Cell Voltage" => close(&j["bms_cell_delta_v"], want, 1e-6),
        "Average_Cell_Voltage" | "Average Cell Voltage" => close(&j["bms_cell_avg_v"], want, 1e-6),
        "t1_c" | "Battery_T1" => close(&t("t1"), want, 0.05),
        "t2_c" | "Battery_T2" => close(&t("t2"), want, 0.05),
        "mos_c" | "MOS_Temp" => close(&t("mos"), want, 0.05),
        "soc_pct" | "battery_level" | "soc_pct_byte" | "Percent_Remain" => same(&j["soc_pct"], want),
        "soh_pct" | "battery_health" => same(&j["soh_pct"], want),
        "capacity_remaining_ah" | "cycle_charge" | "Capacity_Remain" => close(&j["remaining_capacity_ah"], want, mv),
        "nominal_capacity_ah" | "capacity_full_ah_offset178" | "Nominal_Capacity" => {
            close(&j["nominal_capacity_ah"], want, mv)
        }
        "design_capacity" => close(&Value::from(num(&j["nominal_capacity_ah"]).unwrap_or(f64::NAN).floor()), want, 0.0),
        "cycles" | "Cycle_Count" => same(&j["cycle_count"], want),
        "cycle_capacity_ah" | "Cycle_Capacity" => close(&j["cycle_capacity_ah"], want, mv),
        "runtime_s" => same(&j["uptime_s"], want),
        "Time" | "uptime" => same(&j["uptime_s"], &Value::from(dhms(want.as_str().unwrap_or("")))),
        "charging" | "chrg_mosfet" => same(&j["charging_enabled"], want),
        "discharging" | "dischrg_mosfet" => same(&j["discharging_enabled"], want),
        "heating" => same(&j["heating"], want),
        "balancing" | "balancer" => same(&j["balancing"], want),
        "balance_current_a" | "balance_current" => close(&j["balance_current_a"], want, mv),
        "battery_charging" => same(&Value::from(num(&j["current_a"]).unwrap_or(0.0) > 0.0), want),
        "power" => close(&j["power_w"], want, 0.01),
        "Battery_Power" => close(&j["bms_power_w"], want, mv),
        "problem_code" => same(&j["alarm_bits"], want),
        "problem" => same(&Value::from(j["alarm_bits"].as_u64() != Some(0)), want),
        "cell_voltages" | "cells_mv" => {
            let scale = if key == "cells_mv" { 1000.0 } else { 1.0 };
            let got: Vec<f64> = j["cell_voltages_v"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() * scale).collect();
            let want: Vec<f64> = want.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let ok = got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-3 * scale.max(1.0));
            if ok { Outcome::Match } else { Outcome::Mismatch(format!("got {got:?}, source states {want:?}")) }
        }
        "temp_values" => {
            // the source lists the present sensors in its own order: compare as sorted sets
            let mut got: Vec<f64> = j["temperatures_c"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).collect();
            let mut want: Vec<f64> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().split_whitespace().next().unwrap().parse().unwrap())
                .collect();
            got.sort_by(f64::total_cmp);
            want.sort_by(f64::total_cmp);
            if got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 0.05) {
                Outcome::Match
            } else {
                Outcome::Mismatch(format!("got {got:?}, source states {want:?}"))
            }
        }
        "Header" => same(&Value::from(jkmon::protocol::hex(&raw[..4]).replace(' ', "")), want),
        "Record_Type" | "Record Type" => same(&Value::from(format!("{:02x}", raw[4])), want),
        "Record_Counter" | "Record Counter" => same(&j["counter"], want),
        "Checksum" => same(&Value::from(format!("{:02x}", raw[299])), want),
        "cycle_capacity" => Outcome::NotABmsValue("aiobmsble derives it (charge × voltage); the BMS field is cycle_capacity_ah"),
        "temperature" => Outcome::NotABmsValue("aiobmsble's mean of the sensors, not a BMS field"),
        "temp_sensors" => Outcome::NotABmsValue("the raw present-mask; checked through temp_values"),
        "battery_mode" => Outcome::NotABmsValue("charge status at byte 280 is valid only on firmware ≥ 15; jkmon does not decode it yet"),
        "Balance_Current" => close(&j["balance_current_a"], want, mv),
        "Current_Balancer" => Outcome::NotABmsValue("mpp-solar reads bytes 62-63, which hold the BMS's 0-based max/min cell indexes (4 and 2: cells 5 and 3, as the cell array shows)"),
        "Current_Charge" | "Current_Discharge" => Outcome::NotABmsValue("mpp-solar reads bytes 189 and on, outside the documented JK02_24S layout; the current at 126 is 0"),
        "runtime" => Outcome::NotABmsValue("aiobmsble's remaining-time estimate (remaining Ah ÷ current), not the BMS's runtime"),
        "Flags" => Outcome::NotABmsValue("mpp-solar's raw flag bytes of unknown meaning"),
        "cycles_note" => Outcome::NotABmsValue("prose"),
        _ => Outcome::Unmapped,
    }
}

fn check_device_info(
    key: &str,
    want: &Value,
    j: &Value,
    d: &jkmon::protocol::DeviceInfo,
    raw: &[u8],
) -> Outcome {
    let s = |v: &str| Value::from(v);
    match key {
        "vendor" | "model" | "Device Model" => same(&j["model"], want),
        "hardware_version" | "hw_version" | "Hardware Version" => {
            same(&j["hardware_version"], want)
        }
        "software_version" | "sw_version" | "Software Version" => {
            same(&j["software_version"], want)
        }
        "device_name" | "name" | "Device Name" => same(&j["device_name"], want),
        "uptime_s" => same(&j["uptime_s"], want),
        "Up Time" => same(
            &j["uptime_s"],
            &Value::from(dhms(want.as_str().unwrap_or(""))),
        ),
        "power_on_count" | "Power-on Times" => same(&j["power_on_count"], want),
        "manufacturing_date" | "Manufacturing Date" => same(&j["manufacturing_date"], want),
        "serial_number" | "Serial Number" => same(&j["serial_number"], want),
        "user_data" | "User Data" => same(&j["user_data"], want),
        "serial_number_first8" => {
            let sn = j["serial_number"].as_str().unwrap_or("");
            same(&s(&sn.chars().take(8).collect::<String>()), want)
        }
        "device_passcode" | "Device Passcode" => same(&s(d.passcodes.device.expose()), want),
        "setup_passcode" | "Setup Passcode" => same(&s(d.passcodes.setup.expose()), want),
        "Passcode" => same(&s(d.passcodes.passcode.expose()), want),
        "Header" => same(&s(&jkmon::protocol::hex(&raw[..4]).replace(' ', "")), want),
        "Record Type" => same(&s(&format!("{:02x}", raw[4])), want),
        "Record Counter" => same(&Value::from(raw[5]), want),
        _ => Outcome::Unmapped,
    }
}

fn check_settings(key: &str, want: &Value, j: &Value) -> Outcome {
    let direct = [
        "cell_count",
        "balance_trigger_v",
        "max_balance_current_a",
        "nominal_capacity_ah",
        "max_charge_current_a",
        "max_discharge_current_a",
        "cell_uvp_v",
        "cell_ovp_v",
        "balance_start_v",
        "charge_utp_c",
        "heating_start_c",
        "heating_stop_c",
        "balancer_switch",
        "smart_sleep_v",
        "power_off_v",
        "charge_ocp_delay_s",
        "charge_ocp_recovery_s",
        "discharge_ocp_delay_s",
        "discharge_ocp_recovery_s",
        "scp_recovery_s",
        "charge_otp_c",
        "discharge_otp_c",
        "mos_otp_c",
        "charge_switch",
        "discharge_switch",
        "scp_delay_us",
        "device_address",
        "precharge_time_s",
        "heating_switch",
        "smart_sleep_h",
    ];
    if direct.contains(&key) {
        return close(&j[key], want, 0.0005);
    }
    let renamed =
        match key {
            "power_off_voltage_v" => "power_off_v",
            "voltage_calibration" => return close(&j["voltage_calibration"], want, 1e-5),
            "charging_switch" => "charge_switch",
            "discharging_switch" => "discharge_switch",
            "cell_uvpr_v" => "cell_uvp_recovery_v",
            "cell_ovpr_v" => "cell_ovp_recovery_v",
            "soc100_v" => "soc_100_v",
            "soc0_v" => "soc_0_v",
            "rcv_v" => "request_charge_v",
            "rfv_v" => "request_float_v",
            "charge_otpr_c" => "charge_otp_recovery_c",
            "discharge_otpr_c" => "discharge_otp_recovery_c",
            "charge_utpr_c" => "charge_utp_recovery_c",
            "mos_otpr_c" => "mos_otp_recovery_c",
            "nominal_capacity_ah_offset130" => "nominal_capacity_ah",
            "data_field_enable_control_0" => "data_field_enable_0",
            "port_switch" => {
                return same(
                    &j["port"],
                    &Value::from(want.as_str().unwrap_or("").to_ascii_lowercase()),
                )
            }
            "balance_trigger_v_as_commented" => return Outcome::NotABmsValue(
                "the source's comment says 3.003 V; the frame holds 3 mV (a typo, reference §2.6)",
            ),
            _ => return Outcome::Unmapped,
        };
    close(&j[renamed], want, 0.0005)
}

fn check_serial(key: &str, want: &Value, cell: &Value, dev: &Value, set: &Value) -> Outcome {
    match key {
        "cells_mv" | "cells_v" | "cell1_v" => {
            let scale = if key == "cells_mv" { 1000.0 } else { 1.0 };
            let got: Vec<f64> = cell["cell_voltages_v"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() * scale)
                .collect();
            let want: Vec<f64> = match want.as_array() {
                Some(a) => a.iter().map(|v| v.as_f64().unwrap()).collect(),
                None => vec![want.as_f64().unwrap()],
            };
            if got.len() >= want.len()
                && got
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| (g - w).abs() < 1e-6 * scale.max(1.0) * 1000.0)
            {
                Outcome::Match
            } else {
                Outcome::Mismatch(format!("got {got:?}, source states {want:?}"))
            }
        }
        "total_voltage_v" => close(&cell["total_voltage_v"], want, 0.005),
        "current_a" => close(&cell["current_a"], want, 0.005),
        "soc_pct" => same(&cell["soc_pct"], want),
        "cycles" => same(&cell["cycle_count"], want),
        "total_cycle_capacity_ah" => close(&cell["cycle_capacity_ah"], want, 0.0005),
        "capacity_setting_ah" => close(&set["nominal_capacity_ah"], want, 0.0005),
        "t1_c" => close(&cell["temperatures_c"]["t1"], want, 0.05),
        "t2_c" => close(&cell["temperatures_c"]["t2"], want, 0.05),
        "mos_c" => close(&cell["temperatures_c"]["mos"], want, 0.05),
        "cell_count" => same(&cell["cell_count"], want),
        "status_bitmask" => {
            let bits = u64::from(cell["charging_enabled"] == true)
                | u64::from(cell["discharging_enabled"] == true) << 1
                | u64::from(cell["balancing"] == true) << 2;
            same(&Value::from(bits), want)
        }
        "software_version" => same(&dev["software_version"], want),
        "working_minutes" => same(
            &Value::from(cell["uptime_s"].as_u64().map(|s| s / 60)),
            want,
        ),
        "low_soc_alarm_pct" => same(&set["low_soc_alarm_pct"], want),
        "source_of_expected" => Outcome::NotABmsValue("provenance note"),
        _ => Outcome::Unmapped,
    }
}

#[test]
fn every_value_the_sources_state_matches() {
    let corpus = corpus();
    let (mut matched, mut problems, mut notes) = (0, Vec::new(), Vec::new());
    for e in corpus.iter().filter(|e| e["checksum_ok"] == true) {
        let Some(expected) = e["expected"].as_object() else {
            continue;
        };
        let ft = field(e, "frame_type");
        if !matches!(
            ft,
            "cell_info" | "device_info" | "settings" | "logbook" | "response"
        ) {
            continue;
        }
        let raw = hex_bytes(field(e, "hex"));
        let (decoded, values) = decode_entry(e);
        for (key, want) in expected {
            let outcome = match (&decoded, ft) {
                (Decoded::CellInfo(_), _) => check_cell_info(key, want, &values[0], &raw),
                (Decoded::DeviceInfo(d, _), _) => check_device_info(key, want, &values[0], d, &raw),
                (Decoded::Settings(_), _) => check_settings(key, want, &values[0]),
                (Decoded::Serial(_), _) => {
                    check_serial(key, want, &values[0], &values[1], &values[2])
                }
                (Decoded::Logbook(_), _) => match key.as_str() {
                    "log_count" => same(&values[0]["log_count"], want),
                    "entries" => {
                        // the source writes "0x1B Charge low temperature protection"
                        let got: Vec<Value> = values[0]["entries"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|x| {
                                let code = x["code"].as_u64().unwrap();
                                serde_json::json!([
                                    x["time_s"],
                                    format!("0x{code:02X} {}", x["event"].as_str().unwrap())
                                ])
                            })
                            .collect();
                        same(&Value::from(got), want)
                    }
                    _ => Outcome::Unmapped,
                },
                _ => Outcome::Unmapped,
            };
            match outcome {
                Outcome::Match => matched += 1,
                Outcome::Mismatch(m) => problems.push(format!("entry {} {key}: {m}", e["id"])),
                Outcome::Unmapped => problems.push(format!(
                    "entry {} {key}: no rule compares this stated value",
                    e["id"]
                )),
                Outcome::NotABmsValue(why) => {
                    notes.push(format!("entry {} {key}: not compared: {why}", e["id"]))
                }
            }
        }
    }
    for n in &notes {
        eprintln!("{n}");
    }
    assert!(
        problems.is_empty(),
        "{} stated values differ:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(matched >= 400, "only {matched} stated values compared");
    eprintln!(
        "{matched} stated values match; {} are not BMS values (listed above)",
        notes.len()
    );
}

#[test]
fn every_fragment_sequence_reassembles_into_exactly_its_frame() {
    let corpus = corpus();
    let mut checked = 0;
    for e in corpus.iter().filter(|e| e.get("fragments").is_some()) {
        let chunks: Vec<Vec<u8>> = e["fragments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| hex_bytes(f.as_str().unwrap()))
            .collect();
        let want = hex_bytes(field(e, "hex"));
        let items = assemble(&chunks, AssemblerConfig::ble());
        let frames: Vec<&[u8]> = items
            .iter()
            .filter_map(|i| match i {
                Item::Frame { frame, .. } => Some(&frame.bytes[..]),
                _ => None,
            })
            .collect();
        assert_eq!(frames, vec![&want[..300]], "entry {}", e["id"]);
        assert!(
            !items.iter().any(|i| matches!(i, Item::Rejected { .. })),
            "entry {}: {items:?}",
            e["id"]
        );
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} fragment sequences");
}

#[test]
fn every_corrupt_entry_is_rejected_with_the_right_error() {
    let corpus = corpus();
    let mut checked = 0;
    for e in corpus.iter().filter(|e| e["checksum_ok"] == false) {
        let bytes = hex_bytes(field(e, "hex"));
        let serial = field(e, "transport") == "serial_4e57";
        let config = if serial {
            AssemblerConfig::serial()
        } else {
            AssemblerConfig::any()
        };
        let items = assemble(std::slice::from_ref(&bytes), config);
        assert!(
            !items
                .iter()
                .any(|i| matches!(i, Item::Frame { .. } | Item::SerialFrame { .. })),
            "entry {} must not decode: {items:?}",
            e["id"]
        );
        let Some(Item::Rejected { error, offset: 0 }) = items.first() else {
            panic!(
                "entry {}: expected a rejection first, got {items:?}",
                e["id"]
            );
        };
        // The right error follows from the bytes: short of the announced length → truncated,
        // else the checksum, with the bytes it read and the sum it computed.
        let needed = if serial {
            serial::announced_len(&bytes).unwrap()
        } else {
            300
        };
        if bytes.len() < needed {
            assert_eq!(
                *error,
                DecodeError::Truncated {
                    what: if serial {
                        "4E 57 frame"
                    } else {
                        "55 AA EB 90 frame"
                    },
                    got: bytes.len(),
                    expected: needed
                },
                "entry {}",
                e["id"]
            );
        } else if serial {
            let at = needed - 4;
            let computed = jkmon::protocol::checksum::sum32(&bytes[..at]);
            let got = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
            assert_eq!(
                *error,
                DecodeError::BadSum32 { at, got, computed },
                "entry {}",
                e["id"]
            );
        } else {
            let computed = sum8(&bytes[..299]);
            assert_eq!(
                *error,
                DecodeError::BadChecksum {
                    at: 299,
                    got: bytes[299],
                    computed
                },
                "entry {}",
                e["id"]
            );
        }
        eprintln!("entry {} rejected: {error}", e["id"]);
        checked += 1;
    }
    assert_eq!(checked, 6, "the corpus documents 6 failing entries");
}

#[test]
fn serial_responses_decode_to_plausible_values() {
    let corpus = corpus();
    let mut checked = 0;
    for e in corpus.iter().filter(|e| {
        field(e, "transport") == "serial_4e57"
            && field(e, "frame_type") == "response"
            && e["checksum_ok"] == true
    }) {
        let (_, values) = decode_entry(e);
        let cell = &values[0];
        assert_eq!(cell["variant"], "serial_4e57");
        let cells = cell["cell_voltages_v"].as_array().unwrap();
        assert!(!cells.is_empty(), "entry {}", e["id"]);
        // A 0 mV reading is a cell with no sense wire (the faker of entry 190 has two); every
        // cell that reads anything must read like a lithium cell.
        let readings: Vec<f64> = cells
            .iter()
            .map(|c| c.as_f64().unwrap())
            .filter(|v| *v > 0.0)
            .collect();
        assert!(
            readings.len() * 2 > cells.len(),
            "entry {}: most cells read 0 V",
            e["id"]
        );
        for v in &readings {
            assert!((2.0..=4.5).contains(v), "entry {}: cell {v} V", e["id"]);
        }
        let soc = cell["soc_pct"].as_u64().unwrap();
        assert!(soc <= 100, "entry {}: SOC {soc}", e["id"]);
        let sum: f64 = cells.iter().map(|c| c.as_f64().unwrap()).sum();
        let total = cell["total_voltage_v"].as_f64().unwrap();
        assert!(
            (sum - total).abs() < 0.5,
            "entry {}: cells sum to {sum}, pack {total}",
            e["id"]
        );
        checked += 1;
    }
    assert_eq!(checked, 5);
}

#[test]
fn commands_and_rs485_requests_are_reproduced_byte_for_byte() {
    let corpus = corpus();
    let (mut commands, mut requests) = (0, 0);
    for e in &corpus {
        let bytes = hex_bytes(field(e, "hex"));
        match (field(e, "transport"), field(e, "frame_type")) {
            ("ble", "command") => {
                let c =
                    command::parse(&bytes).unwrap_or_else(|err| panic!("entry {}: {err}", e["id"]));
                // zero-filled requests are exactly what jkmon sends
                if bytes[5..19].iter().all(|b| *b == 0)
                    && [CMD_CELL_INFO, CMD_DEVICE_INFO].contains(&c.command)
                {
                    assert_eq!(
                        bytes[..20],
                        command::request(c.command),
                        "entry {}",
                        e["id"]
                    );
                }
                commands += 1;
            }
            ("ble", "ack") => {
                assert_eq!(command::parse(&bytes).unwrap().command, command::CMD_ACK);
            }
            ("rs485_pb", "request") => {
                let ex = rs485::parse_request(&bytes)
                    .unwrap_or_else(|err| panic!("entry {}: {err}", e["id"]));
                let reg = Rs485Register::from_address(ex.register).expect("a known register");
                assert_eq!(bytes, rs485::request(ex.address, reg), "entry {}", e["id"]);
                requests += 1;
            }
            ("serial_4e57", "request") => {
                serial::check_envelope(&bytes).unwrap();
            }
            _ => {}
        }
    }
    assert_eq!((commands, requests), (32, 18));
}

/// The last values of a JK02_32S frame against the captures that name them in their notes: the
/// charger's stage (a JK-PB on firmware 15 going through bulk, absorption and float), the dry
/// contacts (syssi/esphome-jk-bms#681: DRY1, DRY2, both, neither) and the heater's current
/// (a B-series 11.288H heating: 0.509–0.514 A; off: nothing to trust), each through the
/// snapshot with the board's own model and firmware.
#[test]
fn the_last_values_match_what_the_captures_notes_say() {
    use jkmon::battery::soc::BmsSoc;
    use jkmon::battery::Snapshot;
    use jkmon::protocol::cell_info::{self, ChargeStatus, DryContacts};
    use jkmon::protocol::{DeviceInfo, Variant};
    let entries = corpus();
    let by_id = |id: u64| entries.iter().find(|e| e["id"] == id).unwrap();
    let snapshot = |id: u64| {
        let e = by_id(id);
        let raw = hex_bytes(e["hex"].as_str().unwrap());
        let cells = cell_info::decode(&raw, Some(Variant::Jk02_32s)).unwrap();
        let device = DeviceInfo {
            model: e["model"]
                .as_str()
                .unwrap()
                .trim_end_matches('?')
                .to_string(),
            software_version: e["sw"].as_str().unwrap().to_string(),
            ..DeviceInfo::default()
        };
        let s = Snapshot::new(cells, Some(device), None, &BmsSoc);
        let note = e["notes"].as_str().unwrap_or_default().to_string();
        (s.cell_info.extended, note)
    };
    let mut stages = 0;
    for id in 46..=51 {
        let (got, note) = snapshot(id);
        let said = ["BULK", "ABS", "FLOAT"]
            .into_iter()
            .zip(ChargeStatus::ALL)
            .find(|(word, _)| note.contains(&format!("comments. {word}")))
            .map(|(_, stage)| stage);
        assert!(said.is_some(), "#{id}: {note}");
        assert_eq!(got.charge_status, said, "#{id}: {note}");
        stages += 1;
    }
    assert_eq!(stages, 6);
    for (id, dry1, dry2) in [
        (53, true, false),
        (54, false, true),
        (55, true, true),
        (56, false, false),
    ] {
        let (got, note) = snapshot(id);
        assert_eq!(
            got.dry_contacts,
            Some(DryContacts { dry1, dry2 }),
            "#{id}: {note}"
        );
    }
    for id in 41..=44 {
        let (got, note) = snapshot(id);
        let ma = got
            .heating_current_ma
            .unwrap_or_else(|| panic!("#{id}: {note}"));
        assert!((509..=514).contains(&ma), "#{id}: {ma} mA");
        // a B-series board on 11.x: no charge status, no dry contacts
        assert_eq!((got.charge_status, got.dry_contacts), (None, None), "#{id}");
    }
    let (off, _) = snapshot(45);
    assert_eq!(
        off.heating_current_ma, None,
        "heater off on a B-series 11.x: not trusted"
    );
}
