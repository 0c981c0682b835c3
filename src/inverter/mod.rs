//! The Easun / ISolar SMG-II inverter's own protocol, pure like [`crate::protocol`]: bytes →
//! checked register blocks → named values → the `readings` row the Python monitor's poller
//! writes. No sockets here; a poller brings the bytes.
//!
//! - [`modbus`]: Modbus reads, CRC-16, and the SmartESS Wi-Fi dongle's Eybond wrapper, with every
//!   check an answer must pass;
//! - [`registers`]: the register map of each model as data, the blocks a poll reads, the values
//!   of their answers;
//! - [`payload`]: the working mode and the Python poller's `payload` JSON;
//! - [`poll`]: one poll and the poller's state, as the store and the views read them.
//!
//! Layer 1: pure; uses only the checksums of [`crate::protocol`] (the same CRC-16).

pub mod modbus;
pub mod payload;
pub mod poll;
pub mod registers;
