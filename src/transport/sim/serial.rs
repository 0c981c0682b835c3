//! The simulated BMS on its GPS/UART port (§3): it answers every `4E 57` read-all request with
//! one response frame built from the same battery model as the BLE role, delivered in a few
//! pieces as a UART adapter hands them over. Anything else on the line is ignored, as a real
//! BMS does.

use tokio::time::Instant;

use super::model::{Rng, SimBattery};
use super::{device_info, settings, SimConfig};
use crate::protocol::serial::{encode_response, CMD_READ_ALL};
use crate::protocol::{Assembler, AssemblerConfig, Item};
use crate::transport::{Link, Peer};

/// A device-info record as the serial port reports it (the model string is where JK keeps it).
fn serial_device(config: &SimConfig) -> crate::protocol::DeviceInfo {
    crate::protocol::DeviceInfo {
        model: "JK_B2A16S15P".into(),
        software_version: "11.XW_S11.261".into(),
        serial_number: "SIM00001".into(),
        manufacturing_date: "2601".into(),
        ..device_info(config)
    }
}

/// Connects to a new simulated BMS on a serial line (in-process, for tests and `jkmon simulate`).
pub fn connect(config: SimConfig) -> Link {
    let (link, peer) = Link::pair("simulated serial BMS", 64);
    tokio::spawn(serve(config, peer));
    link
}

/// Answers read-all requests arriving on `peer` until jkmon hangs up. With
/// [`SimConfig::corrupt_every`] = n, every n-th answer has one byte flipped and junk before it.
pub async fn serve(config: SimConfig, mut peer: Peer) {
    let mut rng = Rng::new(config.seed);
    let mut battery = SimBattery::new(&config, &mut rng);
    let device = serial_device(&config);
    let settings = settings(&config, &battery.switches);
    let started = Instant::now();
    let mut assembler = Assembler::new(AssemblerConfig::serial());
    let mut answered: u32 = 0;
    while let Some(bytes) = peer.commands.recv().await {
        assembler.push(&bytes);
        while let Some(item) = assembler.poll() {
            let Item::SerialFrame { bytes, .. } = item else {
                continue;
            };
            // a request: transport type 0x00, read all (0x06) or read register 0x00 (0x03)
            if bytes[10] != 0x00 || !(bytes[8] == CMD_READ_ALL || bytes[8] == 0x03) {
                continue;
            }
            battery.step(started.elapsed().as_secs_f64(), &mut rng);
            answered = answered.wrapping_add(1);
            let mut cells = battery.cell_info(answered as u8);
            cells.uptime_s = Some(battery.uptime_s());
            let mut frame = encode_response(&cells, &device, &settings);
            if config.corrupt_every > 0 && answered.is_multiple_of(config.corrupt_every) {
                let at = 20 + rng.below(frame.len() as u64 - 30) as usize;
                frame[at] ^= 0x5A;
                frame.splice(0..0, [0x4E, 0x00, 0xFF, 0x13]);
            }
            let cut = 1 + rng.below(frame.len() as u64 - 1) as usize;
            for piece in [&frame[..cut], &frame[cut..]] {
                if peer.chunks.send(piece.to_vec()).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::serial::{decode_response, request_read_all};

    #[tokio::test]
    async fn every_request_gets_one_checked_answer_and_corruption_is_on_schedule() {
        let mut link = connect(SimConfig {
            corrupt_every: 2,
            ..SimConfig::default()
        });
        let mut outcomes = Vec::new();
        for _ in 0..4 {
            link.send(&request_read_all()).await.unwrap();
            let mut got = Vec::new();
            while got.len() < 2 {
                got.push(link.recv().await.unwrap());
            }
            let bytes = got.concat();
            let at = bytes.windows(2).position(|w| w == [0x4E, 0x57]).unwrap();
            outcomes.push(decode_response(&bytes[at..]).is_ok());
        }
        assert_eq!(outcomes, [true, false, true, false]);
    }
}
