//! The inverter's links, beside the BMS transports: the SmartESS Wi-Fi dongle's reverse
//! connection ([`dongle`]), and plain Modbus RTU on a serial adapter or Modbus TCP to an
//! RS485 gateway ([`modbus`]), for owners who wire the inverter's RS485 port. Each reads
//! register blocks; [`poll`] reads a model's blocks over any of them.
//!
//! Layer 2: uses `inverter` (the pure protocol).

pub mod dongle;
pub mod modbus;

use thiserror::Error;

use crate::inverter::registers::{self, Decoded, Model};
use dongle::{Dongle, DongleConfig, DongleError};
use modbus::{ModbusConfig, ModbusError, ModbusLink};

/// How jkmon reaches the inverter (`INVERTER_TRANSPORT`).
#[derive(Debug, Clone, PartialEq)]
pub enum LinkConfig {
    /// `dongle`: the SmartESS Wi-Fi dongle connects back to jkmon.
    Dongle(DongleConfig),
    /// `rtu` or `tcp`: Modbus on the inverter's RS485 port, directly or through a gateway.
    Modbus(ModbusConfig),
}

impl LinkConfig {
    /// Where the link goes, in words (before it is open: a dongle's port may still be 0).
    pub fn describe(&self) -> String {
        match self {
            LinkConfig::Dongle(d) => format!(
                "the Wi-Fi dongle at {} (listening on {}:{})",
                d.dongle.ip(),
                d.local_ip,
                d.listen_port
            ),
            LinkConfig::Modbus(m) => m.target.to_string(),
        }
    }
}

/// The inverter jkmon polls itself: the link and the model.
#[derive(Debug, Clone, PartialEq)]
pub struct InverterConfig {
    pub link: LinkConfig,
    pub model: &'static Model,
}

/// What went wrong on a link; each says what to check.
#[derive(Debug, Error)]
pub enum LinkError {
    #[error(transparent)]
    Dongle(#[from] DongleError),
    #[error(transparent)]
    Modbus(#[from] ModbusError),
}

impl LinkError {
    /// Nothing more can be read this poll (no connection at all, or an inverter that let a
    /// read time out and would let the next ones time out too), so its other blocks are not
    /// tried.
    pub fn ends_the_poll(&self) -> bool {
        match self {
            LinkError::Dongle(e) => matches!(
                e,
                DongleError::NoDialBack { .. }
                    | DongleError::Listen { .. }
                    | DongleError::Announce { .. }
                    | DongleError::Timeout { .. }
            ),
            LinkError::Modbus(e) => matches!(
                e,
                ModbusError::Open(_) | ModbusError::Connect { .. } | ModbusError::Timeout { .. }
            ),
        }
    }
}

/// An open link.
pub enum Link {
    Dongle(Dongle),
    Modbus(ModbusLink),
}

impl Link {
    /// Prepares the link: the dongle's listener is bound here (so a port in use is said at
    /// start); a Modbus link connects at its first read.
    pub async fn open(config: &LinkConfig) -> Result<Link, LinkError> {
        Ok(match config {
            LinkConfig::Dongle(d) => Link::Dongle(Dongle::bind(d.clone()).await?),
            LinkConfig::Modbus(m) => Link::Modbus(ModbusLink::new(m.clone())),
        })
    }

    /// `count` registers from `start`, checked; connects first when needed.
    pub async fn read(&mut self, start: u16, count: u16) -> Result<Vec<u16>, LinkError> {
        Ok(match self {
            Link::Dongle(d) => d.read(start, count).await?,
            Link::Modbus(m) => m.read(start, count).await?,
        })
    }

    /// Where the link goes, for the log and the views.
    pub fn describe(&self) -> String {
        match self {
            Link::Dongle(d) => format!(
                "the Wi-Fi dongle at {} (listening on {})",
                d.config().dongle.ip(),
                d.listen_addr()
            ),
            Link::Modbus(m) => m.config().target.to_string(),
        }
    }
}

/// Anything that reads register blocks: each link, and [`Link`] over them.
pub trait ReadRegisters {
    /// `count` registers from `start`, checked.
    fn read_registers(
        &mut self,
        start: u16,
        count: u16,
    ) -> impl std::future::Future<Output = Result<Vec<u16>, LinkError>> + Send;
}

impl ReadRegisters for Link {
    async fn read_registers(&mut self, start: u16, count: u16) -> Result<Vec<u16>, LinkError> {
        self.read(start, count).await
    }
}

impl ReadRegisters for Dongle {
    async fn read_registers(&mut self, start: u16, count: u16) -> Result<Vec<u16>, LinkError> {
        Ok(self.read(start, count).await?)
    }
}

impl ReadRegisters for ModbusLink {
    async fn read_registers(&mut self, start: u16, count: u16) -> Result<Vec<u16>, LinkError> {
        Ok(self.read(start, count).await?)
    }
}

/// Every block of `model`: the plausible values of those that were read (and the registers
/// that were not plausible), and the errors of those that failed (a failed block gives no
/// value, never a guess).
pub async fn poll(
    link: &mut impl ReadRegisters,
    model: &'static Model,
) -> (Decoded, Vec<LinkError>) {
    let mut read = Vec::new();
    let mut errors = Vec::new();
    for block in registers::blocks(model) {
        match link.read_registers(block.start, block.count).await {
            Ok(regs) => read.push((block, regs)),
            Err(e) => {
                let dead = e.ends_the_poll();
                errors.push(e);
                if dead {
                    break;
                }
            }
        }
    }
    (registers::decode(model, &read), errors)
}
