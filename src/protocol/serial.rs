//! The serial `4E 57` protocol of the GPS / UART-TTL port (§3): big-endian, one request, one
//! response. The response is a list of tag-value pairs, decoded here into the same
//! [`CellInfo`], [`DeviceInfo`] and [`Settings`] as the BLE frames.

use super::alarms::{AlarmTable, Alarms};
use super::cell_info::{Balancing, CellInfo, Temperatures};
use super::checksum::sum32;
use super::device_info::DeviceInfo;
use super::settings::Settings;
use super::variant::Variant;
use super::{hex, DecodeError};

pub const STX: [u8; 2] = [0x4E, 0x57];
pub const END_FLAG: u8 = 0x68;
/// The shortest frame: a request with a 1-byte register id.
pub const MIN_FRAME_LEN: usize = 21;
/// The longest frame accepted; a 32-cell response is about 330 bytes.
pub const MAX_FRAME_LEN: usize = 1024;
/// Command word 0x06: read all.
pub const CMD_READ_ALL: u8 = 0x06;
/// Frame source byte of a request: 0x02 GPS, 0x03 PC.
pub const SOURCE_PC: u8 = 0x03;

/// The read-all request: `4E 57 00 13 00 00 00 00 06 03 00 00 00 00 00 00 68 00 00 01 29`.
pub fn request_read_all() -> [u8; MIN_FRAME_LEN] {
    let mut f = [0u8; MIN_FRAME_LEN];
    f[..2].copy_from_slice(&STX);
    f[2..4].copy_from_slice(&((MIN_FRAME_LEN - 2) as u16).to_be_bytes());
    f[8] = CMD_READ_ALL;
    f[9] = SOURCE_PC;
    f[16] = END_FLAG;
    let sum = sum32(&f[..17]);
    f[17..].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The total length a frame announces in bytes 2..4, once 4 bytes are there.
pub fn announced_len(bytes: &[u8]) -> Option<usize> {
    (bytes.len() >= 4).then(|| usize::from(u16::from_be_bytes([bytes[2], bytes[3]])) + 2)
}

/// Checks STX, length, end flag and checksum; returns the frame's length.
pub fn check_envelope(bytes: &[u8]) -> Result<usize, DecodeError> {
    if bytes.len() < 4 {
        return Err(DecodeError::Truncated {
            what: "4E 57 frame header",
            got: bytes.len(),
            expected: 4,
        });
    }
    if bytes[..2] != STX {
        return Err(DecodeError::BadHeader {
            expected: "4E 57",
            got: hex(&bytes[..2]),
        });
    }
    let total = announced_len(bytes).unwrap_or(0);
    if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&total) {
        return Err(DecodeError::WrongLength {
            what: "4E 57 frame (length field + 2)",
            got: total,
            expected: format!("{MIN_FRAME_LEN}..={MAX_FRAME_LEN}"),
        });
    }
    if bytes.len() < total {
        return Err(DecodeError::Truncated {
            what: "4E 57 frame",
            got: bytes.len(),
            expected: total,
        });
    }
    let at = total - 4;
    let computed = sum32(&bytes[..at]);
    let got = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if got != computed {
        return Err(DecodeError::BadSum32 { at, got, computed });
    }
    if bytes[total - 5] != END_FLAG {
        return Err(DecodeError::Serial {
            at: total - 5,
            problem: format!("end flag is {:#04x}, expected 0x68", bytes[total - 5]),
        });
    }
    Ok(total)
}

/// A decoded read-all response.
#[derive(Debug, Clone, PartialEq)]
pub struct SerialResponse {
    /// Command word of the request it answers (0x06 read all, 0x03 read).
    pub command: u8,
    pub cell_info: CellInfo,
    pub device_info: DeviceInfo,
    pub settings: Settings,
    /// The raw temperature codes (MOS, T1, T2), logged because sources disagree on negatives.
    pub raw_temperature_codes: [Option<u16>; 3],
}

/// Value size after the tag byte (§3.3); `None` for tags this decoder does not know.
fn tag_size(tag: u8) -> Option<usize> {
    Some(match tag {
        0x80..=0x84 | 0x87 | 0x8A..=0x8C | 0x8E..=0x9C | 0x9E..=0xA8 | 0xAD | 0xB0 => 2,
        0x85 | 0x86 | 0x9D | 0xA9 | 0xAB | 0xAC | 0xAE | 0xAF | 0xB1 | 0xB3 | 0xB8 | 0xC0 => 1,
        0x89 | 0xAA | 0xB5 | 0xB6 | 0xB9 => 4,
        0xB2 => 10,
        0xB4 => 8,
        0xB7 => 15,
        0xBA => 24,
        _ => return None,
    })
}

/// Temperature code: 0-99 are °C, larger values are below zero. esphome's rule (100 → −1 °C,
/// esphome #685) is used; the vendor text says 101 → −1 °C. Returned in 0.1 °C.
pub fn temperature_dc(code: u16) -> i16 {
    let c = i32::from(code);
    let celsius = if c > 99 { 99 - c } else { c };
    (celsius * 10).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// Current code in mA. Protocol version 1 (tag 0xC0 = 1): bit 15 set = charging, magnitude in
/// 10 mA. Older firmware: 10000 = 0 A, (10000 − raw) × 10 mA, charging positive.
pub fn current_ma(code: u16, protocol_version: u8) -> i32 {
    if protocol_version == 1 {
        let magnitude = i32::from(code & 0x7FFF) * 10;
        if code & 0x8000 != 0 {
            magnitude
        } else {
            -magnitude
        }
    } else {
        (10_000 - i32::from(code)) * 10
    }
}

fn ascii(v: &[u8]) -> String {
    let end = v.iter().position(|c| *c == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).trim_end().to_string()
}

/// The data of a response: the cell block (`0x79`: cell number and millivolts) and every
/// other tag with its value, in frame order.
struct Tags<'a> {
    cells: Vec<(u8, u16)>,
    values: Vec<(u8, &'a [u8])>,
}

impl<'a> Tags<'a> {
    /// Walks the tags of `bytes[at..data_end]`; a tag jkmon does not know, or one that runs
    /// past the data, is an error at its position (its length is unknown, so nothing after
    /// it can be read).
    fn read(bytes: &'a [u8], mut at: usize, data_end: usize) -> Result<Tags<'a>, DecodeError> {
        let mut tags = Tags {
            cells: Vec::new(),
            values: Vec::new(),
        };
        while at < data_end {
            let tag = bytes[at];
            let (start, len) = if tag == 0x79 {
                let n = usize::from(*bytes.get(at + 1).unwrap_or(&0));
                if n % 3 != 0 {
                    return Err(DecodeError::Serial {
                        at: at + 1,
                        problem: format!("cell block length {n} is not a multiple of 3"),
                    });
                }
                (at + 2, n)
            } else {
                let len = tag_size(tag).ok_or_else(|| DecodeError::Serial {
                    at,
                    problem: format!("unknown tag {tag:#04x}"),
                })?;
                (at + 1, len)
            };
            if start + len > data_end {
                return Err(DecodeError::Serial {
                    at,
                    problem: format!("tag {tag:#04x} runs past the data ({len} bytes)"),
                });
            }
            let value = &bytes[start..start + len];
            if tag == 0x79 {
                tags.cells.extend(
                    value
                        .chunks_exact(3)
                        .map(|c| (c[0], u16::from_be_bytes([c[1], c[2]]))),
                );
            } else {
                tags.values.push((tag, value));
            }
            at = start + len;
        }
        Ok(tags)
    }

    fn get(&self, tag: u8) -> Option<&'a [u8]> {
        self.values.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v)
    }

    fn u8_of(&self, tag: u8) -> Option<u8> {
        self.get(tag).map(|v| v[0])
    }

    fn u16_of(&self, tag: u8) -> Option<u16> {
        self.get(tag).map(|v| u16::from_be_bytes([v[0], v[1]]))
    }

    fn u32_of(&self, tag: u8) -> Option<u32> {
        self.get(tag)
            .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }

    fn str_of(&self, tag: u8) -> String {
        self.get(tag).map(ascii).unwrap_or_default()
    }
}

/// The settings a response carries (the protection voltages and currents, the switches).
fn settings_of(tags: &Tags, capacity_setting_mah: Option<u32>, cells: usize) -> Settings {
    let mv = |tag| tags.u16_of(tag).map(u32::from);
    let amps = |tag| tags.u16_of(tag).map(|a| u32::from(a) * 1000);
    Settings {
        variant: Some(Variant::Serial4e57),
        cell_count: tags.u8_of(0xA9).unwrap_or(cells as u8),
        cell_ovp_mv: mv(0x90),
        cell_ovp_recovery_mv: mv(0x91),
        cell_uvp_mv: mv(0x93),
        cell_uvp_recovery_mv: mv(0x94),
        balance_start_mv: mv(0x9B),
        balance_trigger_mv: mv(0x9C),
        balancer_switch: tags.u8_of(0x9D).map(|b| b != 0),
        max_discharge_current_ma: amps(0x97),
        max_charge_current_ma: amps(0x99),
        nominal_capacity_mah: capacity_setting_mah,
        charge_switch: tags.u8_of(0xAB).map(|b| b != 0),
        discharge_switch: tags.u8_of(0xAC).map(|b| b != 0),
        low_soc_alarm_pct: tags.u8_of(0xB1),
        ..Settings::default()
    }
}

/// Decodes a response frame (the envelope is checked first).
/// Long on purpose: every tag is mapped onto its typed field here, one line each, beside the
/// tag walk (`Tags`) and the settings (`settings_of`); the list is the decoder.
#[expect(
    clippy::too_many_lines,
    reason = "the 4E 57 tags read in the order of the protocol reference, one line each"
)]
pub fn decode_response(bytes: &[u8]) -> Result<SerialResponse, DecodeError> {
    let total = check_envelope(bytes)?;
    if bytes[10] != 0x01 && bytes[10] != 0x02 {
        return Err(DecodeError::Serial {
            at: 10,
            problem: format!(
                "transport type {:#04x} is not a response (0x01) or upload (0x02)",
                bytes[10]
            ),
        });
    }
    let tags = Tags::read(bytes, 11, total - 9)?;
    let (u8_of, u16_of, u32_of) = (|t| tags.u8_of(t), |t| tags.u16_of(t), |t| tags.u32_of(t));
    let str_of = |t| tags.str_of(t);
    let cells = &tags.cells;

    let protocol_version = u8_of(0xC0).unwrap_or(0);
    let status = u16_of(0x8C);
    let raw_temps = [u16_of(0x80), u16_of(0x81), u16_of(0x82)];
    let cell_voltages_uv: Vec<u32> = cells.iter().map(|(_, mv)| u32::from(*mv) * 1000).collect();
    let current_ma = u16_of(0x84).map(|c| current_ma(c, protocol_version));
    let total_voltage_mv = u16_of(0x83).map_or(0, |v| u32::from(v) * 10);
    let capacity_setting_mah = u32_of(0xAA).map(|ah| ah.saturating_mul(1000));
    let cell_info = CellInfo {
        variant: Variant::Serial4e57,
        counter: 0,
        cell_voltages_uv,
        cell_resistances_uohm: Vec::new(),
        total_voltage_mv,
        current_ma,
        bms_power_mw: None,
        soc_pct: u8_of(0x85),
        remaining_capacity_mah: None,
        nominal_capacity_mah: u32_of(0xB9)
            .map(|ah| ah.saturating_mul(1000))
            .or(capacity_setting_mah),
        cycle_count: u16_of(0x87).map(u32::from),
        cycle_capacity_mah: u32_of(0x89).map(|ah| ah.saturating_mul(1000)),
        soh_pct: None,
        temperatures: Temperatures {
            mos_dc: raw_temps[0].map(temperature_dc),
            sensors_dc: [
                raw_temps[1].map(temperature_dc),
                raw_temps[2].map(temperature_dc),
                None,
                None,
                None,
            ],
        },
        balance_current_ma: None,
        balancing: match status {
            Some(s) if s & 0b100 != 0 => Balancing::Active,
            _ => Balancing::Off,
        },
        charging_enabled: status.map(|s| s & 0b01 != 0),
        discharging_enabled: status.map(|s| s & 0b10 != 0),
        heating: None,
        extended: crate::protocol::cell_info::Extended::default(),
        alarms: Alarms {
            bits: u32::from(u16_of(0x8B).unwrap_or(0)),
            table: AlarmTable::Serial,
        },
        uptime_s: u32_of(0xB6).map(|min| min.saturating_mul(60)),
        bms_cell_avg_uv: None,
        bms_cell_delta_uv: None,
    };
    let device_info = DeviceInfo {
        model: str_of(0xBA),
        software_version: str_of(0xB7),
        uptime_s: cell_info.uptime_s,
        serial_number: str_of(0xB4),
        manufacturing_date: str_of(0xB5),
        ..DeviceInfo::default()
    };
    let settings = settings_of(
        &tags,
        capacity_setting_mah,
        cell_info.cell_voltages_uv.len(),
    );
    Ok(SerialResponse {
        command: bytes[8],
        cell_info,
        device_info,
        settings,
        raw_temperature_codes: raw_temps,
    })
}

/// Encodes a read-all response carrying `cells`, `device` and `settings`, as a BMS on protocol
/// version 1 sends it: cells, temperatures, voltage, current, SOC, cycles, capacities, warnings,
/// status, the settings jkmon reads, and the device strings. The simulated BMS answers with this;
/// [`decode_response`] reads back what it wrote.
/// Long on purpose: one statement per tag, in the order the BMS sends them, so the function
/// reads as the frame does; split, that order would live in several places.
#[expect(
    clippy::too_many_lines,
    reason = "the 4E 57 tags written in the order of the protocol reference, one line each"
)]
pub fn encode_response(cells: &CellInfo, device: &DeviceInfo, settings: &Settings) -> Vec<u8> {
    let mut data: Vec<u8> = Vec::with_capacity(320);
    let n = cells.cell_voltages_uv.len().min(84);
    data.extend([0x79, (n * 3) as u8]);
    for (i, uv) in cells.cell_voltages_uv.iter().take(n).enumerate() {
        data.push(i as u8 + 1);
        data.extend(((uv / 1000).min(0xFFFF) as u16).to_be_bytes());
    }
    let u16_tag = |data: &mut Vec<u8>, tag: u8, v: u16| {
        data.push(tag);
        data.extend(v.to_be_bytes());
    };
    let temperature_code = |dc: Option<i16>| {
        let c = i32::from(dc.unwrap_or(0)).div_euclid(10);
        (if c < 0 { 99 - c } else { c }).clamp(0, 0xFFFF) as u16
    };
    u16_tag(&mut data, 0x80, temperature_code(cells.temperatures.mos_dc));
    u16_tag(
        &mut data,
        0x81,
        temperature_code(cells.temperatures.sensors_dc[0]),
    );
    u16_tag(
        &mut data,
        0x82,
        temperature_code(cells.temperatures.sensors_dc[1]),
    );
    u16_tag(
        &mut data,
        0x83,
        (cells.total_voltage_mv / 10).min(0xFFFF) as u16,
    );
    let current = cells.current_ma.unwrap_or(0);
    let magnitude = (current.unsigned_abs() / 10).min(0x7FFF) as u16;
    u16_tag(
        &mut data,
        0x84,
        if current > 0 {
            0x8000 | magnitude
        } else {
            magnitude
        },
    );
    data.extend([0x85, cells.soc_pct.unwrap_or(0), 0x86, 2]);
    u16_tag(
        &mut data,
        0x87,
        cells.cycle_count.unwrap_or(0).min(0xFFFF) as u16,
    );
    data.push(0x89);
    data.extend((cells.cycle_capacity_mah.unwrap_or(0) / 1000).to_be_bytes());
    u16_tag(&mut data, 0x8A, n as u16);
    let serial_warnings = if cells.alarms.table == AlarmTable::Serial {
        cells.alarms.bits
    } else {
        0
    };
    u16_tag(&mut data, 0x8B, (serial_warnings & 0xFFFF) as u16);
    let status = u16::from(cells.charging_enabled == Some(true))
        | u16::from(cells.discharging_enabled == Some(true)) << 1
        | u16::from(cells.balancing.is_active()) << 2
        | 1 << 3;
    u16_tag(&mut data, 0x8C, status);
    let mv = |v: Option<u32>| v.unwrap_or(0).min(0xFFFF) as u16;
    u16_tag(&mut data, 0x90, mv(settings.cell_ovp_mv));
    u16_tag(&mut data, 0x91, mv(settings.cell_ovp_recovery_mv));
    u16_tag(&mut data, 0x93, mv(settings.cell_uvp_mv));
    u16_tag(&mut data, 0x94, mv(settings.cell_uvp_recovery_mv));
    u16_tag(
        &mut data,
        0x97,
        mv(settings.max_discharge_current_ma.map(|ma| ma / 1000)),
    );
    u16_tag(
        &mut data,
        0x99,
        mv(settings.max_charge_current_ma.map(|ma| ma / 1000)),
    );
    u16_tag(&mut data, 0x9B, mv(settings.balance_start_mv));
    u16_tag(&mut data, 0x9C, mv(settings.balance_trigger_mv));
    let flag = |b: Option<bool>| u8::from(b == Some(true));
    data.extend([0x9D, flag(settings.balancer_switch)]);
    data.extend([0xA9, n as u8, 0xAA]);
    data.extend((settings.nominal_capacity_mah.unwrap_or(0) / 1000).to_be_bytes());
    data.extend([
        0xAB,
        flag(settings.charge_switch),
        0xAC,
        flag(settings.discharge_switch),
    ]);
    let text = |data: &mut Vec<u8>, tag: u8, s: &str, len: usize| {
        data.push(tag);
        let mut field = s.as_bytes()[..s.len().min(len)].to_vec();
        field.resize(len, 0);
        data.extend(field);
    };
    text(&mut data, 0xB4, &device.serial_number, 8);
    text(&mut data, 0xB5, &device.manufacturing_date, 4);
    data.push(0xB6);
    data.extend((cells.uptime_s.unwrap_or(0) / 60).to_be_bytes());
    text(&mut data, 0xB7, &device.software_version, 15);
    data.push(0xB9);
    data.extend((cells.nominal_capacity_mah.unwrap_or(0) / 1000).to_be_bytes());
    text(&mut data, 0xBA, &device.model, 24);
    data.extend([0xC0, 0x01]);

    response_frame(&data)
}

/// Wraps a TLV payload in the envelope of a read-all response: STX, length, terminal 0, command
/// 0x06, source BMS, type response, the data, record number 0, end flag, checksum.
pub fn response_frame(data: &[u8]) -> Vec<u8> {
    let total = 11 + data.len() + 9;
    let mut f = Vec::with_capacity(total);
    f.extend(STX);
    f.extend(((total - 2) as u16).to_be_bytes());
    f.extend([0, 0, 0, 0, CMD_READ_ALL, 0x00, 0x01]);
    f.extend(data);
    f.extend([0, 0, 0, 0, END_FLAG]);
    let sum = sum32(&f);
    f.extend(sum.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_all_request_is_the_published_one() {
        assert_eq!(
            request_read_all(),
            [
                0x4E, 0x57, 0x00, 0x13, 0x00, 0x00, 0x00, 0x00, 0x06, 0x03, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x68, 0x00, 0x00, 0x01, 0x29
            ]
        );
        assert_eq!(check_envelope(&request_read_all()), Ok(21));
    }

    #[test]
    fn current_sign_quirk() {
        // §3.3: 80 D0 → +2.08 A, 81 C5 → +4.53 A, 00 45 → −0.69 A; old encoding 11000 → −10 A.
        assert_eq!(current_ma(0x80D0, 1), 2_080);
        assert_eq!(current_ma(0x81C5, 1), 4_530);
        assert_eq!(current_ma(0x0045, 1), -690);
        assert_eq!(current_ma(0x0000, 1), 0);
        assert_eq!(current_ma(11_000, 0), -10_000);
        assert_eq!(current_ma(9_500, 0), 5_000);
        assert_eq!(current_ma(10_000, 0), 0);
    }

    #[test]
    fn temperature_codes() {
        assert_eq!(temperature_dc(29), 290);
        assert_eq!(temperature_dc(100), -10);
        assert_eq!(temperature_dc(120), -210);
    }

    fn frame(data: &[u8]) -> Vec<u8> {
        response_frame(data)
    }

    #[test]
    fn a_small_response_decodes_and_unknown_tags_are_named() {
        let f = frame(&[
            0x79, 0x06, 0x01, 0x0E, 0xF9, 0x02, 0x0E, 0xF8, // two cells 3833, 3832 mV
            0x83, 0x02, 0xFF, // 7.67 V
            0x84, 0x80, 0xD0, 0xC0, 0x01, // +2.08 A with protocol version 1
            0x85, 0x47, // SOC 71
            0x8C, 0x00, 0x07, // charge, discharge, balancer on
        ]);
        let r = decode_response(&f).unwrap();
        assert_eq!(r.cell_info.cell_voltages_uv, vec![3_833_000, 3_832_000]);
        assert_eq!(r.cell_info.total_voltage_mv, 7_670);
        assert_eq!(r.cell_info.current_ma, Some(2_080));
        assert_eq!(r.cell_info.soc_pct, Some(71));
        assert_eq!(r.cell_info.balancing, Balancing::Active);
        let bad = frame(&[0x88, 0x00, 0x00]);
        assert_eq!(
            decode_response(&bad).unwrap_err().to_string(),
            "malformed 4E 57 frame at byte 11: unknown tag 0x88"
        );
    }

    #[test]
    fn an_encoded_response_decodes_to_what_was_encoded() {
        let mut cells = CellInfo::example();
        cells.current_ma = Some(-12_340);
        cells.temperatures.mos_dc = Some(-30);
        cells.temperatures.sensors_dc = [Some(215), Some(190), None, None, None];
        cells.alarms = Alarms {
            bits: 1 << 7,
            table: AlarmTable::Serial,
        };
        let device = DeviceInfo {
            model: "JK_B2A16S15P".into(),
            software_version: "11.XW_S11.261".into(),
            serial_number: "12345678".into(),
            manufacturing_date: "2601".into(),
            ..DeviceInfo::default()
        };
        let settings = Settings {
            cell_ovp_mv: Some(3_650),
            balancer_switch: Some(true),
            nominal_capacity_mah: Some(280_000),
            ..Settings::default()
        };
        let bytes = encode_response(&cells, &device, &settings);
        let r = decode_response(&bytes).unwrap();
        assert_eq!(r.cell_info.cell_voltages_uv, cells.cell_voltages_uv);
        assert_eq!(r.cell_info.current_ma, Some(-12_340));
        assert_eq!(
            r.cell_info.total_voltage_mv,
            cells.total_voltage_mv / 10 * 10
        );
        assert_eq!(r.cell_info.soc_pct, cells.soc_pct);
        assert_eq!(r.cell_info.temperatures.mos_dc, Some(-30));
        assert_eq!(
            r.cell_info.temperatures.sensors_dc[..2],
            [Some(210), Some(190)]
        );
        assert_eq!(r.cell_info.alarms.names(), ["cell_voltage_difference"]);
        assert_eq!(r.device_info.model, "JK_B2A16S15P");
        assert_eq!(r.device_info.software_version, "11.XW_S11.261");
        assert_eq!(r.device_info.serial_number, "12345678");
        assert_eq!(r.settings.cell_ovp_mv, Some(3_650));
        assert_eq!(r.settings.balancer_switch, Some(true));
        assert_eq!(r.settings.nominal_capacity_mah, Some(280_000));
    }
}
