//! The BLE frame layouts and how to tell them apart (reference §1.9).
//!
//! No field names the layout. The cell-info frame tells it reliably; the device-info frame gives
//! a hint through the software version; a settings frame alone only gives a weak heuristic, so
//! the stream decoder prefers what it learnt from earlier frames of the same BMS.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{read_f32, read_u16, read_u32};

/// A frame layout. The three BLE ones differ in offsets and encodings; `Serial4e57` marks values
/// that came from the serial `4E 57` protocol, which is a different protocol altogether.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// 24 cells, firmware below 11 (e.g. JK-B2A24S 6.x-10.x).
    #[serde(rename = "jk02_24s")]
    Jk02_24s,
    /// 32 cells, firmware 11 and later, JK-PB inverter BMSs (also on their RS485 bus).
    #[serde(rename = "jk02_32s")]
    Jk02_32s,
    /// Old hardware 3.x and the JK-B5A24S active balancer: values are IEEE-754 floats.
    #[serde(rename = "jk04")]
    Jk04,
    /// The serial `4E 57` protocol of the GPS/UART port.
    #[serde(rename = "serial_4e57")]
    Serial4e57,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Jk02_24s => "jk02_24s",
            Variant::Jk02_32s => "jk02_32s",
            Variant::Jk04 => "jk04",
            Variant::Serial4e57 => "serial_4e57",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user asked for: detect the layout, or use a given one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VariantChoice {
    #[default]
    Auto,
    Fixed(Variant),
}

impl FromStr for VariantChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(VariantChoice::Auto),
            "jk02_24s" => Ok(VariantChoice::Fixed(Variant::Jk02_24s)),
            "jk02_32s" => Ok(VariantChoice::Fixed(Variant::Jk02_32s)),
            "jk04" => Ok(VariantChoice::Fixed(Variant::Jk04)),
            other => Err(format!(
                "\"{other}\" is not a frame layout (expected auto, jk02_24s, jk02_32s or jk04)"
            )),
        }
    }
}

/// Start of the fields only JK02_32S firmware fills (see [`detect_from_cell_info`]).
const EXTENDED_FROM: usize = 184;
/// Non-zero bytes in `184..299` from which a zero-cell frame counts as JK02_32S.
const EXTENDED_32S_MIN_FILLED: usize = 24;

/// Rule 1 of §1.9, on a whole 300-byte cell-info frame.
///
/// - JK04 stores cell 1 as an f32 in volts at byte 6; on JK02 the same 4 bytes are two u16 mV
///   values, which read as a float of about 1e-31.
/// - Otherwise the pack voltage sits at 150 (32S) or 118 (24S): whichever is closer to the sum of
///   the cell voltages wins.
/// - When every cell reads 0 V (lab boards) that says nothing, and the extended fields decide:
///   JK02_32S firmware fills bytes 184..299 (runtime, temperatures, RTC, charge status), JK02_24S
///   leaves them nearly empty. On every cell-info frame of the corpus, 24S has at most 19
///   non-zero bytes there and 32S at least 28; the threshold sits between.
pub fn detect_from_cell_info(frame: &[u8]) -> Option<Variant> {
    if frame.len() < 300 {
        return None;
    }
    let first = read_f32(frame, 6);
    if (0.5..=5.5).contains(&first) {
        return Some(Variant::Jk04);
    }
    let sum32: i64 = (0..32).map(|i| i64::from(read_u16(frame, 6 + 2 * i))).sum();
    if sum32 == 0 {
        let filled = frame[EXTENDED_FROM..299]
            .iter()
            .filter(|b| **b != 0)
            .count();
        return Some(if filled >= EXTENDED_32S_MIN_FILLED {
            Variant::Jk02_32s
        } else {
            Variant::Jk02_24s
        });
    }
    let sum24: i64 = (0..24).map(|i| i64::from(read_u16(frame, 6 + 2 * i))).sum();
    let gap32 = (i64::from(read_u32(frame, 150)) - sum32).abs();
    let gap24 = (i64::from(read_u32(frame, 118)) - sum24).abs();
    Some(if gap32 < gap24 {
        Variant::Jk02_32s
    } else {
        Variant::Jk02_24s
    })
}

/// Rule 2 of §1.9: the software version in a device-info frame. Major 11 and later means 32S,
/// 3.x means JK04, and the JK-B5A24S active balancer is JK04 although its firmware is 8.x.
pub fn detect_from_device_info(model: &str, software_version: &str) -> Variant {
    let major: u32 = software_version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major >= 11 {
        Variant::Jk02_32s
    } else if major == 3 || model.contains("B5A") {
        Variant::Jk04
    } else {
        Variant::Jk02_24s
    }
}

/// A weak rule for a settings frame seen on its own (checked on every settings frame of the
/// corpus): JK04 settings start with the f32 1.0; JK02_32S firmware fills bytes 270..299
/// (device address, precharge time, control bits, heating limits) while JK02_24S leaves them 0.
pub fn detect_from_settings(frame: &[u8]) -> Variant {
    if frame.len() >= 300 && read_u32(frame, 6) == 1.0f32.to_bits() {
        Variant::Jk04
    } else if frame.len() >= 299 && frame[270..299].iter().any(|b| *b != 0) {
        Variant::Jk02_32s
    } else {
        Variant::Jk02_24s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_versions_map_to_layouts() {
        assert_eq!(
            detect_from_device_info("JK_PB2A16S15P", "14.20"),
            Variant::Jk02_32s
        );
        assert_eq!(
            detect_from_device_info("JK_B2A20S20P", "11.288H"),
            Variant::Jk02_32s
        );
        assert_eq!(
            detect_from_device_info("JK-B2A24S20P", "10.07"),
            Variant::Jk02_24s
        );
        assert_eq!(
            detect_from_device_info("JK-BD6A24S10P", "8.0.6G"),
            Variant::Jk02_24s
        );
        assert_eq!(
            detect_from_device_info("JK-B5A24S", "8.0.3M"),
            Variant::Jk04
        );
        assert_eq!(detect_from_device_info("JK-B2A16S", "3.3.0"), Variant::Jk04);
        assert_eq!(detect_from_device_info("", ""), Variant::Jk02_24s);
    }

    #[test]
    fn variant_choice_parses_and_names_the_bad_value() {
        assert_eq!("AUTO".parse::<VariantChoice>(), Ok(VariantChoice::Auto));
        assert_eq!(
            "jk02_32s".parse::<VariantChoice>(),
            Ok(VariantChoice::Fixed(Variant::Jk02_32s))
        );
        let err = "jk03".parse::<VariantChoice>().unwrap_err();
        assert!(
            err.contains("\"jk03\"") && err.contains("jk02_24s"),
            "{err}"
        );
    }

    #[test]
    fn a_frame_of_zero_cells_falls_back_to_the_extended_fields() {
        let mut frame = [0u8; 300];
        frame[..4].copy_from_slice(&[0x55, 0xAA, 0xEB, 0x90]);
        assert_eq!(detect_from_cell_info(&frame), Some(Variant::Jk02_24s));
        frame[190..230].fill(0x11);
        assert_eq!(detect_from_cell_info(&frame), Some(Variant::Jk02_32s));
        assert_eq!(detect_from_cell_info(&frame[..100]), None);
    }
}
