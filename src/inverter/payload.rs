//! A poll's values as the Python monitor's poller stores them in `readings.payload`: a flat JSON
//! object of strings, its keys in its order, each number with its decimals, "N/A" where there is
//! no value. The Python web and bot read these rows, so the keys and formats are theirs; the
//! values follow the vendor where the Python poller read the wrong register (see the book's
//! "Inverter values that differ from the Python poller").

use super::registers::Values;

/// The working mode in register 201, as the vendor documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    PowerOn,
    Standby,
    /// On mains (line) power.
    Mains,
    /// Off-grid: the load runs from battery and PV.
    OffGrid,
    Bypass,
    Charging,
    Fault,
    Other(u16),
}

impl Mode {
    pub fn from_code(code: u16) -> Mode {
        match code {
            0 => Mode::PowerOn,
            1 => Mode::Standby,
            2 => Mode::Mains,
            3 => Mode::OffGrid,
            4 => Mode::Bypass,
            5 => Mode::Charging,
            6 => Mode::Fault,
            n => Mode::Other(n),
        }
    }

    /// `status_text` as the Python poller stores it where it names the code (2 and 3, under
    /// its output-priority names), the vendor's meaning where it stored `UNKNOWN (n.0)`.
    pub fn status_text(self) -> String {
        match self {
            Mode::PowerOn => "POWER_ON".into(),
            Mode::Standby => "STANDBY".into(),
            Mode::Mains => "SUB".into(),
            Mode::OffGrid => "SBU".into(),
            Mode::Bypass => "BYPASS".into(),
            Mode::Charging => "CHARGING".into(),
            Mode::Fault => "FAULT".into(),
            Mode::Other(n) => format!("UNKNOWN ({n}.0)"),
        }
    }

    /// In words, for jkmon's own views.
    pub fn describe(self) -> String {
        match self {
            Mode::PowerOn => "powering on".into(),
            Mode::Standby => "standby".into(),
            Mode::Mains => "on mains".into(),
            Mode::OffGrid => "off-grid (battery)".into(),
            Mode::Bypass => "bypass".into(),
            Mode::Charging => "charging".into(),
            Mode::Fault => "fault".into(),
            Mode::Other(n) => format!("mode {n}"),
        }
    }
}

/// Grid voltage at or above this means the grid is there (V). Power is not used: a healthy
/// grid with 0 W drawn (SBU, battery first) is not an outage.
pub const GRID_PRESENT_V: f64 = 50.0;

/// Whether the mains is there: up, down, or unknown. Every reader (MQTT and Home Assistant,
/// `/metrics`, the status, the dashboard, the bot, the alerts) takes it from [`grid`], so none
/// of them is told of a loss the inverter did not report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grid {
    Up,
    Down,
    /// The grid voltage was not read (a lost block, an implausible value), the poll is stale,
    /// or nothing polls the inverter: nothing is known, and nothing is concluded.
    Unknown,
}

impl Grid {
    /// `Some(true)` while up, `Some(false)` while down, `None` when unknown.
    pub fn is_up(self) -> Option<bool> {
        match self {
            Grid::Up => Some(true),
            Grid::Down => Some(false),
            Grid::Unknown => None,
        }
    }
}

/// The one grid rule, from what one poll (or one `readings` row) read: the grid voltage decides
/// — at least [`GRID_PRESENT_V`] is up, below it down — and a voltage not read is unknown,
/// whatever the mode (off-grid with the grid there is battery-first by choice, not a loss). A
/// low voltage while the inverter says it runs on mains contradicts itself: unknown too.
pub fn grid(mode: Option<Mode>, grid_voltage_v: Option<f64>) -> Grid {
    match grid_voltage_v {
        None => Grid::Unknown,
        Some(v) if v >= GRID_PRESENT_V => Grid::Up,
        Some(_) if mode == Some(Mode::Mains) => Grid::Unknown,
        Some(_) => Grid::Down,
    }
}

/// The mode the Python poller's `status_text` names (`SUB`, `SBU`, …), where it names one.
pub fn mode_of_status_text(text: &str) -> Option<Mode> {
    [
        Mode::PowerOn,
        Mode::Standby,
        Mode::Mains,
        Mode::OffGrid,
        Mode::Bypass,
        Mode::Charging,
        Mode::Fault,
    ]
    .into_iter()
    .find(|m| m.status_text() == text)
}

/// The mode in `values`, if register 201 was read.
pub fn mode(values: &Values) -> Option<Mode> {
    values
        .get("operating_mode")
        .map(|m| Mode::from_code(*m as u16))
}

/// The battery current: register 232 (the vendor's), or the reserved 216 the Python client read
/// when a device leaves 232 at zero and answers there. The second is true in that case.
pub fn battery_current_a(values: &Values) -> (Option<f64>, bool) {
    let vendor = values.get("battery_current_a").copied();
    match (vendor, values.get("battery_current_legacy_a").copied()) {
        (Some(v), Some(legacy)) if v == 0.0 && legacy != 0.0 => (Some(legacy), true),
        (v, _) => (v, false),
    }
}

/// Why a poll gives no row of values.
pub const NO_VALUES: &str =
    "no register block of the inverter could be read (every read failed its checks)";

/// The `readings.payload` JSON of a poll's `values`; `Err` with the text of the error row
/// instead when no value at all was read (the Python poller stored those as rows of "N/A").
pub fn payload(values: &Values) -> Result<String, &'static str> {
    let get = |name: &str| values.get(name).copied();
    let grid_v = get("grid_voltage_v");
    let grid_w = get("grid_power_w");
    // measured where the model has it; else grid power over grid voltage
    let grid_a = get("grid_current_a").or(match (grid_w, grid_v) {
        (Some(w), Some(v)) if v != 0.0 => Some(w / v),
        _ => None,
    });
    let output_w = get("output_power_w");
    // grid minus load, as the Python poller computes it (its readers know it so)
    let charge_w = match (grid_w, output_w) {
        (None, None) => None,
        (g, o) => Some(g.unwrap_or(0.0) - o.unwrap_or(0.0)),
    };
    let fields: [(&str, Option<f64>, usize); 16] = [
        ("grid_voltage", grid_v, 1),
        ("grid_power", grid_w, 0),
        ("grid_current", grid_a, 2),
        ("ac_output_voltage", get("output_voltage_v"), 1),
        ("ac_output_freq", get("output_frequency_hz"), 2),
        ("ac_output_power", output_w, 0),
        ("ac_output_current", get("output_current_a"), 1),
        ("battery_voltage", get("battery_voltage_v"), 1),
        ("battery_current", battery_current_a(values).0, 1),
        ("battery_power", get("battery_power_w"), 0),
        ("battery_soc", get("battery_soc_pct"), 0),
        ("battery_charge_power", charge_w, 0),
        ("pv_input_voltage", get("pv1_voltage_v"), 1),
        ("pv_input_power", get("pv_power_w"), 0),
        ("pv_input_current", get("pv1_current_a"), 1),
        ("temperature", get("dcdc_temperature_c"), 0),
    ];
    if fields.iter().all(|(_, v, _)| v.is_none()) {
        return Err(NO_VALUES);
    }
    let status = mode(values).map_or_else(|| "UNKNOWN".to_string(), Mode::status_text);
    // json.dumps' defaults: ", " and ": " between items, keys in this order
    let mut out = String::from("{");
    for (key, value, decimals) in fields {
        let text = value.map_or_else(|| "N/A".to_string(), |v| format!("{v:.decimals$}"));
        out.push_str(&format!("\"{key}\": \"{text}\", "));
    }
    out.push_str(&format!(
        "\"status_text\": {}}}",
        serde_json::to_string(&status).unwrap_or_default()
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_is_down_only_when_the_inverter_read_no_voltage() {
        // up by the voltage, whatever the mode (off-grid by choice is not a loss)
        for mode in [None, Some(Mode::Mains), Some(Mode::OffGrid)] {
            assert_eq!(grid(mode, Some(229.0)), Grid::Up, "{mode:?}");
        }
        assert_eq!(grid(Some(Mode::OffGrid), Some(0.0)), Grid::Down);
        assert_eq!(grid(None, Some(3.0)), Grid::Down);
        // the voltage not read: unknown, in off-grid mode too (the false "grid lost")
        for mode in [
            None,
            Some(Mode::Mains),
            Some(Mode::OffGrid),
            Some(Mode::Fault),
        ] {
            assert_eq!(grid(mode, None), Grid::Unknown, "{mode:?}");
        }
        // "on mains" with no voltage contradicts itself
        assert_eq!(grid(Some(Mode::Mains), Some(0.0)), Grid::Unknown);
        assert_eq!(Grid::Unknown.is_up(), None);
        assert_eq!(
            mode_of_status_text(&Mode::OffGrid.status_text()),
            Some(Mode::OffGrid)
        );
        assert_eq!(mode_of_status_text("UNKNOWN (9.0)"), None);
    }
    use crate::inverter::registers::{decode, Block, SMG_II_6K};

    /// The protocol-11 image behind the Python poller's stored example row (a 6K on mains).
    fn mains_6k() -> Vec<u16> {
        let mut r = vec![0u16; 34];
        let mut set = |address: u16, value: i32| r[usize::from(address - 201)] = value as u16;
        set(201, 2);
        set(202, 2303);
        set(203, 5000);
        set(204, 1163);
        set(210, 2300);
        set(211, 54);
        set(212, 5000);
        set(213, 1148);
        set(214, 1200);
        set(215, 528);
        set(216, 425);
        set(217, 2219);
        set(219, 3439);
        set(220, 67);
        set(223, 2294);
        set(224, 2200);
        set(225, 23);
        set(226, 36);
        set(227, 40);
        set(228, 31);
        set(229, 65);
        set(232, 425);
        set(234, 420);
        r
    }

    /// The index of register `address` in the 201 ×34 block.
    fn at(address: usize) -> usize {
        address - 201
    }

    fn values(regs: Vec<u16>) -> Values {
        let decoded = decode(
            &SMG_II_6K,
            &[(
                Block {
                    start: 201,
                    count: 34,
                },
                regs,
            )],
        );
        assert!(decoded.implausible.is_empty(), "{:?}", decoded.implausible);
        decoded.values
    }

    #[test]
    fn the_row_is_the_python_pollers_string_for_string() {
        // the row the Python poller stored for these registers (its keys, order and formats)
        let want = r#"{"grid_voltage": "230.3", "grid_power": "1163", "grid_current": "5.05", "ac_output_voltage": "230.0", "ac_output_freq": "50.00", "ac_output_power": "1148", "ac_output_current": "5.4", "battery_voltage": "52.8", "battery_current": "42.5", "battery_power": "2219", "battery_soc": "65", "battery_charge_power": "15", "pv_input_voltage": "343.9", "pv_input_power": "2294", "pv_input_current": "6.7", "temperature": "36", "status_text": "SUB"}"#;
        assert_eq!(payload(&values(mains_6k())).unwrap(), want);
        // and Python's json reads it back into the same keys
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(want).unwrap();
        assert_eq!(parsed.len(), 17);
    }

    #[test]
    fn off_grid_the_grid_reads_zero_and_its_current_is_not_made_up() {
        let mut r = mains_6k();
        r[0] = 3;
        (r[1], r[2], r[3]) = (0, 0, 0);
        let row = payload(&values(r)).unwrap();
        assert!(row.contains(r#""grid_voltage": "0.0", "grid_power": "0", "grid_current": "N/A""#));
        assert!(row.contains(r#""battery_charge_power": "-1148""#), "{row}");
        assert!(row.ends_with(r#""status_text": "SBU"}"#));
        // at night PV reads 0 W, and says so (the Python poller stored "N/A")
        let mut r = mains_6k();
        r[at(223)] = 0;
        assert!(payload(&values(r))
            .unwrap()
            .contains(r#""pv_input_power": "0""#));
    }

    #[test]
    fn the_battery_current_is_the_vendors_register_with_the_old_one_as_fallback() {
        let mut r = mains_6k();
        r[at(232)] = (-123i16) as u16;
        assert!(payload(&values(r.clone()))
            .unwrap()
            .contains(r#""battery_current": "-12.3""#));
        assert!(!battery_current_a(&values(r)).1);
        // 232 left at zero by a device that answers at 216
        let mut r = mains_6k();
        r[at(232)] = 0;
        let v = values(r);
        assert_eq!(battery_current_a(&v), (Some(425.0 * 0.1), true));
    }

    #[test]
    fn modes_keep_the_python_names_and_name_the_rest() {
        let text = |code| Mode::from_code(code).status_text();
        assert_eq!(text(2), "SUB");
        assert_eq!(text(3), "SBU");
        assert_eq!(text(4), "BYPASS");
        assert_eq!(text(0), "POWER_ON");
        assert_eq!(text(42), "UNKNOWN (42.0)");
        assert_eq!(Mode::from_code(3).describe(), "off-grid (battery)");
        // no mode read: UNKNOWN, as before
        let mut v = values(mains_6k());
        v.remove("operating_mode");
        assert!(payload(&v)
            .unwrap()
            .ends_with(r#""status_text": "UNKNOWN"}"#));
    }

    #[test]
    fn nothing_read_is_an_error_row_not_a_row_of_na() {
        assert_eq!(payload(&Values::new()), Err(NO_VALUES));
        // one value is a row, the rest "N/A"
        let mut v = Values::new();
        v.insert("battery_soc_pct", 80.0);
        let row = payload(&v).unwrap();
        assert!(row.contains(r#""battery_soc": "80""#));
        assert!(row.contains(r#""grid_voltage": "N/A""#));
        assert!(row.contains(r#""battery_charge_power": "N/A""#));
    }

    #[test]
    fn numbers_round_as_python_formats_them() {
        // Python's f"{v:.Nf}": half to even on the binary value, "-0.0" for a small negative
        for (v, d, want) in [
            (0.5, 0, "0"),
            (1.5, 0, "2"),
            (2.5, 0, "2"),
            (-0.5, 0, "-0"),
            (0.125, 2, "0.12"),
            (2.675, 2, "2.67"),
            (230.05, 1, "230.1"),
            (-0.04, 1, "-0.0"),
        ] {
            assert_eq!(format!("{v:.d$}"), want, "{v} .{d}");
        }
    }
}
