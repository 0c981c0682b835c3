//! Decodes the items of one stream (one BMS, or one dump), remembering the layout it learnt.
//!
//! The layout of a settings frame cannot be read reliably from the frame itself, and a frame
//! whose cells all read 0 V tells nothing; the stream decoder uses what earlier frames of the
//! same stream showed: a cell-info frame (reliable), else the device-info firmware version.

use super::assembler::{Item, RawFrame};
use super::cell_info::{self, CellInfo};
use super::command::Command;
use super::device_info::{self, DeviceInfo};
use super::logbook::{self, Logbook};
use super::rs485::Rs485Exchange;
use super::serial::{self, SerialResponse};
use super::settings::{self, Settings};
use super::variant::{detect_from_cell_info, detect_from_device_info, detect_from_settings};
use super::{DecodeError, FrameType, Variant, VariantChoice};

/// One decoded item of a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    CellInfo(CellInfo),
    /// The device info and the layout its firmware version implies.
    DeviceInfo(DeviceInfo, Variant),
    Settings(Settings),
    Logbook(Logbook),
    Serial(Box<SerialResponse>),
    Command(Command),
    Rs485Request(Rs485Exchange),
    Rs485Tail(Rs485Exchange),
    /// A switch write on the RS485 network, or a pack's answer to one.
    Rs485Switch(super::control::Rs485SwitchWrite),
}

#[derive(Debug, Clone, Default)]
pub struct StreamDecoder {
    choice: VariantChoice,
    learned: Option<Variant>,
    learned_from_cells: bool,
}

impl StreamDecoder {
    pub fn new(choice: VariantChoice) -> Self {
        StreamDecoder {
            choice,
            learned: None,
            learned_from_cells: false,
        }
    }

    /// The layout in use: the one asked for, else the one learnt from the stream.
    pub fn variant(&self) -> Option<Variant> {
        match self.choice {
            VariantChoice::Fixed(v) => Some(v),
            VariantChoice::Auto => self.learned,
        }
    }

    /// Forget what was learnt (another BMS may answer after a reconnect).
    pub fn reset(&mut self) {
        self.learned = None;
        self.learned_from_cells = false;
    }

    /// Decodes one assembler item. Rejections come back as their error.
    pub fn decode(&mut self, item: &Item) -> Result<Decoded, DecodeError> {
        match item {
            Item::Frame { frame, .. } => self.decode_frame(frame),
            Item::SerialFrame { bytes, .. } => {
                serial::decode_response(bytes).map(|r| Decoded::Serial(Box::new(r)))
            }
            Item::Command { command, .. } => Ok(Decoded::Command(*command)),
            Item::Rs485Request { exchange, .. } => Ok(Decoded::Rs485Request(*exchange)),
            Item::Rs485Tail { exchange, .. } => Ok(Decoded::Rs485Tail(*exchange)),
            Item::Rs485Switch { write, .. } => Ok(Decoded::Rs485Switch(*write)),
            Item::Rejected { error, .. } => Err(error.clone()),
        }
    }

    pub fn decode_frame(&mut self, frame: &RawFrame) -> Result<Decoded, DecodeError> {
        let bytes = &frame.bytes[..];
        match frame.kind {
            FrameType::CellInfo => {
                let variant = match self.choice {
                    VariantChoice::Fixed(v) => v,
                    VariantChoice::Auto => match detect_from_cell_info(bytes) {
                        Some(v) => {
                            self.learned = Some(v);
                            self.learned_from_cells = true;
                            v
                        }
                        None => self
                            .learned
                            .ok_or(DecodeError::UndecidableVariant("every cell reads 0 V"))?,
                    },
                };
                cell_info::decode(bytes, Some(variant)).map(Decoded::CellInfo)
            }
            FrameType::DeviceInfo => {
                let info = device_info::decode(bytes)?;
                let hinted = detect_from_device_info(&info.model, &info.software_version);
                if self.choice == VariantChoice::Auto && !self.learned_from_cells {
                    self.learned = Some(hinted);
                }
                let variant = self.variant().unwrap_or(hinted);
                Ok(Decoded::DeviceInfo(info, variant))
            }
            FrameType::Settings => {
                let variant = self
                    .variant()
                    .filter(|v| *v != Variant::Serial4e57)
                    .unwrap_or_else(|| detect_from_settings(bytes));
                settings::decode(bytes, variant).map(Decoded::Settings)
            }
            FrameType::Logbook => logbook::decode(bytes).map(Decoded::Logbook),
        }
    }
}
