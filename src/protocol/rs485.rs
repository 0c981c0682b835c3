//! The JK-PB RS485 network (§4): the master triggers a frame from a slave with a Modbus FC 0x10
//! write of one register; the slave answers with a 300-byte `55 AA EB 90` frame (JK02_32S)
//! immediately followed by the 8-byte FC 0x10 response, whose first byte is its address.

use super::checksum::crc16_modbus;
use super::DecodeError;

/// Modbus function code "write multiple registers".
pub const FC_WRITE_MULTIPLE: u8 = 0x10;
pub const REQUEST_LEN: usize = 11;
pub const TAIL_LEN: usize = 8;
/// Highest address on the bus (DIP switches 0x00-0x0F; 0x00 is the master).
pub const MAX_ADDRESS: u8 = 0x0F;

/// The trigger registers in the command block 0x1600 (§4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rs485Register {
    DeviceInfo,
    Settings,
    CellInfo,
}

impl Rs485Register {
    pub fn address(self) -> u16 {
        match self {
            Rs485Register::DeviceInfo => 0x161C,
            Rs485Register::Settings => 0x161E,
            Rs485Register::CellInfo => 0x1620,
        }
    }
    pub fn from_address(reg: u16) -> Option<Rs485Register> {
        match reg {
            0x161C => Some(Rs485Register::DeviceInfo),
            0x161E => Some(Rs485Register::Settings),
            0x1620 => Some(Rs485Register::CellInfo),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Rs485Register::DeviceInfo => "device info",
            Rs485Register::Settings => "settings",
            Rs485Register::CellInfo => "cell info",
        }
    }
}

/// A request or a response tail seen on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rs485Exchange {
    pub address: u8,
    pub register: u16,
}

/// The 11-byte request that makes `address` send the frame behind `register`:
/// `[addr] 10 [reg hi] [reg lo] 00 01 02 00 00 [crc lo] [crc hi]`.
pub fn request(address: u8, register: Rs485Register) -> [u8; REQUEST_LEN] {
    let [hi, lo] = register.address().to_be_bytes();
    let mut f = [
        address,
        FC_WRITE_MULTIPLE,
        hi,
        lo,
        0x00,
        0x01,
        0x02,
        0x00,
        0x00,
        0,
        0,
    ];
    let crc = crc16_modbus(&f[..9]).to_le_bytes();
    f[9..].copy_from_slice(&crc);
    f
}

/// The 8-byte FC 0x10 response a slave sends after its frame: `[addr] 10 16 [reg lo] 00 01
/// [crc lo] [crc hi]`.
pub fn tail(address: u8, register: Rs485Register) -> [u8; TAIL_LEN] {
    let [hi, lo] = register.address().to_be_bytes();
    let mut f = [address, FC_WRITE_MULTIPLE, hi, lo, 0x00, 0x01, 0, 0];
    let crc = crc16_modbus(&f[..6]).to_le_bytes();
    f[6..].copy_from_slice(&crc);
    f
}

pub(crate) fn check_crc(bytes: &[u8], body: usize) -> Result<(), DecodeError> {
    let computed = crc16_modbus(&bytes[..body]);
    let got = u16::from_le_bytes([bytes[body], bytes[body + 1]]);
    if got != computed {
        return Err(DecodeError::BadCrc {
            at: body,
            got,
            computed,
        });
    }
    Ok(())
}

fn shape(bytes: &[u8], len: usize, what: &'static str) -> Result<Rs485Exchange, DecodeError> {
    if bytes.len() < len {
        return Err(DecodeError::Truncated {
            what,
            got: bytes.len(),
            expected: len,
        });
    }
    if bytes[0] > MAX_ADDRESS || bytes[1] != FC_WRITE_MULTIPLE || bytes[2] != 0x16 {
        return Err(DecodeError::BadHeader {
            expected: "[address 00-0f] 10 16",
            got: super::hex(&bytes[..3]),
        });
    }
    Ok(Rs485Exchange {
        address: bytes[0],
        register: u16::from_be_bytes([bytes[2], bytes[3]]),
    })
}

/// Parses an 11-byte master request.
pub fn parse_request(bytes: &[u8]) -> Result<Rs485Exchange, DecodeError> {
    let ex = shape(bytes, REQUEST_LEN, "RS485 request")?;
    if bytes[4..9] != [0x00, 0x01, 0x02, 0x00, 0x00] {
        return Err(DecodeError::BadHeader {
            expected: "quantity 00 01, byte count 02, value 00 00",
            got: super::hex(&bytes[4..9]),
        });
    }
    check_crc(bytes, 9)?;
    Ok(ex)
}

/// Parses the 8-byte FC 0x10 response that follows a slave's frame:
/// `[addr] 10 16 [reg lo] 00 01 [crc lo] [crc hi]`.
pub fn parse_tail(bytes: &[u8]) -> Result<Rs485Exchange, DecodeError> {
    let ex = shape(bytes, TAIL_LEN, "RS485 response tail")?;
    if bytes[4..6] != [0x00, 0x01] {
        return Err(DecodeError::BadHeader {
            expected: "quantity 00 01",
            got: super::hex(&bytes[4..6]),
        });
    }
    check_crc(bytes, 6)?;
    Ok(ex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_match_the_published_frames() {
        // §4.2
        assert_eq!(
            request(1, Rs485Register::DeviceInfo),
            [0x01, 0x10, 0x16, 0x1C, 0x00, 0x01, 0x02, 0x00, 0x00, 0xD3, 0xCD]
        );
        assert_eq!(
            request(1, Rs485Register::Settings),
            [0x01, 0x10, 0x16, 0x1E, 0x00, 0x01, 0x02, 0x00, 0x00, 0xD2, 0x2F]
        );
        assert_eq!(request(0x0F, Rs485Register::CellInfo)[9..], [0x9A, 0x91]);
        assert_eq!(request(0x00, Rs485Register::DeviceInfo)[9..], [0xDE, 0x5D]);
    }

    #[test]
    fn tails_match_the_published_frames() {
        // §4.3: 01 10 16 20 00 01 04 4B, 01 10 16 1C 00 01 C4 47, 01 10 16 1E 00 01 65 87
        assert_eq!(
            tail(1, Rs485Register::CellInfo),
            [0x01, 0x10, 0x16, 0x20, 0x00, 0x01, 0x04, 0x4B]
        );
        assert_eq!(tail(1, Rs485Register::DeviceInfo)[6..], [0xC4, 0x47]);
        assert_eq!(tail(1, Rs485Register::Settings)[6..], [0x65, 0x87]);
        assert_eq!(
            parse_tail(&tail(9, Rs485Register::CellInfo))
                .unwrap()
                .address,
            9
        );
    }

    #[test]
    fn every_address_round_trips_and_a_flipped_bit_is_caught() {
        for addr in 0..=MAX_ADDRESS {
            for reg in [
                Rs485Register::DeviceInfo,
                Rs485Register::Settings,
                Rs485Register::CellInfo,
            ] {
                let r = request(addr, reg);
                let ex = parse_request(&r).unwrap();
                assert_eq!(
                    (ex.address, Rs485Register::from_address(ex.register)),
                    (addr, Some(reg))
                );
                let mut bad = r;
                bad[3] ^= 0x01;
                assert!(matches!(
                    parse_request(&bad),
                    Err(DecodeError::BadCrc { at: 9, .. })
                ));
            }
        }
    }

    #[test]
    fn the_published_tail_parses() {
        let ex = parse_tail(&[0x01, 0x10, 0x16, 0x20, 0x00, 0x01, 0x04, 0x4B]).unwrap();
        assert_eq!((ex.address, ex.register), (1, 0x1620));
        assert!(parse_tail(&[0x01, 0x10, 0x16, 0x20, 0x00, 0x01, 0x04, 0x4C]).is_err());
    }
}
