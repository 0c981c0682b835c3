//! The register maps of the Easun / ISolar SMG-II models, as data: one table per model, each
//! register with its value name, address, width, signedness and scale. Adding a model is adding
//! a table. From a map follow the reads a poll makes ([`blocks`]) and the values of their
//! answers ([`decode`]).
//!
//! Where the sources disagree (`../shared/easun-inverter.md` §7), the vendor's documents win
//! over the Python client's map: the 6K/4K battery current is register 232 (216 is reserved),
//! the load is 1 % per unit, the 11K's frequencies are the measured 203 and 253 (not the setting
//! at 607), the 11K's total PV energy is the 32-bit value over 703–704.

use std::collections::BTreeMap;

/// A value's name in jkmon (the key of [`Values`]).
pub type Name = &'static str;

/// One value in the inverter's registers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Register {
    pub name: Name,
    pub address: u16,
    /// 1, or 2 for a 32-bit value (high word first).
    pub words: u8,
    pub signed: bool,
    /// Multiplier on the raw integer (0.1 for a register in tenths).
    pub scale: f64,
    pub unit: &'static str,
    /// The plausible range of the value (in `unit`, both ends included): what such an inverter
    /// can show. A value outside it is a confused gateway or a half-booted inverter (`0x7FFF`,
    /// `0x8000`, `0xFFFF` read as 3276.7 V or 65535 %), and is taken as not read.
    pub plausible: (f64, f64),
}

/// The plausible range of a value by its unit and name, for the SMG-II class (one phase,
/// 230 V, a 48 V battery, up to 11 kW, PV strings up to 500 V): the rated limits with a margin,
/// so that no reading a working inverter gives falls outside.
const fn plausible(name: Name, unit: &'static str) -> (f64, f64) {
    let n = name.as_bytes();
    match unit.as_bytes() {
        // grid and output up to 300 V; the battery (48 V class) up to 100 V; PV up to 600 V
        b"V" if starts_with(n, b"pv") => (0.0, 600.0),
        b"V" if starts_with(n, b"battery") => (0.0, 100.0),
        b"V" => (0.0, 300.0),
        // 0 Hz where there is no grid
        b"Hz" => (0.0, 70.0),
        b"A" if starts_with(n, b"battery") => (-400.0, 400.0),
        b"A" if starts_with(n, b"pv") => (0.0, 400.0),
        b"A" => (-100.0, 100.0),
        b"W" | b"VA" if starts_with(n, b"pv") => (0.0, 20_000.0),
        b"W" | b"VA" => (-20_000.0, 20_000.0),
        b"%" if starts_with(n, b"battery_soc") => (0.0, 100.0),
        // the load may exceed 100 % briefly (the inverter's overload)
        b"%" => (0.0, 200.0),
        b"\xc2\xb0C" => (-40.0, 150.0),
        // today's: 20 kW for a whole day at most; the total: 10 GWh
        b"kWh" if ends_with(n, b"today_kwh") => (0.0, 500.0),
        b"kWh" => (0.0, 10_000_000.0),
        _ => (f64::MIN, f64::MAX),
    }
}

const fn starts_with(s: &[u8], prefix: &[u8]) -> bool {
    if s.len() < prefix.len() {
        return false;
    }
    let mut i = 0;
    while i < prefix.len() {
        if s[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn ends_with(s: &[u8], suffix: &[u8]) -> bool {
    if s.len() < suffix.len() {
        return false;
    }
    let mut i = 0;
    while i < suffix.len() {
        if s[s.len() - suffix.len() + i] != suffix[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn u(name: Name, address: u16, scale: f64, unit: &'static str) -> Register {
    Register {
        name,
        address,
        words: 1,
        signed: false,
        scale,
        unit,
        plausible: plausible(name, unit),
    }
}

const fn s(name: Name, address: u16, scale: f64, unit: &'static str) -> Register {
    Register {
        signed: true,
        ..u(name, address, scale, unit)
    }
}

/// A register with an explicit range (codes and clock fields).
const fn within(register: Register, min: f64, max: f64) -> Register {
    Register {
        plausible: (min, max),
        ..register
    }
}

/// The working mode: the vendor documents codes 0 to 6.
const MODE: Register = within(u("operating_mode", 201, 1.0, ""), 0.0, 6.0);

/// A model: the key `INVERTER_MODEL` names it by (the Python monitor's), and its map.
#[derive(Debug, PartialEq)]
pub struct Model {
    pub key: &'static str,
    pub description: &'static str,
    pub registers: &'static [Register],
}

/// Protocol 11 (the vendor's "Protocol No. 11", SMG-II 4K/6K class): live values at 201–234.
const PROTOCOL_11: &[Register] = &[
    MODE,
    s("grid_voltage_v", 202, 0.1, "V"),
    s("grid_frequency_hz", 203, 0.01, "Hz"),
    s("grid_power_w", 204, 1.0, "W"),
    s("output_voltage_v", 210, 0.1, "V"),
    s("output_current_a", 211, 0.1, "A"),
    s("output_frequency_hz", 212, 0.01, "Hz"),
    s("output_power_w", 213, 1.0, "W"),
    s("output_apparent_power_va", 214, 1.0, "VA"),
    s("battery_voltage_v", 215, 0.1, "V"),
    // reserved in the vendor's protocol; what the Python client read as the battery current
    s("battery_current_legacy_a", 216, 0.1, "A"),
    s("battery_power_w", 217, 1.0, "W"),
    s("pv1_voltage_v", 219, 0.1, "V"),
    s("pv1_current_a", 220, 0.1, "A"),
    s("pv_power_w", 223, 1.0, "W"),
    s("pv_charging_power_w", 224, 1.0, "W"),
    s("load_pct", 225, 1.0, "%"),
    s("dcdc_temperature_c", 226, 1.0, "°C"),
    s("inverter_temperature_c", 227, 1.0, "°C"),
    s("pv_temperature_c", 228, 1.0, "°C"),
    u("battery_soc_pct", 229, 1.0, "%"),
    // + charging, − discharging
    s("battery_current_a", 232, 0.1, "A"),
    s("pv_charging_current_a", 234, 0.1, "A"),
];

/// Protocols 3–6 (SMG-II 8/11 kW): live values spread over 201–391, clock and PV energy at
/// 696–704.
const PROTOCOL_3_6: &[Register] = &[
    MODE,
    s("grid_frequency_hz", 203, 0.01, "Hz"),
    s("output_frequency_hz", 253, 0.01, "Hz"),
    s("battery_voltage_v", 277, 0.1, "V"),
    s("battery_current_a", 278, 0.1, "A"),
    s("battery_power_w", 279, 1.0, "W"),
    u("battery_soc_pct", 280, 1.0, "%"),
    s("dcdc_temperature_c", 281, 1.0, "°C"),
    s("pv_power_w", 302, 1.0, "W"),
    s("pv_charging_power_w", 303, 1.0, "W"),
    s("pv_charging_current_a", 304, 0.1, "A"),
    s("pv_temperature_c", 305, 1.0, "°C"),
    s("grid_voltage_v", 338, 0.1, "V"),
    s("grid_current_a", 339, 0.1, "A"),
    s("grid_power_w", 340, 1.0, "W"),
    s("output_voltage_v", 346, 0.1, "V"),
    s("output_current_a", 347, 0.1, "A"),
    s("output_power_w", 348, 1.0, "W"),
    s("output_apparent_power_va", 349, 1.0, "VA"),
    s("load_pct", 350, 1.0, "%"),
    s("pv1_voltage_v", 351, 0.1, "V"),
    s("pv1_current_a", 352, 0.1, "A"),
    s("pv1_power_w", 353, 1.0, "W"),
    s("pv2_voltage_v", 389, 0.1, "V"),
    s("pv2_current_a", 390, 0.1, "A"),
    s("pv2_power_w", 391, 1.0, "W"),
    within(u("clock_year", 696, 1.0, ""), 2000.0, 2099.0),
    within(u("clock_month", 697, 1.0, ""), 1.0, 12.0),
    within(u("clock_day", 698, 1.0, ""), 1.0, 31.0),
    within(u("clock_hour", 699, 1.0, ""), 0.0, 23.0),
    within(u("clock_minute", 700, 1.0, ""), 0.0, 59.0),
    within(u("clock_second", 701, 1.0, ""), 0.0, 59.0),
    u("pv_energy_today_kwh", 702, 0.01, "kWh"),
    Register {
        words: 2,
        ..u("pv_energy_total_kwh", 703, 0.01, "kWh")
    },
];

pub const SMG_II_4K: Model = Model {
    key: "ISOLAR_SMG_II_4K",
    description: "Easun / ISolar SMG-II 4 kW (protocol 11)",
    registers: PROTOCOL_11,
};

pub const SMG_II_6K: Model = Model {
    key: "ISOLAR_SMG_II_6K",
    description: "Easun / ISolar SMG-II 6 kW (protocol 11)",
    registers: PROTOCOL_11,
};

pub const SMG_II_11K: Model = Model {
    key: "ISOLAR_SMG_II_11K",
    description: "Easun / ISolar SMG-II 11 kW (protocols 3-6)",
    registers: PROTOCOL_3_6,
};

/// Every model jkmon reads.
pub const MODELS: [&Model; 3] = [&SMG_II_4K, &SMG_II_6K, &SMG_II_11K];

/// The model `key` names (as `INVERTER_MODEL` spells it, any case).
pub fn model(key: &str) -> Option<&'static Model> {
    MODELS
        .into_iter()
        .find(|m| m.key.eq_ignore_ascii_case(key.trim()))
}

/// A register block: `count` registers from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub start: u16,
    pub count: u16,
}

/// Registers between two values that a block reads through rather than starting a new read
/// (the Python client's rule, so the dongle sees the reads it is used to).
pub const GAP: u16 = 10;

/// The blocks a poll of `model` reads, in ascending order: a new block wherever the next
/// register is more than [`GAP`] past the current block's end.
pub fn blocks(model: &Model) -> Vec<Block> {
    let mut spans: Vec<(u16, u16)> = model
        .registers
        .iter()
        .map(|r| (r.address, r.address + u16::from(r.words) - 1))
        .collect();
    spans.sort_unstable();
    let mut out: Vec<Block> = Vec::new();
    for (first, last) in spans {
        match out.last_mut() {
            Some(b) if first <= b.start + b.count - 1 + GAP => {
                b.count = b.count.max(last - b.start + 1);
            }
            _ => out.push(Block {
                start: first,
                count: last - first + 1,
            }),
        }
    }
    out
}

/// The values of one poll, by name: only those whose block was read and checked, and that lie
/// in their register's plausible range.
pub type Values = BTreeMap<Name, f64>;

/// A register whose value lay outside its plausible range: taken as not read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Implausible {
    pub register: &'static Register,
    /// The raw integer as read (after the sign).
    pub raw: i64,
}

impl std::fmt::Display for Implausible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.register;
        let (min, max) = r.plausible;
        write!(
            f,
            "{} (register {}) raw {} = {:.*} {} outside {min}..{max}",
            r.name,
            r.address,
            self.raw,
            r.decimals(),
            self.raw as f64 * r.scale,
            r.unit
        )
    }
}

/// What a poll's blocks hold: the plausible values, and the registers that were not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub values: Values,
    pub implausible: Vec<Implausible>,
}

/// The values of `model` in the blocks that were read (`(block, registers)`; a block that
/// failed is simply absent, and so are its values). A value outside its register's plausible
/// range is left out too, and named in [`Decoded::implausible`].
pub fn decode(model: &'static Model, read: &[(Block, Vec<u16>)]) -> Decoded {
    let mut out = Decoded::default();
    for r in model.registers {
        let words: Option<Vec<u16>> = (0..u16::from(r.words))
            .map(|k| word(read, r.address + k))
            .collect();
        let Some(words) = words else { continue };
        let raw: i64 = match (words.as_slice(), r.signed) {
            ([w], true) => i64::from(*w as i16),
            ([w], false) => i64::from(*w),
            ([hi, lo], true) => i64::from(((u32::from(*hi) << 16) | u32::from(*lo)) as i32),
            ([hi, lo], false) => i64::from((u32::from(*hi) << 16) | u32::from(*lo)),
            _ => continue,
        };
        // the raw integer times the scale, as the Python client computes it (bit for bit)
        let value = raw as f64 * r.scale;
        if value < r.plausible.0 || value > r.plausible.1 {
            out.implausible.push(Implausible { register: r, raw });
        } else {
            out.values.insert(r.name, value);
        }
    }
    out
}

/// Whether the value `name` is a measurement to publish on its own (MQTT, `/metrics`): not the
/// clock, not the mode's code (said in words), not the legacy battery-current register (the
/// payload's fallback).
pub fn is_measurement(name: &str) -> bool {
    !(name.starts_with("clock_") || name == "operating_mode" || name.ends_with("_legacy_a"))
}

impl Register {
    /// The decimals of the register's resolution (0.1 → 1, 0.01 → 2, 1 → 0).
    pub fn decimals(&self) -> usize {
        (-self.scale.log10()).round().max(0.0) as usize
    }
}

/// `values` at each register's resolution, for people and other programs (JSON, MQTT,
/// `/metrics`): `-21.7`, never the product's `-21.700000000000003`. The Python poller's
/// payload keeps the product, formatted (see [`super::payload`]).
pub fn at_resolution(model: &Model, values: &Values) -> Values {
    values
        .iter()
        .map(|(name, v)| {
            let decimals = model
                .registers
                .iter()
                .find(|r| r.name == *name)
                .map_or(3, Register::decimals);
            let shown = format!("{v:.decimals$}").parse().unwrap_or(*v);
            (*name, shown)
        })
        .collect()
}

/// Register `address` in whichever block read it.
fn word(read: &[(Block, Vec<u16>)], address: u16) -> Option<u16> {
    read.iter().find_map(|(b, regs)| {
        let i = address.checked_sub(b.start)?;
        (i < b.count).then(|| regs.get(usize::from(i)).copied())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_at_resolution_drop_the_products_noise() {
        let raw = -217.0 * 0.1;
        assert_ne!(raw, -21.7, "the product itself is not -21.7");
        let values: Values = [
            ("battery_current_a", raw),
            ("pv_energy_total_kwh", 9_876_543.0 * 0.01),
        ]
        .into_iter()
        .collect();
        let shown = at_resolution(&SMG_II_6K, &values);
        assert_eq!(shown["battery_current_a"], -21.7);
        // a name the model does not have keeps three decimals
        assert_eq!(shown["pv_energy_total_kwh"], 98_765.43);
    }

    #[test]
    fn every_model_has_unique_names_and_addresses() {
        for m in MODELS {
            let mut names: Vec<Name> = m.registers.iter().map(|r| r.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), m.registers.len(), "{}", m.key);
            let mut addresses: Vec<u16> = m.registers.iter().map(|r| r.address).collect();
            addresses.sort_unstable();
            addresses.dedup();
            assert_eq!(addresses.len(), m.registers.len(), "{}", m.key);
            for b in blocks(m) {
                assert!((1..=crate::inverter::modbus::MAX_COUNT).contains(&b.count));
            }
        }
        assert_eq!(model("isolar_smg_ii_6k").unwrap().key, "ISOLAR_SMG_II_6K");
        assert!(model("SMG_II_9K").is_none());
    }

    #[test]
    fn blocks_follow_the_python_clients_rule() {
        // protocol 11: one read through 201..234 (the vendor reads it so on a real 6.2 kW unit)
        assert_eq!(
            blocks(&SMG_II_6K),
            [Block {
                start: 201,
                count: 34
            }]
        );
        let b = |start, count| Block { start, count };
        // protocols 3-6: the Python client's blocks, plus the measured frequencies at 203 and
        // 253 (instead of the setting at 607) and PV energy's low word at 704
        assert_eq!(
            blocks(&SMG_II_11K),
            [
                b(201, 3),
                b(253, 1),
                b(277, 5),
                b(302, 4),
                b(338, 16),
                b(389, 3),
                b(696, 9),
            ]
        );
    }

    #[test]
    fn values_take_their_scale_and_sign_and_a_failed_block_gives_none() {
        // the captured 11K answers (SmartESS app traffic): 277 ×5, 338 ×1, 346 ×8, 696 ×9
        let read = [
            (
                Block {
                    start: 277,
                    count: 5,
                },
                vec![521, 0xFF9E, 0xFE02, 66, 21],
            ),
            (
                Block {
                    start: 338,
                    count: 16,
                },
                vec![
                    2399, 0, 0, 2301, 50, 495, 0, 0, 2300, 21, 399, 483, 4, 226, 0, 0,
                ],
            ),
            (
                Block {
                    start: 696,
                    count: 9,
                },
                vec![2024, 12, 20, 13, 46, 57, 150, 0x0001, 0x0002],
            ),
        ];
        let v = decode(&SMG_II_11K, &read).values;
        assert_eq!(v["battery_voltage_v"], 521.0 * 0.1);
        assert_eq!(v["battery_current_a"], -98.0 * 0.1);
        assert_eq!(v["battery_power_w"], -510.0);
        assert_eq!(v["battery_soc_pct"], 66.0);
        assert_eq!(v["dcdc_temperature_c"], 21.0);
        assert_eq!(v["grid_voltage_v"], 2399.0 * 0.1);
        assert_eq!(v["output_voltage_v"], 2300.0 * 0.1);
        assert_eq!(v["output_power_w"], 399.0);
        assert_eq!(v["load_pct"], 4.0);
        assert_eq!(v["pv1_voltage_v"], 226.0 * 0.1);
        assert_eq!(v["clock_year"], 2024.0);
        assert_eq!(v["clock_second"], 57.0);
        assert_eq!(v["pv_energy_today_kwh"], 150.0 * 0.01);
        // 32 bits, high word first: 0x0001_0002 hundredths of a kWh
        assert_eq!(v["pv_energy_total_kwh"], 65_538.0 * 0.01);
        // blocks that were not read: no value, never a zero
        assert!(!v.contains_key("operating_mode"));
        assert!(!v.contains_key("pv_power_w"));
    }

    #[test]
    fn a_value_no_inverter_can_show_is_not_read() {
        // what a confused RS485 gateway or a half-booted inverter answers: 0x7FFF or 0x8000
        // in every register of protocol 11's block
        for filler in [0x7FFF_u16, 0x8000] {
            let mut regs = vec![filler; 34];
            regs[0] = 2; // the mode is read (on mains)
            let d = decode(
                &SMG_II_6K,
                &[(
                    Block {
                        start: 201,
                        count: 34,
                    },
                    regs,
                )],
            );
            assert_eq!(
                d.values.keys().copied().collect::<Vec<_>>(),
                ["operating_mode"],
                "{filler:#06x}: {:?}",
                d.values
            );
            let names: Vec<&str> = d.implausible.iter().map(|i| i.register.name).collect();
            for name in [
                "grid_voltage_v",
                "output_frequency_hz",
                "battery_soc_pct",
                "grid_power_w",
            ] {
                assert!(names.contains(&name), "{filler:#06x}: {names:?}");
            }
        }
        // 0xFFFF: 65535 % in the unsigned SOC, -0.1 V and -0.01 Hz in the signed ones are
        // impossible; -1 W is a plausible reading of a signed power register
        let d = decode(
            &SMG_II_6K,
            &[(
                Block {
                    start: 201,
                    count: 34,
                },
                vec![0xFFFF; 34],
            )],
        );
        let names: Vec<&str> = d.implausible.iter().map(|i| i.register.name).collect();
        for name in [
            "operating_mode",
            "grid_voltage_v",
            "output_frequency_hz",
            "battery_soc_pct",
        ] {
            assert!(names.contains(&name), "0xffff: {names:?}");
        }
        assert_eq!(d.values.get("grid_power_w"), Some(&-1.0));
        // the warning names the register, its address and the raw value
        let d = decode(
            &SMG_II_6K,
            &[(
                Block {
                    start: 202,
                    count: 1,
                },
                vec![0x7FFF],
            )],
        );
        assert_eq!(
            d.implausible[0].to_string(),
            "grid_voltage_v (register 202) raw 32767 = 3276.7 V outside 0..300"
        );
        // the edges are plausible: 0 V (no grid), a full battery, -40 °C
        let d = decode(
            &SMG_II_6K,
            &[(
                Block {
                    start: 202,
                    count: 28,
                },
                {
                    let mut r = vec![0u16; 28];
                    r[229 - 202] = 100;
                    r[228 - 202] = (-40_i16) as u16;
                    r
                },
            )],
        );
        assert!(d.implausible.is_empty(), "{:?}", d.implausible);
        assert_eq!(d.values["battery_soc_pct"], 100.0);
        assert_eq!(d.values["pv_temperature_c"], -40.0);
        // every register of every model has a range that holds zero or its own floor
        for m in MODELS {
            for r in m.registers {
                assert!(r.plausible.0 < r.plausible.1, "{}", r.name);
            }
        }
    }
}
