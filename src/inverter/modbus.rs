//! Modbus reads as the Easun / ISolar SMG-II inverters answer them: the RTU part (unit, function,
//! registers, CRC-16) and the SmartESS Wi-Fi dongle's Eybond wrapper around it. Pure: bytes in,
//! checked registers or a named error out; nothing here touches a socket.
//!
//! A dongle frame (all big-endian but the CRC):
//!
//! ```text
//! TID(2) 00 01 LEN(2) FF 04 | unit FC start(2) count(2) CRC(2, low byte first)   request
//! TID(2) 00 01 LEN(2) FF 04 | unit FC bytes(1) registers(2·n) CRC(2)              response
//! TID(2) 00 01 LEN(2) FF 04 | unit FC|80 code CRC(2)                               exception
//! ```
//!
//! LEN counts the bytes after the LEN field; the CRC covers the RTU part only (from `unit`).
//! Every check the Python client leaves out is made: the TID, the wrapper, the unit and function
//! echoed, the exception bit, the byte count against the request, the CRC.

use thiserror::Error;

/// Reads of holding registers (what the vendor's protocol uses) or of input registers (a
/// fallback some firmwares want).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Holding = 0x03,
    Input = 0x04,
}

/// The most registers one read may ask for (Modbus' own limit).
pub const MAX_COUNT: u16 = 125;

/// Exception code 01: the device does not know this function.
pub const ILLEGAL_FUNCTION: u8 = 0x01;

/// CRC-16/MODBUS, sent low byte first: the one the JK-PB RS485 network uses too.
pub use crate::protocol::checksum::crc16_modbus as crc16;

/// One read: `count` registers from `start` of device `unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub unit: u8,
    pub function: Function,
    pub start: u16,
    pub count: u16,
}

impl Read {
    /// The RTU request: unit, function, start, count, CRC (8 bytes).
    pub fn rtu(&self) -> [u8; 8] {
        let mut f = [0u8; 8];
        f[0] = self.unit;
        f[1] = self.function as u8;
        f[2..4].copy_from_slice(&self.start.to_be_bytes());
        f[4..6].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc16(&f[..6]);
        f[6..8].copy_from_slice(&crc.to_le_bytes());
        f
    }

    /// The request as the dongle takes it: the RTU request in the Eybond wrapper with `tid`.
    pub fn eybond(&self, tid: u16) -> [u8; 16] {
        let mut f = [0u8; 16];
        f[0..2].copy_from_slice(&tid.to_be_bytes());
        f[2..4].copy_from_slice(&PROTOCOL);
        f[4..6].copy_from_slice(&10u16.to_be_bytes());
        f[6..8].copy_from_slice(&FORWARD);
        f[8..16].copy_from_slice(&self.rtu());
        f
    }

    /// The registers of the RTU answer `rtu` (unit … CRC) to this read, checked.
    pub fn answer(&self, rtu: &[u8]) -> Result<Vec<u16>, FrameError> {
        if rtu.len() < 5 {
            return Err(FrameError::Short { len: rtu.len() });
        }
        let (body, crc) = rtu.split_at(rtu.len() - 2);
        let got = u16::from_le_bytes([crc[0], crc[1]]);
        let want = crc16(body);
        if got != want {
            return Err(FrameError::Crc { got, want });
        }
        if body[0] != self.unit {
            return Err(FrameError::Unit {
                got: body[0],
                want: self.unit,
            });
        }
        let function = self.function as u8;
        if body[1] == function | 0x80 {
            return Err(FrameError::Exception {
                function,
                code: body[2],
            });
        }
        if body[1] != function {
            return Err(FrameError::Function {
                got: body[1],
                want: function,
            });
        }
        let want = usize::from(self.count) * 2;
        let count = usize::from(body[2]);
        if count != want || body.len() != 3 + want {
            return Err(FrameError::ByteCount {
                got: count,
                len: body.len() - 3,
                want,
            });
        }
        Ok(body[3..]
            .chunks_exact(2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
            .collect())
    }
}

/// The Eybond "protocol" field (the dongle echoes it).
pub const PROTOCOL: [u8; 2] = [0x00, 0x01];
/// Eybond device 0xFF, function 04: forward to the inverter.
pub const FORWARD: [u8; 2] = [0xFF, 0x04];
/// The Eybond header: TID, protocol, LEN.
pub const HEADER_LEN: usize = 6;
/// LEN of the shortest (an exception) and longest (125 registers) forwarded answer.
const LEN_RANGE: std::ops::RangeInclusive<usize> = 7..=257;

/// What is wrong with an answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("a frame of {len} bytes is too short for an answer")]
    Short { len: usize },
    #[error("the frame's length field says {len} bytes, which no answer has (7-257): the stream is out of step")]
    Length { len: usize },
    #[error("not a forwarded inverter answer (Eybond device/function {0:02x} {1:02x})")]
    NotForwarded(u8, u8),
    #[error("answer to request {got:#06x}, not to the one waiting ({want:#06x})")]
    Tid { got: u16, want: u16 },
    #[error("bad CRC: {got:#06x}, expected {want:#06x}")]
    Crc { got: u16, want: u16 },
    #[error("answer from unit {got}, asked unit {want}")]
    Unit { got: u8, want: u8 },
    #[error("answer with function {got:#04x} to a function {want:#04x} read")]
    Function { got: u8, want: u8 },
    #[error("the inverter refused function {function:#04x} with exception {code:#04x} ({})", exception_name(*code))]
    Exception { function: u8, code: u8 },
    #[error("{got} data bytes announced and {len} sent, {want} asked for")]
    ByteCount { got: usize, len: usize, want: usize },
}

/// Modbus' names for the exception codes an inverter sends.
pub fn exception_name(code: u8) -> &'static str {
    match code {
        0x01 => "illegal function",
        0x02 => "illegal data address",
        0x03 => "illegal data value",
        0x04 => "device failure",
        0x06 => "device busy",
        _ => "unknown exception",
    }
}

/// How many bytes follow an Eybond header: its LEN field, checked.
pub fn eybond_len(header: &[u8; HEADER_LEN]) -> Result<usize, FrameError> {
    let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    if LEN_RANGE.contains(&len) {
        Ok(len)
    } else {
        Err(FrameError::Length { len })
    }
}

/// The registers of a whole Eybond frame `frame` (header and body) answering `read` sent as
/// `tid`, checked. A frame that is not a forwarded answer, or answers another TID, is an error
/// the caller skips while it waits for its own.
pub fn eybond_answer(read: &Read, tid: u16, frame: &[u8]) -> Result<Vec<u16>, FrameError> {
    if frame.len() < HEADER_LEN + 2 + 5 {
        return Err(FrameError::Short { len: frame.len() });
    }
    let header: &[u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().expect("6 bytes");
    let len = eybond_len(header)?;
    if frame.len() != HEADER_LEN + len {
        return Err(FrameError::Length { len });
    }
    if frame[6..8] != FORWARD {
        return Err(FrameError::NotForwarded(frame[6], frame[7]));
    }
    let got = u16::from_be_bytes([frame[0], frame[1]]);
    if got != tid {
        return Err(FrameError::Tid { got, want: tid });
    }
    read.answer(&frame[8..])
}

/// The RTU answer of `registers` to `read` (for the simulated inverter).
pub fn rtu_answer(read: &Read, registers: &[u16]) -> Vec<u8> {
    let mut f = vec![read.unit, read.function as u8, (registers.len() * 2) as u8];
    for r in registers {
        f.extend_from_slice(&r.to_be_bytes());
    }
    let crc = crc16(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

/// The RTU exception `code` to `read` (for the simulated inverter).
pub fn rtu_exception(read: &Read, code: u8) -> Vec<u8> {
    let mut f = vec![read.unit, read.function as u8 | 0x80, code];
    let crc = crc16(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

/// `rtu` (an answer) in the Eybond wrapper with `tid`.
pub fn eybond_wrap(tid: u16, rtu: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER_LEN + 2 + rtu.len());
    f.extend_from_slice(&tid.to_be_bytes());
    f.extend_from_slice(&PROTOCOL);
    f.extend_from_slice(&((rtu.len() + 2) as u16).to_be_bytes());
    f.extend_from_slice(&FORWARD);
    f.extend_from_slice(rtu);
    f
}

/// The read in an Eybond request frame (for the simulated dongle): its TID and the read, or
/// `None` for a frame that is not a well-formed forwarded read (a real inverter stays silent).
pub fn parse_eybond_request(frame: &[u8]) -> Option<(u16, Read)> {
    if frame.len() != 16 || frame[6..8] != FORWARD || frame[4..6] != [0, 10] {
        return None;
    }
    let read = parse_rtu_request(&frame[8..])?;
    Some((u16::from_be_bytes([frame[0], frame[1]]), read))
}

/// The read in an 8-byte RTU request (for the simulated inverter on a serial line or behind a
/// TCP gateway), or `None` when it is not a read of registers with a good CRC.
pub fn parse_rtu_request(rtu: &[u8]) -> Option<Read> {
    if rtu.len() != 8 || crc16(&rtu[..6]) != u16::from_le_bytes([rtu[6], rtu[7]]) {
        return None;
    }
    let function = match rtu[1] {
        0x03 => Function::Holding,
        0x04 => Function::Input,
        _ => return None,
    };
    Some(Read {
        unit: rtu[0],
        function,
        start: u16::from_be_bytes([rtu[2], rtu[3]]),
        count: u16::from_be_bytes([rtu[4], rtu[5]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn crc_is_modbus_and_goes_low_byte_first() {
        // the standard check value, and the vendor's worked example (01 03 00 CA 00 03 → 25 F5)
        assert_eq!(crc16(b"123456789"), 0x4B37);
        let read = Read {
            unit: 1,
            function: Function::Holding,
            start: 0xCA,
            count: 3,
        };
        assert_eq!(read.rtu(), [0x01, 0x03, 0x00, 0xCA, 0x00, 0x03, 0x25, 0xF5]);
    }

    #[test]
    fn requests_are_the_bytes_the_dongle_takes() {
        // a captured SmartESS request: register 184 ×1 (unit 1, TID 0x0772)
        let r = |start, count| Read {
            unit: 1,
            function: Function::Holding,
            start,
            count,
        };
        assert_eq!(
            r(184, 1).eybond(0x0772).to_vec(),
            unhex("07 72 00 01 00 0A FF 04 01 03 00 B8 00 01 04 2F")
        );
        // the Python poller's first request to a 6K: 201 ×34
        assert_eq!(
            r(201, 34).eybond(0x0772).to_vec(),
            unhex("07 72 00 01 00 0A FF 04 01 03 00 C9 00 22 15 ED")
        );
        let (tid, read) = parse_eybond_request(&r(201, 34).eybond(0x0773)).unwrap();
        assert_eq!((tid, read), (0x0773, r(201, 34)));
    }

    #[test]
    fn a_captured_answer_decodes_and_every_fault_is_named() {
        // an 11K's battery block, 277 ×5: 52.1 V, −9.8 A, −510 W, 66 %, 21 °C
        let frame = unhex("07 7A 00 01 00 11 FF 04 01 03 0A 02 09 FF 9E FE 02 00 42 00 15 D2 24");
        let read = Read {
            unit: 1,
            function: Function::Holding,
            start: 277,
            count: 5,
        };
        let regs = eybond_answer(&read, 0x077A, &frame).unwrap();
        assert_eq!(regs, [521, 0xFF9E, 0xFE02, 66, 21]);
        assert_eq!(regs[1] as i16, -98);
        assert_eq!(regs[2] as i16, -510);

        let mut bad_crc = frame.clone();
        bad_crc[12] ^= 1;
        assert!(matches!(
            eybond_answer(&read, 0x077A, &bad_crc),
            Err(FrameError::Crc { .. })
        ));
        assert_eq!(
            eybond_answer(&read, 0x0779, &frame),
            Err(FrameError::Tid {
                got: 0x077A,
                want: 0x0779
            })
        );
        let other_unit = Read { unit: 0, ..read };
        assert!(matches!(
            eybond_answer(&other_unit, 0x077A, &frame),
            Err(FrameError::Unit { got: 1, want: 0 })
        ));
        let longer = Read { count: 6, ..read };
        assert!(matches!(
            eybond_answer(&longer, 0x077A, &frame),
            Err(FrameError::ByteCount {
                got: 10,
                want: 12,
                ..
            })
        ));
        let input = Read {
            function: Function::Input,
            ..read
        };
        assert!(matches!(
            eybond_answer(&input, 0x077A, &frame),
            Err(FrameError::Function { got: 3, want: 4 })
        ));
        // an exception is an exception, never registers (the Python client read its CRC as a value)
        let exception = eybond_wrap(0x077A, &rtu_exception(&read, 0x02));
        let e = eybond_answer(&read, 0x077A, &exception).unwrap_err();
        assert_eq!(
            e,
            FrameError::Exception {
                function: 3,
                code: 2
            }
        );
        assert!(e.to_string().contains("illegal data address"), "{e}");
        // a heartbeat or other collector frame is not an answer
        let mut heartbeat = frame.clone();
        heartbeat[7] = 0x01;
        assert_eq!(
            eybond_answer(&read, 0x077A, &heartbeat),
            Err(FrameError::NotForwarded(0xFF, 0x01))
        );
        // what the simulator builds is what a real inverter sent
        let rebuilt = eybond_wrap(0x077A, &rtu_answer(&read, &regs));
        assert_eq!(rebuilt, frame);
    }

    #[test]
    fn a_length_field_no_answer_has_is_refused() {
        for (len, ok) in [
            (6, false),
            (7, true),
            (257, true),
            (258, false),
            (0xFFFF, false),
        ] {
            let mut header = [0x07, 0x72, 0x00, 0x01, 0, 0];
            header[4..6].copy_from_slice(&(len as u16).to_be_bytes());
            assert_eq!(eybond_len(&header).is_ok(), ok, "{len}");
        }
    }

    #[test]
    fn no_input_panics() {
        let read = Read {
            unit: 1,
            function: Function::Holding,
            start: 201,
            count: 34,
        };
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..20_000 {
            let len = rng.usize(0..90);
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let _ = eybond_answer(&read, 0x0772, &bytes);
            let _ = read.answer(&bytes);
            let _ = parse_eybond_request(&bytes);
        }
    }
}
