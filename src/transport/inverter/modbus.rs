//! Modbus RTU on a serial adapter wired to the inverter's RS485 port, or Modbus TCP to an
//! RS485-to-Ethernet gateway, through `tokio-modbus` (which checks the CRC, the transaction,
//! unit and function of every answer). The register maps are the dongle's.
//!
//! Like the dongle link: function 03, and 04 from the first "illegal function" on; a read that
//! times out or breaks the stream drops the connection (a late answer must not be taken for the
//! next read's), and the next read opens it again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::Slave;

use crate::inverter::modbus::{exception_name, Function, ILLEGAL_FUNCTION};
use crate::transport::serial::{self, PortConfig};

/// Where the Modbus inverter is.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `INVERTER_TRANSPORT=rtu`: `INVERTER_SERIAL_PORT` at `INVERTER_BAUD` (8N1).
    Rtu(PortConfig),
    /// `INVERTER_TRANSPORT=tcp`: the gateway at `INVERTER_IP`:`MODBUS_PORT`.
    Tcp(SocketAddr),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Rtu(p) => write!(f, "Modbus RTU on {} at {} baud", p.path.display(), p.baud),
            Target::Tcp(a) => write!(f, "Modbus TCP to {a}"),
        }
    }
}

/// The Modbus link's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusConfig {
    pub target: Target,
    /// The inverter's unit id (`INVERTER_UNIT`, 1).
    pub unit: u8,
    /// How long one read may take.
    pub read_timeout: Duration,
}

impl ModbusConfig {
    pub fn rtu(path: impl Into<PathBuf>, baud: u32) -> ModbusConfig {
        ModbusConfig {
            target: Target::Rtu(PortConfig {
                path: path.into(),
                baud,
            }),
            unit: 1,
            read_timeout: Duration::from_secs(2),
        }
    }

    pub fn tcp(addr: SocketAddr) -> ModbusConfig {
        ModbusConfig {
            target: Target::Tcp(addr),
            unit: 1,
            read_timeout: Duration::from_secs(5),
        }
    }
}

/// The Modbus link's failures, each with what to check.
#[derive(Debug, Error)]
pub enum ModbusError {
    #[error("the inverter's {0}")]
    Open(#[from] serial::SerialError),
    #[error("cannot connect to the Modbus TCP gateway at {addr}: {source}; check INVERTER_IP and MODBUS_PORT, and that the gateway is powered and on this network")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from unit {unit} to the read of {count} register(s) from {start} within {timeout_ms} ms on {target}: check the A/B wiring, INVERTER_BAUD and INVERTER_UNIT")]
    Timeout {
        target: String,
        unit: u8,
        start: u16,
        count: u16,
        timeout_ms: u64,
    },
    #[error("the inverter refused the read of {count} register(s) from {start}: exception {code:#04x} ({})", exception_name(*code))]
    Exception { start: u16, count: u16, code: u8 },
    #[error("the read of {count} register(s) from {start} failed: {message}")]
    Answer {
        start: u16,
        count: u16,
        message: String,
    },
}

/// A Modbus connection to the inverter, opened when needed.
pub struct ModbusLink {
    config: ModbusConfig,
    ctx: Option<Context>,
    function: Function,
}

impl ModbusLink {
    pub fn new(config: ModbusConfig) -> ModbusLink {
        ModbusLink {
            config,
            ctx: None,
            function: Function::Holding,
        }
    }

    pub fn config(&self) -> &ModbusConfig {
        &self.config
    }

    async fn connect(&mut self) -> Result<&mut Context, ModbusError> {
        if self.ctx.is_none() {
            let slave = Slave(self.config.unit);
            let ctx = match &self.config.target {
                Target::Rtu(port) => {
                    let stream = serial::open_named(
                        port,
                        ("INVERTER_SERIAL_PORT", "INVERTER_BAUD", "9600 for SMG-II"),
                    )?;
                    tokio_modbus::client::rtu::attach_slave(stream, slave)
                }
                Target::Tcp(addr) => {
                    let connect = tokio::net::TcpStream::connect(*addr);
                    let stream = tokio::time::timeout(self.config.read_timeout, connect)
                        .await
                        .unwrap_or_else(|_| {
                            Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "no answer",
                            ))
                        })
                        .map_err(|source| ModbusError::Connect {
                            addr: *addr,
                            source,
                        })?;
                    let _ = stream.set_nodelay(true);
                    tokio_modbus::client::tcp::attach_slave(stream, slave)
                }
            };
            tracing::info!("inverter: {} open", self.config.target);
            self.function = Function::Holding;
            self.ctx = Some(ctx);
        }
        Ok(self.ctx.as_mut().expect("just set"))
    }

    /// `count` registers from `start`, checked; opens the connection first when needed.
    pub async fn read(&mut self, start: u16, count: u16) -> Result<Vec<u16>, ModbusError> {
        match self.exchange(start, count).await {
            Err(ModbusError::Exception {
                code: ILLEGAL_FUNCTION,
                ..
            }) if self.function == Function::Holding => {
                tracing::info!("inverter: function 03 refused; reading input registers (04)");
                self.function = Function::Input;
                self.exchange(start, count).await
            }
            other => other,
        }
    }

    async fn exchange(&mut self, start: u16, count: u16) -> Result<Vec<u16>, ModbusError> {
        let function = self.function;
        let timeout = self.config.read_timeout;
        let ctx = self.connect().await?;
        let call = async {
            match function {
                Function::Holding => ctx.read_holding_registers(start, count).await,
                Function::Input => ctx.read_input_registers(start, count).await,
            }
        };
        let result = tokio::time::timeout(timeout, call).await;
        let failed = |message: String| ModbusError::Answer {
            start,
            count,
            message,
        };
        match result {
            Ok(Ok(Ok(regs))) if regs.len() == usize::from(count) => Ok(regs),
            Ok(Ok(Ok(regs))) => Err(failed(format!(
                "{} register(s) answered, {count} asked for",
                regs.len()
            ))),
            Ok(Ok(Err(code))) => Err(ModbusError::Exception {
                start,
                count,
                code: u8::from(code),
            }),
            Ok(Err(e)) => {
                self.ctx = None;
                Err(failed(e.to_string()))
            }
            Err(_) => {
                self.ctx = None;
                Err(ModbusError::Timeout {
                    target: self.config.target.to_string(),
                    unit: self.config.unit,
                    start,
                    count,
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
        }
    }
}
