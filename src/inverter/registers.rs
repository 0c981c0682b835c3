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
}

const fn u(name: Name, address: u16, scale: f64, unit: &'static str) -> Register {
    Register {
        name,
        address,
        words: 1,
        signed: false,
        scale,
        unit,
    }
}

const fn s(name: Name, address: u16, scale: f64, unit: &'static str) -> Register {
    Register {
        signed: true,
        ..u(name, address, scale, unit)
    }
}

/// A model: the key `INVERTER_MODEL` names it by (the Python monitor's), and its map.
#[derive(Debug, PartialEq)]
pub struct Model {
    pub key: &'static str,
    pub description: &'static str,
    pub registers: &'static [Register],
}

/// Protocol 11 (the vendor's "Protocol No. 11", SMG-II 4K/6K class): live values at 201–234.
const PROTOCOL_11: &[Register] = &[
    u("operating_mode", 201, 1.0, ""),
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
    u("operating_mode", 201, 1.0, ""),
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
    u("clock_year", 696, 1.0, ""),
    u("clock_month", 697, 1.0, ""),
    u("clock_day", 698, 1.0, ""),
    u("clock_hour", 699, 1.0, ""),
    u("clock_minute", 700, 1.0, ""),
    u("clock_second", 701, 1.0, ""),
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

/// The values of one poll, by name: only those whose block was read and checked.
pub type Values = BTreeMap<Name, f64>;

/// The values of `model` in the blocks that were read (`(block, registers)`; a block that
/// failed is simply absent, and so are its values).
pub fn decode(model: &Model, read: &[(Block, Vec<u16>)]) -> Values {
    let mut out = Values::new();
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
        out.insert(r.name, raw as f64 * r.scale);
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
        let v = decode(&SMG_II_11K, &read);
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
        // an unsigned register keeps its high values
        let soc = decode(
            &SMG_II_6K,
            &[(
                Block {
                    start: 229,
                    count: 1,
                },
                vec![0xFFFF],
            )],
        );
        assert_eq!(soc["battery_soc_pct"], 65_535.0);
    }
}
