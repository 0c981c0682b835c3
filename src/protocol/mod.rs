//! The JK BMS protocols, pure: bytes in, typed values or a [`DecodeError`] out.
//!
//! No async, no I/O, no logging set-up, no clock. Everything here is a function of its input, so
//! it is tested with byte arrays and thrown random input at (see `tests/it/decode_never_panics.rs`).
//!
//! - [`assembler`]: chunks from any transport → whole, checked frames (BLE, RS485, serial).
//! - [`command`]: the 20-byte BLE commands (0x97 device info, 0x96 cell info / settings).
//! - [`control`]: the switches (charging, discharging, balancer, heater): their writes on BLE
//!   and the RS485 network, and how a settings frame confirms one.
//! - [`variant`]: the three BLE layouts and how to tell them apart.
//! - [`cell_info`], [`device_info`], [`settings`], [`logbook`]: one type per `55 AA EB 90` frame;
//!   every byte offset lives in one layout per variant, documented there.
//! - [`serial`]: the big-endian `4E 57` protocol of the GPS/UART port.
//! - [`rs485`]: the JK-PB RS485 network (Modbus FC 0x10 triggers, 308-byte responses).
//! - [`decoder`]: a per-stream decoder that remembers the variant it has seen.
//!
//! Offsets are absolute from the first header byte; the reference is `jk-protocol.md` (§ numbers
//! in the docs below point into it).
//!
//! Layer 1 (the bottom): uses no other module of jkmon.

pub mod alarms;
pub mod assembler;
pub mod cell_info;
pub mod checksum;
pub mod command;
pub mod control;
pub mod decoder;
pub mod device_info;
pub mod error;
pub mod logbook;
pub mod rs485;
pub mod serial;
pub mod settings;
pub mod variant;

pub use assembler::{Assembler, AssemblerConfig, Item};
pub use cell_info::CellInfo;
pub use decoder::{Decoded, StreamDecoder};
pub use device_info::DeviceInfo;
pub use error::DecodeError;
pub use settings::Settings;
pub use variant::{Variant, VariantChoice};

/// Start of every BMS → client frame on BLE and on the JK-PB RS485 bus (§1.4).
pub const FRAME_HEADER: [u8; 4] = [0x55, 0xAA, 0xEB, 0x90];
/// Length of a `55 AA EB 90` frame including its checksum at byte 299 (§1.4).
pub const FRAME_LEN: usize = 300;
/// Offset of the sum8 checksum in a `55 AA EB 90` frame.
pub const CHECKSUM_AT: usize = 299;

/// The type byte at offset 4 of a `55 AA EB 90` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Settings,
    CellInfo,
    DeviceInfo,
    Logbook,
}

impl FrameType {
    pub fn from_byte(b: u8) -> Option<FrameType> {
        match b {
            0x01 => Some(FrameType::Settings),
            0x02 => Some(FrameType::CellInfo),
            0x03 => Some(FrameType::DeviceInfo),
            0x05 => Some(FrameType::Logbook),
            _ => None,
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            FrameType::Settings => 0x01,
            FrameType::CellInfo => 0x02,
            FrameType::DeviceInfo => 0x03,
            FrameType::Logbook => 0x05,
        }
    }
}

/// Checks the envelope of a `55 AA EB 90` frame: length, header, type byte and checksum.
/// Bytes after the first 300 (an ack, `AT\r\n`, an RS485 tail) are ignored, as on the wire.
pub fn check_frame(bytes: &[u8]) -> Result<FrameType, DecodeError> {
    if bytes.len() < FRAME_LEN {
        return Err(DecodeError::Truncated {
            what: "55 AA EB 90 frame",
            got: bytes.len(),
            expected: FRAME_LEN,
        });
    }
    if bytes[..4] != FRAME_HEADER {
        return Err(DecodeError::BadHeader {
            expected: "55 AA EB 90",
            got: hex(&bytes[..4]),
        });
    }
    let computed = checksum::sum8(&bytes[..CHECKSUM_AT]);
    if computed != bytes[CHECKSUM_AT] {
        return Err(DecodeError::BadChecksum {
            at: CHECKSUM_AT,
            got: bytes[CHECKSUM_AT],
            computed,
        });
    }
    FrameType::from_byte(bytes[4]).ok_or(DecodeError::UnknownFrameType(bytes[4]))
}

/// Checks the envelope like [`check_frame`] and that the frame is of the `wanted` type.
pub fn expect_frame(
    bytes: &[u8],
    wanted: FrameType,
    what: &'static str,
) -> Result<(), DecodeError> {
    let kind = check_frame(bytes)?;
    if kind != wanted {
        return Err(DecodeError::BadHeader {
            expected: what,
            got: format!("type {:#04x}", kind.byte()),
        });
    }
    Ok(())
}

/// Writes header, type, counter and checksum into a 300-byte frame body (used by the simulator
/// and the tests to build frames).
pub fn seal_frame(frame: &mut [u8; FRAME_LEN], kind: FrameType, counter: u8) {
    frame[..4].copy_from_slice(&FRAME_HEADER);
    frame[4] = kind.byte();
    frame[5] = counter;
    frame[CHECKSUM_AT] = checksum::sum8(&frame[..CHECKSUM_AT]);
}

/// Lower-case hex with spaces, for messages.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

// Little-endian field readers. Callers check the length once (every `55 AA EB 90` decoder
// receives at least 300 bytes); a read past the end yields 0 rather than a panic.

pub(crate) fn read_u8(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

pub(crate) fn read_u16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

pub(crate) fn read_i16(b: &[u8], at: usize) -> i16 {
    read_u16(b, at) as i16
}

pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

pub(crate) fn read_i32(b: &[u8], at: usize) -> i32 {
    read_u32(b, at) as i32
}

pub(crate) fn read_f32(b: &[u8], at: usize) -> f32 {
    f32::from_bits(read_u32(b, at))
}

/// A NUL-terminated ASCII field; bytes that are not UTF-8 become U+FFFD (some firmwares put
/// stray bytes in these fields), trailing spaces and NULs are dropped.
pub(crate) fn read_str(b: &[u8], at: usize, len: usize) -> String {
    let field = b.get(at..(at + len).min(b.len())).unwrap_or(&[]);
    let end = field.iter().position(|c| *c == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end])
        .trim_end()
        .to_string()
}

pub(crate) fn write_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn write_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn write_str(b: &mut [u8], at: usize, len: usize, s: &str) {
    let bytes = s.as_bytes();
    let n = bytes.len().min(len);
    b[at..at + n].copy_from_slice(&bytes[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_never_read_past_the_end() {
        let b = [1u8, 2, 3];
        assert_eq!(read_u16(&b, 2), 0);
        assert_eq!(read_u32(&b, 0), 0);
        assert_eq!(read_u8(&b, 9), 0);
        assert_eq!(read_str(&b, 2, 10), "\u{3}");
        assert_eq!(read_str(&b, 10, 10), "");
    }

    #[test]
    fn check_frame_names_the_checksum_byte() {
        let mut f = [0u8; FRAME_LEN];
        seal_frame(&mut f, FrameType::CellInfo, 7);
        assert_eq!(check_frame(&f), Ok(FrameType::CellInfo));
        f[CHECKSUM_AT] = f[CHECKSUM_AT].wrapping_add(1);
        let err = check_frame(&f).unwrap_err();
        let computed = checksum::sum8(&f[..CHECKSUM_AT]);
        assert_eq!(
            err.to_string(),
            format!(
                "bad checksum: byte 299 is {:#04x}, computed {:#04x}",
                computed.wrapping_add(1),
                computed
            )
        );
    }

    #[test]
    fn check_frame_rejects_short_and_foreign_bytes() {
        assert!(matches!(
            check_frame(&[0x55; 299]),
            Err(DecodeError::Truncated { got: 299, .. })
        ));
        assert!(matches!(
            check_frame(&[0u8; 300]),
            Err(DecodeError::BadHeader { .. })
        ));
        let mut f = [0u8; FRAME_LEN];
        f[..4].copy_from_slice(&FRAME_HEADER);
        f[4] = 0x04;
        f[CHECKSUM_AT] = checksum::sum8(&f[..CHECKSUM_AT]);
        assert_eq!(check_frame(&f), Err(DecodeError::UnknownFrameType(0x04)));
    }
}
