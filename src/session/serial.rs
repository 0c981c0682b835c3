//! The dialogue of the serial `4E 57` port (§3): jkmon asks with the read-all request, the BMS
//! answers with one frame that carries cells, device strings and settings. Nothing comes
//! unasked, so a BMS that stops answering is noticed by the requests it leaves unanswered.

use std::time::Duration;

use tokio::time::{timeout_at, Instant};

use super::read_error::ReadError;
use super::stream::{FrameStream, StreamEvent};
use crate::protocol::serial::request_read_all;
use crate::protocol::CellInfo;
use crate::transport::Link;

/// A BMS that leaves this many requests in a row unanswered is offline.
pub const MISSED_LIMIT: u32 = 3;

/// Sends one read-all request and waits up to `timeout` for the answer. `Ok(None)`: no complete
/// answer in time (a partial one is dropped, so the next answer starts clean).
pub async fn ask(
    link: &mut Link,
    stream: &mut FrameStream,
    timeout: Duration,
) -> Result<Option<CellInfo>, ReadError> {
    link.send(&request_read_all()).await?;
    let until = Instant::now() + timeout;
    loop {
        match timeout_at(until, link.recv()).await {
            Err(_) => {
                stream.discard_partial();
                return Ok(None);
            }
            Ok(None) => {
                return Err(ReadError::Disconnected {
                    name: link.name.clone(),
                    progress: "the port closed while waiting for an answer".into(),
                })
            }
            Ok(Some(chunk)) => {
                for event in stream.push(&chunk) {
                    if let StreamEvent::Cells(cells) = event {
                        return Ok(Some(*cells));
                    }
                }
            }
        }
    }
}

/// Asks until the BMS answers or `deadline` passes (the first reading of a connection).
pub async fn first_answer(
    link: &mut Link,
    stream: &mut FrameStream,
    response_timeout: Duration,
    deadline: Instant,
) -> Result<CellInfo, ReadError> {
    let started = Instant::now();
    let mut tries = 0u32;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::NoAnswer {
                name: link.name.clone(),
                secs: (Instant::now() - started).as_secs_f64().round() as u64,
                tries,
                rejected: stream.rejected,
            });
        }
        tries += 1;
        if let Some(cells) = ask(link, stream, response_timeout.min(left)).await? {
            return Ok(cells);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{AssemblerConfig, VariantChoice};
    use crate::transport::sim::{self, SimConfig};

    fn serial_stream() -> FrameStream {
        FrameStream::with_framing("t", VariantChoice::Auto, AssemblerConfig::serial())
    }

    #[tokio::test(start_paused = true)]
    async fn the_simulated_serial_bms_answers_with_cells_device_and_settings() {
        let mut link = sim::connect_serial(SimConfig::default());
        let mut stream = serial_stream();
        let cells = first_answer(
            &mut link,
            &mut stream,
            Duration::from_secs(1),
            Instant::now() + Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(cells.cell_count(), 16);
        assert_eq!(stream.device_info.as_ref().unwrap().model, "JK_B2A16S15P");
        assert_eq!(stream.settings.as_ref().unwrap().cell_ovp_mv, Some(3_650));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_port_is_asked_again_then_named_with_the_wiring_hint() {
        let (mut link, mut peer) = Link::pair("silent", 16);
        let asked = tokio::spawn(async move {
            let mut n = 0;
            while peer.commands.recv().await.is_some() {
                n += 1;
            }
            n
        });
        let err = first_answer(
            &mut link,
            &mut serial_stream(),
            Duration::from_secs(1),
            Instant::now() + Duration::from_secs(3),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("3 request(s)") && err.contains("TX"), "{err}");
        drop(link);
        assert_eq!(asked.await.unwrap(), 3);
    }
}
