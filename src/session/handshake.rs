//! The JK handshake over a [`Link`] (§1.8 of the reference): 0x97 first, then 0x96 once device
//! info (or its ack) arrived, until the first complete cell-info frame. Event-driven: it reacts to
//! what arrives, bounded by a deadline, and never sleeps to "give the BMS time". The only timer
//! re-sends nothing but a late 0x96 for firmware that never answers 0x97.

use std::time::Duration;

use tokio::time::{timeout_at, Instant};

pub use super::read_error::ReadError;
use super::stream::{FrameStream, StreamEvent};
use crate::battery::{Snapshot, SocEstimator};
use crate::protocol::command::{self, CMD_CELL_INFO, CMD_DEVICE_INFO};
use crate::protocol::{CellInfo, Variant, VariantChoice};
use crate::transport::Link;

/// What one read collected.
#[derive(Debug, Clone)]
pub struct Reading {
    pub snapshot: Snapshot,
    /// The layout the frames implied (for the JSON of device info).
    pub variant: Variant,
    /// Every checked frame as received, for `--hex` bug reports.
    pub raw_frames: Vec<Vec<u8>>,
    /// Frames that failed their checks on the way.
    pub rejected: u64,
}

/// Connects the pieces for `jkmon read`: the handshake (or the first serial answer), then one
/// snapshot.
pub async fn read_once(
    link: &mut Link,
    variant: VariantChoice,
    dialogue: super::Dialogue,
    estimator: &dyn SocEstimator,
    timeout: Duration,
    response_timeout: Duration,
) -> Result<Reading, ReadError> {
    let mut stream = FrameStream::with_framing(&link.name, variant, dialogue.framing());
    stream.raw_frames = Some(Vec::new());
    let deadline = Instant::now() + timeout;
    let cells = match dialogue {
        super::Dialogue::Ble => handshake(link, &mut stream, deadline).await?,
        super::Dialogue::Serial => {
            super::serial::first_answer(link, &mut stream, response_timeout, deadline).await?
        }
    };
    let variant = stream.variant().unwrap_or(cells.variant);
    Ok(Reading {
        snapshot: Snapshot::new(
            cells,
            stream.device_info.clone(),
            stream.settings.clone(),
            estimator,
        ),
        variant,
        raw_frames: stream.raw_frames.take().unwrap_or_default(),
        rejected: stream.rejected,
    })
}

/// Sends 0x97, then 0x96 once the BMS answered (or a third of the time is gone), and returns the
/// first cell-info frame that arrives after device info. `stream` keeps going afterwards: the
/// streaming session reads on from where the handshake stopped.
pub async fn handshake(
    link: &mut Link,
    stream: &mut FrameStream,
    deadline: Instant,
) -> Result<CellInfo, ReadError> {
    let started = Instant::now();
    let total = deadline.saturating_duration_since(started);
    // Some firmware answers 0x97 slowly or not at all: ask for the stream anyway after a while.
    let fallback = started + total / 3;
    let mut sent_cell_request = false;

    tracing::debug!(bms = %link.name, "sending device-info request 0x97");
    link.send(&command::request(CMD_DEVICE_INFO)).await?;
    loop {
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
                    progress: describe_progress(stream),
                })
            }
            Err(_) if Instant::now() >= deadline => {
                return Err(ReadError::Timeout {
                    name: link.name.clone(),
                    secs: total.as_secs_f64().round() as u64,
                    progress: describe_progress(stream),
                })
            }
            Err(_) => {
                tracing::debug!(bms = %link.name, "no device info yet; sending 0x96 anyway");
                link.send(&command::request(CMD_CELL_INFO)).await?;
                sent_cell_request = true;
                continue;
            }
        };
        for event in stream.push(&chunk) {
            let ask_for_cells = match event {
                StreamEvent::DeviceInfo => true,
                StreamEvent::Ack => stream.device_info.is_some(),
                StreamEvent::Settings => false,
                StreamEvent::Cells(cells) if stream.device_info.is_some() => return Ok(*cells),
                StreamEvent::Cells(_) => false,
            };
            if ask_for_cells && !sent_cell_request {
                tracing::debug!(bms = %link.name, "sending cell-info request 0x96");
                link.send(&command::request(CMD_CELL_INFO)).await?;
                sent_cell_request = true;
            }
        }
    }
}

fn describe_progress(stream: &FrameStream) -> String {
    match (stream.device_info.is_some(), stream.settings.is_some()) {
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
    use crate::transport::TransportError;

    #[tokio::test(start_paused = true)]
    async fn reads_the_simulated_bms() {
        let mut link = sim::connect(SimConfig {
            cells: 12,
            ..SimConfig::default()
        });
        let r = read_once(
            &mut link,
            VariantChoice::Auto,
            super::super::Dialogue::Ble,
            &BmsSoc,
            Duration::from_secs(10),
            Duration::from_secs(1),
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
            super::super::Dialogue::Ble,
            &BmsSoc,
            Duration::from_secs(3),
            Duration::from_secs(1),
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
            super::super::Dialogue::Ble,
            &BmsSoc,
            Duration::from_secs(3),
            Duration::from_secs(1),
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
