//! Talks to one BMS over a [`Link`]: the handshake (0x97 first, then 0x96, §1.8) and waiting for
//! the frames that make a snapshot. Event-driven: it reacts to what arrives, bounded by a
//! deadline, and never sleeps to "give the BMS time".

use std::time::Duration;

use thiserror::Error;
use tokio::time::{timeout_at, Instant};

use crate::battery::{Snapshot, SocEstimator};
use crate::protocol::command::{self, CMD_ACK, CMD_CELL_INFO, CMD_DEVICE_INFO};
use crate::protocol::{
    Assembler, AssemblerConfig, Decoded, Item, StreamDecoder, Variant, VariantChoice,
};
use crate::transport::{Link, TransportError};

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("no answer from {name} within {secs} s ({progress}); usual causes: the BMS is out of range or asleep, the JK phone app is connected (a JK BMS accepts one connection at a time: force-close the app), or the Bluetooth adapter is off")]
    Timeout {
        name: String,
        secs: u64,
        progress: String,
    },
    #[error("{name} disconnected before a complete reading ({progress})")]
    Disconnected { name: String, progress: String },
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// What one read collected.
#[derive(Debug, Clone)]
pub struct Reading {
    pub snapshot: Snapshot,
    /// The layout the device-info frame implies (for its JSON).
    pub variant: Variant,
    /// Every checked frame as received, for `--hex` bug reports.
    pub raw_frames: Vec<Vec<u8>>,
    /// Frames that failed their checks on the way.
    pub rejected: u64,
}

/// Runs the handshake and waits for device info and one complete cell-info frame.
pub async fn read_once(
    link: &mut Link,
    variant: VariantChoice,
    estimator: &dyn SocEstimator,
    timeout: Duration,
) -> Result<Reading, ReadError> {
    let deadline = Instant::now() + timeout;
    let mut assembler = Assembler::new(AssemblerConfig::ble());
    let mut decoder = StreamDecoder::new(variant);
    let mut device = None;
    let mut settings = None;
    let mut raw_frames = Vec::new();
    let mut rejected = 0u64;
    let mut sent_cell_request = false;
    // Some firmware answers 0x97 slowly or not at all: ask for the stream anyway after a while.
    let fallback = Instant::now() + timeout / 3;

    tracing::debug!(bms = %link.name, "sending device-info request 0x97");
    link.send(&command::request(CMD_DEVICE_INFO)).await?;
    loop {
        let progress = || describe_progress(device.is_some(), settings.is_some());
        let wake = if sent_cell_request {
            deadline
        } else {
            fallback.min(deadline)
        };
        let chunk = match timeout_at(wake, link.recv()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                return Err(ReadError::Disconnected {
                    name: link.name.clone(),
                    progress: progress(),
                })
            }
            Err(_) if Instant::now() >= deadline => {
                return Err(ReadError::Timeout {
                    name: link.name.clone(),
                    secs: timeout.as_secs(),
                    progress: progress(),
                })
            }
            Err(_) => {
                tracing::debug!(bms = %link.name, "no device info yet; sending 0x96 anyway");
                link.send(&command::request(CMD_CELL_INFO)).await?;
                sent_cell_request = true;
                continue;
            }
        };
        assembler.push(&chunk);
        while let Some(item) = assembler.poll() {
            if let Item::Frame { frame, .. } = &item {
                raw_frames.push(frame.bytes.to_vec());
            }
            let decoded = match decoder.decode(&item) {
                Ok(d) => d,
                Err(e) => {
                    rejected += 1;
                    tracing::warn!(bms = %link.name, error = %e, "rejected a frame");
                    continue;
                }
            };
            let ask_for_cells = match decoded {
                Decoded::DeviceInfo(info, _) => {
                    device = Some(info);
                    true
                }
                Decoded::Command(c) => c.command == CMD_ACK && device.is_some(),
                Decoded::Settings(s) => {
                    settings = Some(s);
                    false
                }
                Decoded::CellInfo(cells) if device.is_some() => {
                    let variant = decoder.variant().unwrap_or(cells.variant);
                    return Ok(Reading {
                        snapshot: Snapshot::new(cells, device, settings, estimator),
                        variant,
                        raw_frames,
                        rejected,
                    });
                }
                _ => false,
            };
            if ask_for_cells && !sent_cell_request {
                tracing::debug!(bms = %link.name, "sending cell-info request 0x96");
                link.send(&command::request(CMD_CELL_INFO)).await?;
                sent_cell_request = true;
            }
        }
    }
}

fn describe_progress(device: bool, settings: bool) -> String {
    match (device, settings) {
        (false, _) => "no device info received".into(),
        (true, false) => "device info received, no settings or cell info".into(),
        (true, true) => "device info and settings received, no cell info".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::battery::soc::BmsSoc;
    use crate::transport::sim::{self, SimConfig};

    #[tokio::test(start_paused = true)]
    async fn reads_the_simulated_bms() {
        let mut link = sim::connect(SimConfig {
            cells: 12,
            ..SimConfig::default()
        });
        let r = read_once(
            &mut link,
            VariantChoice::Auto,
            &BmsSoc,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(r.snapshot.cell_info.cell_count(), 12);
        assert_eq!(r.variant, Variant::Jk02_32s);
        assert_eq!(r.snapshot.device_info.unwrap().device_name, "jkmon-sim");
        assert!(r.snapshot.settings.is_some());
        assert_eq!(r.rejected, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_bms_times_out_with_the_usual_causes() {
        let (mut link, _peer) = Link::pair("silent", 4);
        let err = read_once(
            &mut link,
            VariantChoice::Auto,
            &BmsSoc,
            Duration::from_secs(3),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("within 3 s") && msg.contains("phone app"),
            "{msg}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_bms_that_hangs_up_is_reported() {
        let (mut link, peer) = Link::pair("flaky", 4);
        drop(peer);
        let err = read_once(
            &mut link,
            VariantChoice::Auto,
            &BmsSoc,
            Duration::from_secs(3),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::Transport(TransportError::Disconnected) | ReadError::Disconnected { .. }
            ),
            "{err}"
        );
    }
}
