//! Logbook frames (type 0x05, the answer to command 0xA1 on JK02_32S; §2.8): the BMS's event
//! history, 50 entries of (u32 seconds, u8 event code).

use super::{expect_frame, read_u32, read_u8, DecodeError, FrameType};

pub const LOG_COUNT: usize = 6;
pub const ENTRIES: usize = 11;
pub const ENTRY_LEN: usize = 5;
pub const ENTRY_SLOTS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub time_s: u32,
    pub code: u8,
}

impl LogEntry {
    /// The meaning of the event codes the reference lists; others are "event 0xNN".
    pub fn description(&self) -> String {
        match self.code {
            0x01 => "Boot".into(),
            0x1B => "Charge low temperature protection".into(),
            0x1C => "Charge low temperature protection is released".into(),
            0x44 => "Factory setting LFP".into(),
            c @ 0x64..=0xC7 => format!("Cell {} over-charge protection", c - 0x64 + 1),
            c @ 0xC8..=0xFF => format!("Cell {} over-discharge protection", c - 0xC8 + 1),
            c => format!("event {c:#04x}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logbook {
    pub log_count: u32,
    /// The first `log_count` entries (at most 50).
    pub entries: Vec<LogEntry>,
}

pub fn decode(frame: &[u8]) -> Result<Logbook, DecodeError> {
    expect_frame(frame, FrameType::Logbook, "a logbook frame (type 0x05)")?;
    let log_count = read_u32(frame, LOG_COUNT);
    let n = (log_count as usize).min(ENTRY_SLOTS);
    let entries = (0..n)
        .map(|i| {
            let at = ENTRIES + i * ENTRY_LEN;
            LogEntry {
                time_s: read_u32(frame, at),
                code: read_u8(frame, at + 4),
            }
        })
        .collect();
    Ok(Logbook { log_count, entries })
}
