//! The simulated inverter on a wired link: Modbus RTU on a serial line (a pty in the tests, as
//! an RS485 adapter would carry it) and Modbus TCP, as an RS485-to-Ethernet gateway serves it.
//! The frames are built by [`crate::inverter::modbus`], the client that reads them is another
//! implementation (`tokio-modbus`), so each checks the other.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::inverter::{Reply, SimInverter};
use crate::inverter::modbus::{self, Function, Read};

/// Answers the RTU reads addressed to `unit` on `line` until it closes. Bytes that are not a
/// request (noise, another unit's traffic) are skipped one at a time, as a slave resynchronises.
pub async fn serve_rtu<L>(mut line: L, unit: u8, inverter: SimInverter)
where
    L: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    let mut chunk = [0u8; 64];
    loop {
        let n = match line.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 8 {
            let Some(read) = modbus::parse_rtu_request(&buf[..8]) else {
                buf.remove(0);
                continue;
            };
            buf.drain(..8);
            if read.unit != unit {
                continue;
            }
            match inverter.answer(&read) {
                Reply::Rtu(rtu) => {
                    if line.write_all(&rtu).await.is_err() {
                        return;
                    }
                }
                Reply::Silent => {}
                // a serial line cannot close: the inverter stays silent instead
                Reply::Close => {}
            }
        }
    }
}

/// Serves Modbus TCP on `listener`, one task per client.
pub async fn serve_tcp(listener: TcpListener, unit: u8, inverter: SimInverter) {
    while let Ok((stream, peer)) = listener.accept().await {
        inverter.record(super::inverter::Event::Connected(peer));
        tokio::spawn(tcp_client(stream, unit, inverter.clone()));
    }
}

/// One Modbus TCP client: MBAP header (transaction, protocol 0, length, unit), then the PDU.
async fn tcp_client(mut stream: tokio::net::TcpStream, unit: u8, inverter: SimInverter) {
    loop {
        let mut header = [0u8; 7];
        if stream.read_exact(&mut header).await.is_err() {
            return;
        }
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        if !(2..=253).contains(&len) {
            return;
        }
        let mut pdu = vec![0u8; len - 1];
        if stream.read_exact(&mut pdu).await.is_err() {
            return;
        }
        let function = match pdu.first() {
            Some(0x03) => Function::Holding,
            Some(0x04) => Function::Input,
            _ => continue,
        };
        if pdu.len() != 5 || header[6] != unit {
            continue;
        }
        let read = Read {
            unit,
            function,
            start: u16::from_be_bytes([pdu[1], pdu[2]]),
            count: u16::from_be_bytes([pdu[3], pdu[4]]),
        };
        let rtu = match inverter.answer(&read) {
            Reply::Rtu(rtu) => rtu,
            Reply::Silent => continue,
            Reply::Close => return,
        };
        // the RTU answer without its unit and CRC is the PDU
        let answer_pdu = &rtu[1..rtu.len() - 2];
        let mut out = Vec::with_capacity(7 + answer_pdu.len());
        out.extend_from_slice(&header[..4]);
        out.extend_from_slice(&((answer_pdu.len() + 1) as u16).to_be_bytes());
        out.push(unit);
        out.extend_from_slice(answer_pdu);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}
