//! The three checksums JK devices use. Pure functions over byte slices.
//!
//! - BLE and JK-PB RS485 frames: `sum8`, the sum of every byte modulo 256 (reference §1.4, §1.6).
//! - JK-PB RS485 Modbus requests and tails: CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF,
//!   transmitted low byte first; reference §4.2).
//! - Serial `4E 57` frames: the sum of every byte as a big-endian u32 (reference §3.2).

/// Sum of all bytes modulo 256.
pub fn sum8(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

/// Sum of all bytes as u32 (wrapping; real frames never come near the limit).
pub fn sum32(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0u32, |acc, b| acc.wrapping_add(u32::from(*b)))
}

/// CRC-16/MODBUS. The result is sent on the wire low byte first.
pub fn crc16_modbus(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum8_of_the_device_info_request_is_0x11() {
        // AA 55 90 EB 97, then zeros: 0xAA+0x55+0x90+0xEB+0x97 = 0x311 -> 0x11
        assert_eq!(sum8(&[0xAA, 0x55, 0x90, 0xEB, 0x97]), 0x11);
    }

    #[test]
    fn crc16_matches_the_published_cell_info_request_to_address_1() {
        // 01 10 16 20 00 01 02 00 00 D6 F1 (reference §4.2): CRC low byte D6, high byte F1.
        let crc = crc16_modbus(&[0x01, 0x10, 0x16, 0x20, 0x00, 0x01, 0x02, 0x00, 0x00]);
        assert_eq!(crc.to_le_bytes(), [0xD6, 0xF1]);
    }

    #[test]
    fn crc16_of_the_standard_check_string() {
        // The CRC catalogue's check value for CRC-16/MODBUS over "123456789".
        assert_eq!(crc16_modbus(b"123456789"), 0x4B37);
    }

    #[test]
    fn sum32_adds_bytes_without_truncation() {
        assert_eq!(sum32(&[0xFF; 300]), 300 * 255);
    }
}
