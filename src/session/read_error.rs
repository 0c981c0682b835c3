//! Why a one-off read (`jkmon read`, the first answer of a serial BMS) got no reading: shared
//! by the Bluetooth handshake ([`super::handshake`]) and the serial port ([`super::serial`]).

use thiserror::Error;

use crate::transport::TransportError;

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("no answer from {name} within {secs} s ({progress}); usual causes: the BMS is out of range or asleep, the JK phone app is connected (a JK BMS accepts one connection at a time: force-close the app), or the Bluetooth adapter is off")]
    Timeout {
        name: String,
        secs: u64,
        progress: String,
    },
    #[error("no answer from {name} to {tries} request(s) in {secs} s ({rejected} corrupt frame(s)); check the wiring (the adapter's TX to the BMS's RX, RX to TX, GND to GND), the speed (115200 baud), and on newer boards that the port's protocol is \"4G-GPS\" (000) in the JK app")]
    NoAnswer {
        name: String,
        secs: u64,
        tries: u32,
        rejected: u64,
    },
    #[error("{name} disconnected before a complete reading ({progress})")]
    Disconnected { name: String, progress: String },
    #[error(transparent)]
    Transport(#[from] TransportError),
}
