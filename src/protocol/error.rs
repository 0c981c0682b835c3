//! The one error type of the protocol boundary. Every variant says what was wrong with the bytes,
//! with numbers a user can put in a bug report.

use thiserror::Error;

/// Why a chunk of bytes is not a valid JK frame. Produced by the assembler and every decoder;
/// none of them panics on any input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The frame stopped before its end: the input was cut short (a truncated capture or a
    /// disconnect in the middle of a frame).
    #[error("truncated frame: got {got} bytes, a {what} needs {expected}")]
    Truncated {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    /// The frame has a length that no valid frame of its kind has.
    #[error("wrong length: {what} is {got} bytes, expected {expected}")]
    WrongLength {
        what: &'static str,
        got: usize,
        expected: String,
    },
    /// A BLE / RS485 frame whose sum8 at byte 299 (or 19 for commands) does not match.
    #[error("bad checksum: byte {at} is {got:#04x}, computed {computed:#04x}")]
    BadChecksum { at: usize, got: u8, computed: u8 },
    /// A serial `4E 57` frame whose trailing u32 sum does not match.
    #[error("bad checksum: bytes {at}..{end} hold {got:#010x}, computed {computed:#010x}", end = at + 4)]
    BadSum32 { at: usize, got: u32, computed: u32 },
    /// An RS485 Modbus request or tail whose CRC-16 does not match.
    #[error("bad CRC-16: bytes {at}..{end} hold {got:#06x}, computed {computed:#06x}", end = at + 2)]
    BadCrc { at: usize, got: u16, computed: u16 },
    /// The first bytes are not the header of the expected frame kind.
    #[error("bad header: expected {expected}, got {got}")]
    BadHeader { expected: &'static str, got: String },
    /// A `55 AA EB 90` frame whose type byte (byte 4) is none of 0x01, 0x02, 0x03, 0x05.
    #[error("unknown frame type {0:#04x} at byte 4 (expected 0x01 settings, 0x02 cell info, 0x03 device info or 0x05 logbook)")]
    UnknownFrameType(u8),
    /// The BLE layout cannot be told from this frame (for example every cell reads 0 V);
    /// pass `--variant` / `JK_BMS_VARIANT` to decode it.
    #[error("cannot tell the frame layout (JK02_24S, JK02_32S or JK04) from this frame: {0}; set --variant / JK_BMS_VARIANT")]
    UndecidableVariant(&'static str),
    /// A serial `4E 57` frame that is well framed but whose content breaks the format.
    #[error("malformed 4E 57 frame at byte {at}: {problem}")]
    Serial { at: usize, problem: String },
}
