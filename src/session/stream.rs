//! The frames of one connection, turned into what the session acts on. Pure: chunks go in,
//! device info, settings, acks and cell readings come out. One per connection, so a frame cut
//! by a disconnect never joins the next connection's bytes.

use crate::protocol::command::CMD_ACK;
use crate::protocol::{
    Assembler, AssemblerConfig, CellInfo, Decoded, DeviceInfo, Item, Settings, StreamDecoder,
    Variant, VariantChoice,
};

/// What a chunk brought.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    DeviceInfo,
    Settings,
    /// The `C8` ack the BMS sends after answering a command.
    Ack,
    Cells(Box<CellInfo>),
}

/// Assembler + decoder + what the BMS said about itself on this connection.
pub struct FrameStream {
    assembler: Assembler,
    decoder: StreamDecoder,
    pub device_info: Option<DeviceInfo>,
    pub settings: Option<Settings>,
    /// Frames that failed their checks.
    pub rejected: u64,
    /// Frames that decoded.
    pub accepted: u64,
    /// Every checked frame as received, when asked for (`jkmon read --hex`).
    pub raw_frames: Option<Vec<Vec<u8>>>,
    name: String,
}

impl FrameStream {
    /// A BLE notification stream.
    pub fn new(name: &str, variant: VariantChoice) -> FrameStream {
        FrameStream::with_framing(name, variant, AssemblerConfig::ble())
    }

    /// A stream with other framing (the serial `4E 57` port, an RS485 bus).
    pub fn with_framing(
        name: &str,
        variant: VariantChoice,
        framing: AssemblerConfig,
    ) -> FrameStream {
        FrameStream {
            assembler: Assembler::new(framing),
            decoder: StreamDecoder::new(variant),
            device_info: None,
            settings: None,
            rejected: 0,
            accepted: 0,
            raw_frames: None,
            name: name.to_string(),
        }
    }

    /// The layout learnt from the frames so far.
    pub fn variant(&self) -> Option<Variant> {
        self.decoder.variant()
    }

    /// Drops a frame that stopped half-way (the line went quiet before its end), so the next
    /// answer starts clean; returns how many bytes were dropped.
    pub fn discard_partial(&mut self) -> usize {
        let n = self.assembler.pending();
        if n > 0 {
            self.assembler.reset();
            self.rejected += 1;
            tracing::warn!(bms = %self.name, "dropped {n} bytes of an unfinished frame after the line went quiet");
        }
        n
    }

    pub fn push(&mut self, chunk: &[u8]) -> Vec<StreamEvent> {
        self.assembler.push(chunk);
        let mut events = Vec::new();
        while let Some(item) = self.assembler.poll() {
            match (&item, self.raw_frames.as_mut()) {
                (Item::Frame { frame, .. }, Some(raw)) => raw.push(frame.bytes.to_vec()),
                (Item::SerialFrame { bytes, .. }, Some(raw)) => raw.push(bytes.clone()),
                _ => {}
            }
            let decoded = match self.decoder.decode(&item) {
                Ok(d) => d,
                Err(e) => {
                    self.rejected += 1;
                    tracing::warn!(bms = %self.name, error = %e, "rejected a frame");
                    continue;
                }
            };
            match decoded {
                Decoded::DeviceInfo(info, _) => {
                    self.accepted += 1;
                    self.device_info = Some(info);
                    events.push(StreamEvent::DeviceInfo);
                }
                Decoded::Settings(s) => {
                    self.accepted += 1;
                    self.settings = Some(s);
                    events.push(StreamEvent::Settings);
                }
                Decoded::CellInfo(cells) => {
                    self.accepted += 1;
                    events.push(StreamEvent::Cells(Box::new(cells)));
                }
                Decoded::Serial(response) => {
                    // one answer carries cells, device strings and settings at once
                    self.accepted += 1;
                    let r = *response;
                    tracing::debug!(bms = %self.name, codes = ?r.raw_temperature_codes, "raw temperature codes (MOS, T1, T2)");
                    self.device_info = Some(r.device_info);
                    self.settings = Some(r.settings);
                    events.push(StreamEvent::Cells(Box::new(r.cell_info)));
                }
                Decoded::Command(c) if c.command == CMD_ACK => events.push(StreamEvent::Ack),
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::{self, CMD_ACK};

    #[test]
    fn a_corrupt_frame_is_counted_and_skipped() {
        let mut s = FrameStream::new("t", VariantChoice::Auto);
        let mut bad = vec![0u8; 300];
        bad[..4].copy_from_slice(&crate::protocol::FRAME_HEADER);
        bad[4] = 2;
        bad[299] = 0x01; // wrong checksum
        assert!(s.push(&bad).is_empty());
        assert_eq!(s.rejected, 1);
        let mut ack = command::request(CMD_ACK).to_vec();
        ack[5] = 1;
        ack[6] = 1;
        ack[19] = crate::protocol::checksum::sum8(&ack[..19]);
        assert_eq!(s.push(&ack), vec![StreamEvent::Ack]);
    }
}
