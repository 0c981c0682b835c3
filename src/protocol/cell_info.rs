//! Cell-info frames (type 0x02): the live measurements, pushed about twice a second.
//!
//! Every offset is in one [`Jk02Layout`] per JK02 variant (§2.1, §2.2) and in [`jk04`] (§2.4).
//! Values stay fixed-point with their unit in the name; floats appear only at the edges (JSON,
//! display). Cells are kept only where they exist (the enabled-cells mask), so a 16-cell pack
//! has 16 voltages, never 24 or 32.

use super::alarms::{AlarmTable, Alarms};
use super::variant::{detect_from_cell_info, Variant};
use super::{
    expect_frame, read_f32, read_i16, read_i32, read_u16, read_u32, read_u8, seal_frame, write_u16,
    write_u32, DecodeError, FrameType, FRAME_LEN,
};

/// Raw temperature value that means "no sensor connected" (−200.0 °C, §6).
pub const TEMP_ABSENT_DC: i16 = -2000;

/// Where each field of a JK02 cell-info frame lives. Offsets from the `55` of the header.
#[derive(Debug, Clone, Copy)]
pub struct Jk02Layout {
    pub variant: Variant,
    /// Number of cell slots (24 or 32).
    pub cell_slots: usize,
    /// `u16[slots]` mV, cell 1 first.
    pub cell_voltages: usize,
    /// u32 bitmask, bit 0 = cell 1 present.
    pub enabled_cells: usize,
    /// u16 mV, the BMS's own average and delta (may lag the cells by a few mV).
    pub cell_avg: usize,
    pub cell_delta: usize,
    /// u8, 0-based index of the highest / lowest cell as the BMS sees it.
    pub max_cell_index: usize,
    pub min_cell_index: usize,
    /// `u16[slots]` mΩ, balance-wire resistance per cell.
    pub cell_resistances: usize,
    /// i16 0.1 °C, the MOSFET temperature.
    pub mos_temp: usize,
    /// u32 mV, pack voltage (u32: a u16 would overflow above 65.535 V).
    pub pack_voltage: usize,
    /// u32 mW, |V·I| (unsigned: never take the direction from it).
    pub power: usize,
    /// i32 mA, + charging / − discharging.
    pub current: usize,
    /// i16 0.1 °C sensors T1, T2 (and on 32S T3-T5 at 254/256/258), with the present-mask bit.
    pub sensors: &'static [(usize, u8)],
    /// Alarm word and its width in bytes (2 on 24S, 4 on 32S).
    pub alarms: usize,
    pub alarms_width: usize,
    /// i16 mA.
    pub balance_current: usize,
    /// u8: 0 off, 1 charging balancer, 2 discharging balancer.
    pub balancing_action: usize,
    /// u8 %.
    pub soc: usize,
    /// u32 mAh.
    pub remaining_capacity: usize,
    /// u32 mAh, the BMS's full-charge capacity (aged on 11.x, see §6).
    pub full_charge_capacity: usize,
    /// u32.
    pub cycle_count: usize,
    /// u32 mAh, lifetime ∫|I|dt.
    pub cycle_capacity: usize,
    /// u8 %.
    pub soh: usize,
    /// u32 s.
    pub runtime: usize,
    /// u8 bools.
    pub charge_mosfet: usize,
    pub discharge_mosfet: usize,
    /// u8 bitmask: bit 0 MOS, bit 1 T1, bit 2 T2, bit 3 T3, bit 4 T4, bit 5 T5; 1 = present.
    pub sensor_mask: usize,
    /// u8 bool.
    pub heating: usize,
}

/// JK02_32S (firmware 11+, JK-PB): §2.1.
pub const JK02_32S: Jk02Layout = Jk02Layout {
    variant: Variant::Jk02_32s,
    cell_slots: 32,
    cell_voltages: 6,
    enabled_cells: 70,
    cell_avg: 74,
    cell_delta: 76,
    max_cell_index: 78,
    min_cell_index: 79,
    cell_resistances: 80,
    mos_temp: 144,
    pack_voltage: 150,
    power: 154,
    current: 158,
    sensors: &[(162, 1), (164, 2), (254, 3), (256, 4), (258, 5)],
    alarms: 166,
    alarms_width: 4,
    balance_current: 170,
    balancing_action: 172,
    soc: 173,
    remaining_capacity: 174,
    full_charge_capacity: 178,
    cycle_count: 182,
    cycle_capacity: 186,
    soh: 190,
    runtime: 194,
    charge_mosfet: 198,
    discharge_mosfet: 199,
    sensor_mask: 214,
    heating: 215,
};

/// JK02_24S (firmware below 11): §2.2. Same order, no 16-byte cell extension, no 32-byte shift,
/// MOS temperature at 134 and a 16-bit alarm word at 136.
pub const JK02_24S: Jk02Layout = Jk02Layout {
    variant: Variant::Jk02_24s,
    cell_slots: 24,
    cell_voltages: 6,
    enabled_cells: 54,
    cell_avg: 58,
    cell_delta: 60,
    max_cell_index: 62,
    min_cell_index: 63,
    cell_resistances: 64,
    mos_temp: 134,
    pack_voltage: 118,
    power: 122,
    current: 126,
    sensors: &[(130, 1), (132, 2)],
    alarms: 136,
    alarms_width: 2,
    balance_current: 138,
    balancing_action: 140,
    soc: 141,
    remaining_capacity: 142,
    full_charge_capacity: 146,
    cycle_count: 150,
    cycle_capacity: 154,
    soh: 158,
    runtime: 162,
    charge_mosfet: 166,
    discharge_mosfet: 167,
    sensor_mask: 182,
    heating: 183,
};

/// JK04 (§2.4): cells and resistances are f32 in volts and ohms; no pack voltage, current, SOC
/// or temperatures are known for this layout.
pub mod jk04 {
    /// `f32[24]` V.
    pub const CELL_VOLTAGES: usize = 6;
    /// `f32[24]` Ω.
    pub const CELL_RESISTANCES: usize = 102;
    /// f32 V, the BMS's average and delta.
    pub const CELL_AVG: usize = 202;
    pub const CELL_DELTA: usize = 206;
    /// u8: 0 off, 1 charging balancer, 2 discharging balancer.
    pub const BALANCING_ACTION: usize = 220;
    /// f32 A.
    pub const BALANCE_CURRENT: usize = 222;
    /// u32 s.
    pub const RUNTIME: usize = 286;
    pub const CELL_SLOTS: usize = 24;
}

/// What the balancer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balancing {
    Off,
    Charging,
    Discharging,
    /// Balancing, direction not reported (serial `4E 57` status bit 2).
    Active,
    Other(u8),
}

impl Balancing {
    pub fn from_byte(b: u8) -> Balancing {
        match b {
            0 => Balancing::Off,
            1 => Balancing::Charging,
            2 => Balancing::Discharging,
            other => Balancing::Other(other),
        }
    }
    pub fn byte(self) -> u8 {
        match self {
            Balancing::Off => 0,
            Balancing::Charging => 1,
            Balancing::Discharging => 2,
            Balancing::Active => 1,
            Balancing::Other(b) => b,
        }
    }
    pub fn is_active(self) -> bool {
        self != Balancing::Off
    }
}

/// Temperatures in 0.1 °C. `sensors_dc[0]` is T1 … `sensors_dc[4]` is T5; `None` where the
/// sensor is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Temperatures {
    pub mos_dc: Option<i16>,
    pub sensors_dc: [Option<i16>; 5],
}

/// One cell-info frame, decoded. `None` means the layout does not carry the field.
#[derive(Debug, Clone, PartialEq)]
pub struct CellInfo {
    pub variant: Variant,
    /// Byte 5, increments per frame on BLE.
    pub counter: u8,
    /// Present cells only, cell 1 first, µV (JK02 reports whole mV, JK04 floats).
    pub cell_voltages_uv: Vec<u32>,
    /// Same cells, µΩ.
    pub cell_resistances_uohm: Vec<u32>,
    /// Pack voltage in mV; on JK04 (which has none) the sum of the cells.
    pub total_voltage_mv: u32,
    /// Current in mA, positive = charging, negative = discharging.
    pub current_ma: Option<i32>,
    /// The BMS's own power field in mW: |V·I|, no sign.
    pub bms_power_mw: Option<u32>,
    /// State of charge as the BMS computes it.
    pub soc_pct: Option<u8>,
    pub remaining_capacity_mah: Option<u32>,
    /// The BMS's full-charge capacity (JSON `nominal_capacity_ah`).
    pub nominal_capacity_mah: Option<u32>,
    pub cycle_count: Option<u32>,
    pub cycle_capacity_mah: Option<u32>,
    pub soh_pct: Option<u8>,
    pub temperatures: Temperatures,
    /// Balance current in mA (sign as the BMS reports it; not documented by JK).
    pub balance_current_ma: Option<i32>,
    pub balancing: Balancing,
    pub charging_enabled: Option<bool>,
    pub discharging_enabled: Option<bool>,
    pub heating: Option<bool>,
    /// The fields at the end of a JK02_32S frame; `None` elsewhere, and where the board's
    /// firmware does not fill them ([`CellInfo::keep_what_the_firmware_fills`]).
    pub extended: Extended,
    pub alarms: Alarms,
    pub uptime_s: Option<u32>,
    /// The BMS's own statistics, µV and 0-based indexes, kept for comparison with the derived ones.
    pub bms_cell_avg_uv: Option<u32>,
    pub bms_cell_delta_uv: Option<u32>,
}

/// Where a JK-PB charger stands (byte 280, firmware 15 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChargeStatus {
    Bulk,
    Absorption,
    Float,
}

impl ChargeStatus {
    pub fn from_byte(b: u8) -> Option<ChargeStatus> {
        match b {
            0 => Some(ChargeStatus::Bulk),
            1 => Some(ChargeStatus::Absorption),
            2 => Some(ChargeStatus::Float),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChargeStatus::Bulk => "bulk",
            ChargeStatus::Absorption => "absorption",
            ChargeStatus::Float => "float",
        }
    }

    pub const ALL: [ChargeStatus; 3] = [
        ChargeStatus::Bulk,
        ChargeStatus::Absorption,
        ChargeStatus::Float,
    ];
}

/// The JK-PB's two dry contacts (byte 281: bit 1 DRY1, bit 2 DRY2), closed or open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DryContacts {
    pub dry1: bool,
    pub dry2: bool,
}

/// The last values of a JK02_32S cell-info frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extended {
    /// Byte 191: the precharge circuit is on.
    pub precharging: Option<bool>,
    /// Bytes 236–237, i16 mA: the heater's current.
    pub heating_current_ma: Option<i32>,
    /// Byte 280.
    pub charge_status: Option<ChargeStatus>,
    /// Byte 281.
    pub dry_contacts: Option<DryContacts>,
}

/// JK02_32S offsets of [`Extended`]'s fields (§2.1).
pub mod extended {
    pub const PRECHARGING: usize = 191;
    pub const HEATING_CURRENT: usize = 236;
    pub const CHARGE_STATUS: usize = 280;
    pub const DRY_CONTACTS: usize = 281;
}

/// The major version of a firmware string (`15.38` → 15, `11.288H` → 11).
fn firmware_major(software_version: &str) -> Option<u32> {
    let digits: String = software_version
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The ranges a JK BMS's values can take: a state of charge or of health is a percentage; an
/// NTC probe reads −40…+120 °C (the boards' protection settings stop at −40 and +100);
/// no JK board carries more than 2000 A.
pub const SOC_MAX_PCT: u8 = 100;
pub const TEMP_RANGE_DC: std::ops::RangeInclusive<i16> = -500..=1500;
pub const CURRENT_MAX_MA: i32 = 2_000_000;

/// A value outside what a JK BMS can report, taken as not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Implausible {
    pub field: &'static str,
    pub raw: i64,
}

impl std::fmt::Display for Implausible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}", self.field, self.raw)
    }
}

impl CellInfo {
    /// Clears the values no JK BMS can report (a state of charge of 255 %, a probe at
    /// +3276.7 °C, a current of 2 MA): they are unknown, never facts. Returns what it cleared.
    pub fn drop_implausible(&mut self) -> Vec<Implausible> {
        let mut out = Vec::new();
        let mut check_pct = |field: &'static str, v: &mut Option<u8>| {
            if let Some(raw) = v.filter(|p| *p > SOC_MAX_PCT) {
                out.push(Implausible {
                    field,
                    raw: i64::from(raw),
                });
                *v = None;
            }
        };
        check_pct("soc_pct", &mut self.soc_pct);
        check_pct("soh_pct", &mut self.soh_pct);
        if let Some(raw) = self
            .current_ma
            .filter(|i| i.unsigned_abs() > CURRENT_MAX_MA as u32)
        {
            out.push(Implausible {
                field: "current_ma",
                raw: i64::from(raw),
            });
            self.current_ma = None;
            self.bms_power_mw = None;
        }
        let names = [
            "temperature_t1",
            "temperature_t2",
            "temperature_t3",
            "temperature_t4",
            "temperature_t5",
        ];
        let probes = std::iter::once(("temperature_mos", &mut self.temperatures.mos_dc)).chain(
            names
                .into_iter()
                .zip(self.temperatures.sensors_dc.iter_mut()),
        );
        for (field, t) in probes {
            if let Some(raw) = t.filter(|dc| !TEMP_RANGE_DC.contains(dc)) {
                out.push(Implausible {
                    field,
                    raw: i64::from(raw),
                });
                *t = None;
            }
        }
        out
    }
}

/// Min / max / average / delta over the present cells, computed from the cell voltages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellStats {
    pub min_uv: u32,
    pub max_uv: u32,
    pub avg_uv: u32,
    pub delta_uv: u32,
    /// 1-based; the first cell wins a tie.
    pub min_index: usize,
    pub max_index: usize,
}

impl CellInfo {
    /// A plausible 4-cell JK02_32S reading (every field set), for tests and benchmarks.
    pub fn example() -> CellInfo {
        CellInfo {
            variant: Variant::Jk02_32s,
            counter: 0x17,
            cell_voltages_uv: vec![3_381_000, 3_376_000, 3_374_000, 3_380_000],
            cell_resistances_uohm: vec![60_000, 61_000, 59_000, 62_000],
            total_voltage_mv: 13_511,
            current_ma: Some(-727),
            bms_power_mw: Some(9_822),
            soc_pct: Some(99),
            remaining_capacity_mah: Some(312_898),
            nominal_capacity_mah: Some(314_000),
            cycle_count: Some(5),
            cycle_capacity_mah: Some(1_610_314),
            soh_pct: Some(100),
            temperatures: Temperatures {
                mos_dc: Some(128),
                sensors_dc: [Some(119), Some(-31), Some(128), Some(126), None],
            },
            balance_current_ma: Some(-2_600),
            balancing: Balancing::Discharging,
            charging_enabled: Some(true),
            discharging_enabled: Some(false),
            heating: Some(true),
            extended: Extended {
                precharging: Some(false),
                heating_current_ma: Some(514),
                charge_status: Some(ChargeStatus::Float),
                dry_contacts: Some(DryContacts {
                    dry1: true,
                    dry2: false,
                }),
            },
            alarms: Alarms {
                bits: 0x0008_0201,
                table: AlarmTable::Ble,
            },
            uptime_s: Some(3_609_276),
            bms_cell_avg_uv: Some(3_377_000),
            bms_cell_delta_uv: Some(7_000),
        }
    }

    pub fn cell_count(&self) -> usize {
        self.cell_voltages_uv.len()
    }

    /// `None` when the frame has no present cell.
    pub fn stats(&self) -> Option<CellStats> {
        let cells = &self.cell_voltages_uv;
        let first = *cells.first()?;
        let (mut min_uv, mut max_uv, mut min_i, mut max_i) = (first, first, 0, 0);
        for (i, &v) in cells.iter().enumerate().skip(1) {
            if v < min_uv {
                min_uv = v;
                min_i = i;
            }
            if v > max_uv {
                max_uv = v;
                max_i = i;
            }
        }
        let sum: u64 = cells.iter().map(|v| u64::from(*v)).sum();
        let n = cells.len() as u64;
        Some(CellStats {
            min_uv,
            max_uv,
            avg_uv: ((sum + n / 2) / n) as u32,
            delta_uv: max_uv - min_uv,
            min_index: min_i + 1,
            max_index: max_i + 1,
        })
    }

    /// Clears the last values where the board's firmware does not fill them, so they are
    /// unknown rather than wrong (§6 of the protocol notes):
    /// - the charge status exists from firmware 15 (JK-PB);
    /// - the dry contacts and a heating current of 0 are the JK-PB's (firmware 14 and later);
    ///   on 11.x B-series boards byte 236 holds other data while the heater is off
    ///   (−7.7 A, +7.1 A), so there the heating current counts only while the heater is on;
    /// - without the device info (the model and firmware) none of them is known.
    pub fn keep_what_the_firmware_fills(&mut self, model: Option<&str>, software: Option<&str>) {
        let major = software.and_then(firmware_major);
        let pb = model.is_some_and(|m| m.to_ascii_uppercase().contains("PB"))
            || major.is_some_and(|v| v >= 14);
        let e = &mut self.extended;
        if major.is_none_or(|v| v < 15) {
            e.charge_status = None;
        }
        if !pb || major.is_none() {
            e.dry_contacts = None;
        }
        let heater_on = self.heating == Some(true);
        if major.is_none() || !(pb || heater_on) {
            e.heating_current_ma = None;
        }
    }

    /// Signed power in mW from V·I; `None` without a current.
    pub fn power_mw(&self) -> Option<i64> {
        let ma = i64::from(self.current_ma?);
        Some((i64::from(self.total_voltage_mv) * ma) / 1000)
    }
}

/// Decodes a cell-info frame (at least 300 bytes; envelope and checksum are checked here too).
/// With `variant = None` the layout is detected from the frame.
pub fn decode(frame: &[u8], variant: Option<Variant>) -> Result<CellInfo, DecodeError> {
    expect_frame(frame, FrameType::CellInfo, "a cell-info frame (type 0x02)")?;
    let variant = match variant {
        Some(v) => v,
        None => detect_from_cell_info(frame)
            .ok_or(DecodeError::UndecidableVariant("every cell reads 0 V"))?,
    };
    Ok(match variant {
        Variant::Jk02_32s => decode_jk02(frame, &JK02_32S),
        Variant::Jk02_24s => decode_jk02(frame, &JK02_24S),
        Variant::Jk04 => decode_jk04(frame),
        Variant::Serial4e57 => {
            return Err(DecodeError::BadHeader {
                expected: "a BLE layout (the 4E 57 protocol has its own decoder)",
                got: "serial_4e57".into(),
            })
        }
    })
}

fn present_cells(mask: u32, voltages_mv: impl Iterator<Item = u16>, slots: usize) -> Vec<usize> {
    let by_mask: Vec<usize> = (0..slots).filter(|i| mask & (1 << i) != 0).collect();
    if !by_mask.is_empty() {
        return by_mask;
    }
    // Some boards leave the mask 0: fall back to the cells that read a voltage.
    voltages_mv
        .take(slots)
        .enumerate()
        .filter(|(_, v)| *v != 0)
        .map(|(i, _)| i)
        .collect()
}

fn decode_jk02(f: &[u8], l: &Jk02Layout) -> CellInfo {
    let mask = read_u32(f, l.enabled_cells);
    let cells = present_cells(
        mask,
        (0..l.cell_slots).map(|i| read_u16(f, l.cell_voltages + 2 * i)),
        l.cell_slots,
    );
    let cell_voltages_uv = cells
        .iter()
        .map(|i| u32::from(read_u16(f, l.cell_voltages + 2 * i)) * 1000)
        .collect();
    let cell_resistances_uohm = cells
        .iter()
        .map(|i| u32::from(read_u16(f, l.cell_resistances + 2 * i)) * 1000)
        .collect();
    let sensor_mask = read_u8(f, l.sensor_mask);
    let temp = |at: usize, bit: u8| -> Option<i16> {
        let raw = read_i16(f, at);
        let present = sensor_mask & (1 << bit) != 0 && raw != TEMP_ABSENT_DC;
        // Older 11.x boards keep the mask bits set but leave T4/T5 (256/258) at exactly 0 (§6).
        let unfitted = matches!(at, 256 | 258) && raw == 0;
        (present && !unfitted).then_some(raw)
    };
    let mut sensors_dc = [None; 5];
    for &(at, bit) in l.sensors {
        sensors_dc[usize::from(bit) - 1] = temp(at, bit);
    }
    let alarms = if l.alarms_width == 4 {
        read_u32(f, l.alarms)
    } else {
        u32::from(read_u16(f, l.alarms))
    };
    CellInfo {
        variant: l.variant,
        counter: f[5],
        cell_voltages_uv,
        cell_resistances_uohm,
        total_voltage_mv: read_u32(f, l.pack_voltage),
        current_ma: Some(read_i32(f, l.current)),
        bms_power_mw: Some(read_u32(f, l.power)),
        soc_pct: Some(read_u8(f, l.soc)),
        remaining_capacity_mah: Some(read_u32(f, l.remaining_capacity)),
        nominal_capacity_mah: Some(read_u32(f, l.full_charge_capacity)),
        cycle_count: Some(read_u32(f, l.cycle_count)),
        cycle_capacity_mah: Some(read_u32(f, l.cycle_capacity)),
        soh_pct: Some(read_u8(f, l.soh)),
        temperatures: Temperatures {
            mos_dc: {
                let raw = read_i16(f, l.mos_temp);
                (sensor_mask & 1 != 0 && raw != TEMP_ABSENT_DC).then_some(raw)
            },
            sensors_dc,
        },
        balance_current_ma: Some(i32::from(read_i16(f, l.balance_current))),
        balancing: Balancing::from_byte(read_u8(f, l.balancing_action)),
        charging_enabled: Some(read_u8(f, l.charge_mosfet) != 0),
        discharging_enabled: Some(read_u8(f, l.discharge_mosfet) != 0),
        heating: Some(read_u8(f, l.heating) != 0),
        extended: if l.variant == Variant::Jk02_32s {
            read_extended(f)
        } else {
            Extended::default()
        },
        alarms: Alarms {
            bits: alarms,
            table: AlarmTable::Ble,
        },
        uptime_s: Some(read_u32(f, l.runtime)),
        bms_cell_avg_uv: Some(u32::from(read_u16(f, l.cell_avg)) * 1000),
        bms_cell_delta_uv: Some(u32::from(read_u16(f, l.cell_delta)) * 1000),
    }
}

/// The last values of a JK02_32S frame, as the bytes say them (the firmware rules come after,
/// in [`CellInfo::keep_what_the_firmware_fills`]).
fn read_extended(f: &[u8]) -> Extended {
    let dry = read_u8(f, extended::DRY_CONTACTS);
    Extended {
        precharging: Some(read_u8(f, extended::PRECHARGING) != 0),
        heating_current_ma: Some(i32::from(read_i16(f, extended::HEATING_CURRENT))),
        charge_status: ChargeStatus::from_byte(read_u8(f, extended::CHARGE_STATUS)),
        dry_contacts: Some(DryContacts {
            dry1: dry & 0b010 != 0,
            dry2: dry & 0b100 != 0,
        }),
    }
}

/// f32 volts/ohms → integer micro-units; NaN, infinities and negatives become 0.
fn micro(v: f32) -> u32 {
    let x = f64::from(v) * 1e6;
    if x.is_finite() && x > 0.0 {
        x.round().min(f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

fn decode_jk04(f: &[u8]) -> CellInfo {
    use jk04::*;
    let cells: Vec<usize> = (0..CELL_SLOTS)
        .filter(|i| micro(read_f32(f, CELL_VOLTAGES + 4 * i)) != 0)
        .collect();
    let cell_voltages_uv: Vec<u32> = cells
        .iter()
        .map(|i| micro(read_f32(f, CELL_VOLTAGES + 4 * i)))
        .collect();
    let total_uv: u64 = cell_voltages_uv.iter().map(|v| u64::from(*v)).sum();
    let balance_a = f64::from(read_f32(f, BALANCE_CURRENT));
    CellInfo {
        variant: Variant::Jk04,
        counter: f[5],
        cell_resistances_uohm: cells
            .iter()
            .map(|i| micro(read_f32(f, CELL_RESISTANCES + 4 * i)))
            .collect(),
        cell_voltages_uv,
        total_voltage_mv: ((total_uv + 500) / 1000) as u32,
        current_ma: None,
        bms_power_mw: None,
        soc_pct: None,
        remaining_capacity_mah: None,
        nominal_capacity_mah: None,
        cycle_count: None,
        cycle_capacity_mah: None,
        soh_pct: None,
        temperatures: Temperatures::default(),
        balance_current_ma: balance_a
            .is_finite()
            .then(|| (balance_a * 1000.0).round().clamp(-1e9, 1e9) as i32),
        balancing: Balancing::from_byte(read_u8(f, BALANCING_ACTION)),
        charging_enabled: None,
        discharging_enabled: None,
        heating: None,
        extended: Extended::default(),
        alarms: Alarms::none(AlarmTable::Ble),
        uptime_s: Some(read_u32(f, RUNTIME)),
        bms_cell_avg_uv: Some(micro(read_f32(f, CELL_AVG))),
        bms_cell_delta_uv: Some(micro(read_f32(f, CELL_DELTA))),
    }
}

/// Builds a JK02 cell-info frame from a [`CellInfo`] (the simulated BMS speaks through this).
/// Cells beyond the layout's slots are dropped; fields that are `None` are written as 0.
/// Long on purpose: every field is written at its layout offset in frame order, one
/// statement each, mirroring the decoder; the list is the frame.
#[expect(
    clippy::too_many_lines,
    reason = "the JK02 frame written field by field in byte order, beside the layout it mirrors"
)]
pub fn encode_jk02(info: &CellInfo, layout: &Jk02Layout) -> [u8; FRAME_LEN] {
    let l = layout;
    let mut f = [0u8; FRAME_LEN];
    let n = info.cell_count().min(l.cell_slots);
    let mut mask = 0u32;
    for i in 0..n {
        let mv = (info.cell_voltages_uv[i] / 1000).min(u32::from(u16::MAX)) as u16;
        write_u16(&mut f, l.cell_voltages + 2 * i, mv);
        let mohm = info
            .cell_resistances_uohm
            .get(i)
            .map_or(0, |r| (r / 1000).min(u32::from(u16::MAX)) as u16);
        write_u16(&mut f, l.cell_resistances + 2 * i, mohm);
        mask |= 1 << i;
    }
    write_u32(&mut f, l.enabled_cells, mask);
    if let Some(s) = info.stats() {
        write_u16(&mut f, l.cell_avg, (s.avg_uv / 1000) as u16);
        write_u16(&mut f, l.cell_delta, (s.delta_uv / 1000) as u16);
        f[l.max_cell_index] = (s.max_index - 1) as u8;
        f[l.min_cell_index] = (s.min_index - 1) as u8;
    }
    let t = &info.temperatures;
    let mut sensor_mask = 0u8;
    write_u16(
        &mut f,
        l.mos_temp,
        t.mos_dc.unwrap_or(TEMP_ABSENT_DC) as u16,
    );
    if t.mos_dc.is_some() {
        sensor_mask |= 1;
    }
    for &(at, bit) in l.sensors {
        let v = t.sensors_dc[usize::from(bit) - 1];
        write_u16(&mut f, at, v.unwrap_or(TEMP_ABSENT_DC) as u16);
        if v.is_some() {
            sensor_mask |= 1 << bit;
        }
    }
    f[l.sensor_mask] = sensor_mask;
    write_u32(&mut f, l.pack_voltage, info.total_voltage_mv);
    let current = info.current_ma.unwrap_or(0);
    write_u32(&mut f, l.current, current as u32);
    let power = info
        .bms_power_mw
        .unwrap_or_else(|| info.power_mw().map_or(0, |p| p.unsigned_abs() as u32));
    write_u32(&mut f, l.power, power);
    if l.alarms_width == 4 {
        write_u32(&mut f, l.alarms, info.alarms.bits);
    } else {
        write_u16(&mut f, l.alarms, info.alarms.bits as u16);
    }
    write_u16(
        &mut f,
        l.balance_current,
        info.balance_current_ma.unwrap_or(0).clamp(-32768, 32767) as i16 as u16,
    );
    f[l.balancing_action] = info.balancing.byte();
    f[l.soc] = info.soc_pct.unwrap_or(0);
    write_u32(
        &mut f,
        l.remaining_capacity,
        info.remaining_capacity_mah.unwrap_or(0),
    );
    write_u32(
        &mut f,
        l.full_charge_capacity,
        info.nominal_capacity_mah.unwrap_or(0),
    );
    write_u32(&mut f, l.cycle_count, info.cycle_count.unwrap_or(0));
    write_u32(
        &mut f,
        l.cycle_capacity,
        info.cycle_capacity_mah.unwrap_or(0),
    );
    f[l.soh] = info.soh_pct.unwrap_or(0);
    write_u32(&mut f, l.runtime, info.uptime_s.unwrap_or(0));
    f[l.charge_mosfet] = u8::from(info.charging_enabled.unwrap_or(false));
    f[l.discharge_mosfet] = u8::from(info.discharging_enabled.unwrap_or(false));
    f[l.heating] = u8::from(info.heating.unwrap_or(false));
    if l.variant == Variant::Jk02_32s {
        write_extended(&mut f, &info.extended);
    }
    seal_frame(&mut f, FrameType::CellInfo, info.counter);
    f
}

/// [`Extended`] at its JK02_32S offsets (`None` written as 0; a charge status as its byte).
fn write_extended(f: &mut [u8], e: &Extended) {
    f[extended::PRECHARGING] = u8::from(e.precharging.unwrap_or(false));
    let heating = e.heating_current_ma.unwrap_or(0).clamp(-32_768, 32_767) as i16;
    f[extended::HEATING_CURRENT..extended::HEATING_CURRENT + 2]
        .copy_from_slice(&heating.to_le_bytes());
    f[extended::CHARGE_STATUS] = match e.charge_status {
        Some(ChargeStatus::Absorption) => 1,
        Some(ChargeStatus::Float) => 2,
        _ => 0,
    };
    f[extended::DRY_CONTACTS] = e
        .dry_contacts
        .map_or(0, |d| u8::from(d.dry1) << 1 | u8::from(d.dry2) << 2);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CellInfo {
        CellInfo::example()
    }

    #[test]
    fn jk02_32s_round_trips_through_the_encoder() {
        let info = sample();
        let frame = encode_jk02(&info, &JK02_32S);
        // byte-annotated spot checks of the layout (§2.1)
        assert_eq!(&frame[6..8], &[0x35, 0x0D], "cell 1 = 3381 mV at 6");
        assert_eq!(&frame[70..74], &[0x0F, 0, 0, 0], "4 cells enabled at 70");
        assert_eq!(&frame[158..162], &(-727i32).to_le_bytes(), "current at 158");
        assert_eq!(frame[173], 99, "SOC at 173");
        assert_eq!(detect_from_cell_info(&frame), Some(Variant::Jk02_32s));
        assert_eq!(decode(&frame, None).unwrap(), info);
    }

    #[test]
    fn jk02_24s_round_trips_and_keeps_its_own_offsets() {
        let mut info = sample();
        info.variant = Variant::Jk02_24s;
        info.alarms.bits &= 0xFFFF; // 16-bit alarm word on 24S
        info.temperatures.sensors_dc[2..].fill(None); // only T1 and T2 on 24S
        info.extended = Extended::default(); // the last values are JK02_32S's
        let frame = encode_jk02(&info, &JK02_24S);
        assert_eq!(
            &frame[118..122],
            &13_511u32.to_le_bytes(),
            "pack voltage at 118"
        );
        assert_eq!(&frame[126..130], &(-727i32).to_le_bytes(), "current at 126");
        assert_eq!(detect_from_cell_info(&frame), Some(Variant::Jk02_24s));
        assert_eq!(decode(&frame, None).unwrap(), info);
    }

    #[test]
    fn the_last_values_are_kept_only_where_the_firmware_fills_them() {
        let rule = |model: Option<&str>, sw: Option<&str>, heating: bool| {
            let mut c = CellInfo::example();
            c.heating = Some(heating);
            c.keep_what_the_firmware_fills(model, sw);
            c.extended
        };
        // a JK-PB on firmware 15: every value
        let pb = rule(Some("JK_PB2A16S20P"), Some("15.38"), false);
        assert_eq!(pb.charge_status, Some(ChargeStatus::Float));
        assert!(pb.dry_contacts.is_some() && pb.heating_current_ma.is_some());
        // firmware 14: no charge status yet
        let pb14 = rule(Some("JK_PB2A16S15P"), Some("14.20"), false);
        assert_eq!(pb14.charge_status, None);
        assert!(pb14.dry_contacts.is_some());
        // a B-series 11.x board: byte 236 is other data while the heater is off
        let b_off = rule(Some("JK_B2A20S20P"), Some("11.17"), false);
        assert_eq!(
            (
                b_off.heating_current_ma,
                b_off.dry_contacts,
                b_off.charge_status
            ),
            (None, None, None)
        );
        let b_on = rule(Some("JK_B2A20S20P"), Some("11.288H"), true);
        assert_eq!(b_on.heating_current_ma, Some(514));
        // no device info yet: none is known
        let unknown = rule(None, None, true);
        assert_eq!(
            unknown,
            Extended {
                precharging: Some(false),
                ..Extended::default()
            }
        );
        assert_eq!(firmware_major("10.XW_S10.10___"), Some(10));
    }

    #[test]
    fn stats_are_one_based_and_take_the_first_of_a_tie() {
        let mut info = sample();
        info.cell_voltages_uv = vec![3_300_000, 3_290_000, 3_310_000, 3_290_000, 3_310_000];
        let s = info.stats().unwrap();
        assert_eq!((s.min_index, s.max_index), (2, 3));
        assert_eq!(
            (s.min_uv, s.max_uv, s.delta_uv),
            (3_290_000, 3_310_000, 20_000)
        );
        assert_eq!(s.avg_uv, 3_300_000);
        info.cell_voltages_uv.clear();
        assert_eq!(info.stats(), None);
    }

    #[test]
    fn power_has_the_sign_of_the_current() {
        let info = sample();
        assert_eq!(info.power_mw(), Some(-9_822)); // 13.511 V × −0.727 A
    }

    #[test]
    fn values_no_bms_can_report_are_unknown() {
        let mut c = CellInfo::example();
        assert!(
            c.clone().drop_implausible().is_empty(),
            "the example is plausible"
        );
        c.soc_pct = Some(255);
        c.soh_pct = Some(100);
        c.current_ma = Some(i32::MAX);
        c.temperatures.mos_dc = Some(32_767);
        c.temperatures.sensors_dc[1] = Some(-400);
        let cleared = c.drop_implausible();
        assert_eq!(
            cleared.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "soc_pct = 255",
                "current_ma = 2147483647",
                "temperature_mos = 32767"
            ]
        );
        assert_eq!(
            (c.soc_pct, c.soh_pct, c.current_ma),
            (None, Some(100), None)
        );
        assert_eq!(c.bms_power_mw, None, "no power without its current");
        assert_eq!(c.temperatures.mos_dc, None);
        assert_eq!(
            c.temperatures.sensors_dc[1],
            Some(-400),
            "−40 °C is cold, not impossible"
        );
    }

    #[test]
    fn absent_sensors_are_not_reported() {
        let mut info = sample();
        info.temperatures.sensors_dc[1] = None;
        let mut frame = encode_jk02(&info, &JK02_32S);
        // present bit set, but the −200.0 °C marker: still absent
        frame[214] |= 1 << 2;
        seal_frame(&mut frame, FrameType::CellInfo, info.counter);
        assert_eq!(
            decode(&frame, None).unwrap().temperatures.sensors_dc[1],
            None
        );
    }
}
