//! The 20-byte commands a client writes to the BMS over BLE (§1.6), and their recognition when
//! they appear in a byte stream (the BMS's `C8` ready/ack frame has the same shape, §1.7).

use super::checksum::sum8;
use super::{hex, DecodeError};

pub const COMMAND_HEADER: [u8; 4] = [0xAA, 0x55, 0x90, 0xEB];
pub const COMMAND_LEN: usize = 20;

/// Asks for the device-info frame (type 0x03). Send it first: newer firmware streams no cell
/// info until it has seen 0x97 (§1.8).
pub const CMD_DEVICE_INFO: u8 = 0x97;
/// Asks for the settings frame (type 0x01) and starts the cell-info stream (type 0x02).
pub const CMD_CELL_INFO: u8 = 0x96;
/// The BMS's "ready / acknowledged" frame.
pub const CMD_ACK: u8 = 0xC8;
/// Asks for the logbook (type 0x05) on JK02_32S.
pub const CMD_LOGBOOK: u8 = 0xA1;

/// Builds a request: header, command, zero length and value, zero filler, sum8.
pub fn request(command: u8) -> [u8; COMMAND_LEN] {
    let mut f = [0u8; COMMAND_LEN];
    f[..4].copy_from_slice(&COMMAND_HEADER);
    f[4] = command;
    f[19] = sum8(&f[..19]);
    f
}

/// A command frame seen in a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    pub command: u8,
    /// Bytes 5 (length) and 6..10 (value, little-endian).
    pub length: u8,
    pub value: u32,
}

impl Command {
    pub fn describe(&self) -> String {
        match self.command {
            CMD_DEVICE_INFO => "request device info (0x97)".into(),
            CMD_CELL_INFO => "request settings and cell info (0x96)".into(),
            CMD_ACK => "BMS ready/ack (0xc8)".into(),
            CMD_LOGBOOK => "request logbook (0xa1)".into(),
            c => format!(
                "write register {c:#04x} = {} ({} bytes)",
                self.value, self.length
            ),
        }
    }
}

/// Parses a 20-byte command frame (bytes 10..19 are filler the BMS ignores).
pub fn parse(bytes: &[u8]) -> Result<Command, DecodeError> {
    if bytes.len() < COMMAND_LEN {
        return Err(DecodeError::Truncated {
            what: "AA 55 90 EB command",
            got: bytes.len(),
            expected: COMMAND_LEN,
        });
    }
    if bytes[..4] != COMMAND_HEADER {
        return Err(DecodeError::BadHeader {
            expected: "AA 55 90 EB",
            got: hex(&bytes[..4]),
        });
    }
    let computed = sum8(&bytes[..19]);
    if computed != bytes[19] {
        return Err(DecodeError::BadChecksum {
            at: 19,
            got: bytes[19],
            computed,
        });
    }
    Ok(Command {
        command: bytes[4],
        length: bytes[5],
        value: u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_exact_bytes_of_the_reference() {
        // §1.6: AA 55 90 EB 97 00 … 00 11 and AA 55 90 EB 96 00 … 00 10
        let mut device = [0u8; 20];
        device[..5].copy_from_slice(&[0xAA, 0x55, 0x90, 0xEB, 0x97]);
        device[19] = 0x11;
        assert_eq!(request(CMD_DEVICE_INFO), device);
        let mut cell = device;
        cell[4] = 0x96;
        cell[19] = 0x10;
        assert_eq!(request(CMD_CELL_INFO), cell);
        assert_eq!(request(CMD_LOGBOOK)[19], 0x1B);
    }

    #[test]
    fn the_ack_frame_parses() {
        let mut ack = [0u8; 20];
        ack[..7].copy_from_slice(&[0xAA, 0x55, 0x90, 0xEB, 0xC8, 0x01, 0x01]);
        ack[19] = 0x44;
        let c = parse(&ack).unwrap();
        assert_eq!((c.command, c.length, c.value), (CMD_ACK, 1, 1));
        ack[19] = 0x45;
        assert_eq!(
            parse(&ack).unwrap_err().to_string(),
            "bad checksum: byte 19 is 0x45, computed 0x44"
        );
    }
}
