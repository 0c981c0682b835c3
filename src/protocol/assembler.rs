//! Turns whatever chunks a transport delivers into whole, checked frames (§1.5, §4.4).
//!
//! Notification boundaries are not frame boundaries: a 300-byte frame arrives as 15 × 20 bytes,
//! 128 + 22 + 128 + 22, 150 + 150 or irregular pieces, with `AT\r\n` noise and the 20-byte
//! `AA 55 90 EB C8 …` ack before, between or glued to frames. The assembler:
//!
//! 1. appends each chunk to a bounded buffer;
//! 2. looks for a known start (`55 AA EB 90`, `AA 55 90 EB`, `AT\r\n`, and where enabled `4E 57`
//!    and the RS485 `[addr] 10 16`), counting everything before it as junk;
//! 3. when a whole frame is there, checks it (checksum and type byte) and yields it; a frame
//!    that fails is yielded as [`Item::Rejected`] with the reason, and the search resumes just
//!    after its header, so one bad frame never hides the next good one;
//! 4. "not enough bytes yet" is not an error: [`Assembler::poll`] returns `None` and waits.
//!
//! Call [`Assembler::reset`] on every disconnect and [`Assembler::finish`] at the end of a finite
//! input (a hex dump), which turns a frame still waiting for bytes into a `Truncated` rejection.

use super::command::{self, Command, COMMAND_HEADER, COMMAND_LEN};
use super::control;
use super::rs485::{self, Rs485Exchange, REQUEST_LEN, TAIL_LEN};
use super::serial;
use super::{check_frame, DecodeError, FrameType, FRAME_HEADER, FRAME_LEN};

/// The BLE module's keep-alive text, `AT\r\n` (§1.7).
pub const AT_NOISE: [u8; 4] = [0x41, 0x54, 0x0D, 0x0A];
/// Default bound of the buffer: far above the longest frame that can be waited for
/// (308 bytes on RS485, 1024 for a `4E 57` frame), far below anything that hurts a Pi Zero.
pub const DEFAULT_MAX_BUFFER: usize = 4096;

/// Which kinds of framing to recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerConfig {
    /// `55 AA EB 90` frames, `AA 55 90 EB` commands / acks, `AT\r\n`.
    pub ble: bool,
    /// RS485 Modbus requests and tails; a frame followed by a valid tail carries its address.
    pub rs485: bool,
    /// With `rs485`: hold a complete frame until its 8-byte tail is there (or [`Assembler::finish`]).
    pub wait_for_rs485_tail: bool,
    /// `4E 57` frames.
    pub serial: bool,
    pub max_buffer: usize,
}

impl AssemblerConfig {
    /// A BLE notification stream.
    pub fn ble() -> Self {
        AssemblerConfig {
            ble: true,
            rs485: false,
            wait_for_rs485_tail: false,
            serial: false,
            max_buffer: DEFAULT_MAX_BUFFER,
        }
    }
    /// A JK-PB RS485 bus.
    pub fn rs485() -> Self {
        AssemblerConfig {
            ble: true,
            rs485: true,
            wait_for_rs485_tail: true,
            serial: false,
            max_buffer: DEFAULT_MAX_BUFFER,
        }
    }
    /// The serial `4E 57` port.
    pub fn serial() -> Self {
        AssemblerConfig {
            ble: false,
            rs485: false,
            wait_for_rs485_tail: false,
            serial: true,
            max_buffer: DEFAULT_MAX_BUFFER,
        }
    }
    /// Everything: for hex dumps of unknown origin (`jkmon decode`).
    pub fn any() -> Self {
        AssemblerConfig {
            ble: true,
            rs485: true,
            wait_for_rs485_tail: true,
            serial: true,
            max_buffer: DEFAULT_MAX_BUFFER,
        }
    }
}

/// A checked 300-byte frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub bytes: [u8; FRAME_LEN],
    pub kind: FrameType,
    /// Set when the frame came with an RS485 tail (the address of the pack that sent it).
    pub rs485_address: Option<u8>,
}

/// What the assembler found. `offset` is the position in the stream (bytes since the last reset)
/// where the item starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Frame {
        frame: Box<RawFrame>,
        offset: u64,
    },
    SerialFrame {
        bytes: Vec<u8>,
        offset: u64,
    },
    Command {
        command: Command,
        offset: u64,
    },
    Rs485Request {
        exchange: Rs485Exchange,
        offset: u64,
    },
    /// An RS485 response tail that did not follow a frame.
    Rs485Tail {
        exchange: Rs485Exchange,
        offset: u64,
    },
    /// A switch write on the RS485 network (`on` set), or a pack's answer to one.
    Rs485Switch {
        write: control::Rs485SwitchWrite,
        offset: u64,
    },
    Rejected {
        error: DecodeError,
        offset: u64,
    },
}

/// Counters for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AssemblerStats {
    pub frames: u64,
    pub rejected: u64,
    /// Bytes skipped because they started no known frame.
    pub junk_bytes: u64,
    pub at_noise: u64,
    pub commands: u64,
    /// Bytes dropped because the buffer bound was hit.
    pub overflow_bytes: u64,
}

pub struct Assembler {
    config: AssemblerConfig,
    buf: Vec<u8>,
    /// Start of the unread part of `buf`; compacted lazily so feeding is cheap.
    start: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    eof: bool,
    stats: AssemblerStats,
}

enum Step {
    /// Wait for more bytes.
    Need,
    /// Skip this many bytes that belong to no frame.
    Junk(usize),
    /// Skip an `AT\r\n`.
    Noise,
    /// Yield an item that spans this many bytes.
    Emit(Item, usize),
}

impl Assembler {
    pub fn new(config: AssemblerConfig) -> Self {
        Assembler {
            config,
            buf: Vec::with_capacity(2 * FRAME_LEN),
            start: 0,
            offset: 0,
            eof: false,
            stats: AssemblerStats::default(),
        }
    }

    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// Bytes held while waiting for the rest of a frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Forget everything buffered (call on every disconnect: half a frame from the last
    /// connection must never be glued to the next one).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.offset = 0;
        self.eof = false;
    }

    /// Adds a chunk. Keeps at most `max_buffer` unread bytes; older ones are dropped and
    /// counted in `overflow_bytes` (only a caller that never polls gets there).
    pub fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 && (self.start >= FRAME_LEN || self.start * 2 >= self.buf.len()) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
        let unread = self.buf.len() - self.start;
        if unread > self.config.max_buffer {
            let drop = unread - self.config.max_buffer;
            self.advance(drop);
            self.stats.overflow_bytes += drop as u64;
        }
    }

    /// Marks the end of a finite input: what is still waiting is reported, not kept.
    pub fn finish(&mut self) {
        self.eof = true;
    }

    fn advance(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// The next frame, command or rejection; `None` when more bytes are needed.
    pub fn poll(&mut self) -> Option<Item> {
        loop {
            if self.start == self.buf.len() {
                return None;
            }
            match self.step() {
                Step::Need if self.eof => {
                    // Nothing more will come: what is left is a truncated frame or junk.
                    let rest = &self.buf[self.start..];
                    let n = rest.len();
                    let offset = self.offset;
                    let truncated = if rest.starts_with(&FRAME_HEADER) {
                        Some(("55 AA EB 90 frame", FRAME_LEN))
                    } else if self.config.serial && rest.starts_with(&serial::STX) {
                        Some((
                            "4E 57 frame",
                            serial::announced_len(rest).unwrap_or(serial::MIN_FRAME_LEN),
                        ))
                    } else if self.config.ble && rest.starts_with(&COMMAND_HEADER) {
                        Some(("AA 55 90 EB command", COMMAND_LEN))
                    } else {
                        None
                    };
                    self.advance(n);
                    match truncated {
                        Some((what, expected)) => {
                            self.stats.rejected += 1;
                            return Some(Item::Rejected {
                                error: DecodeError::Truncated {
                                    what,
                                    got: n,
                                    expected,
                                },
                                offset,
                            });
                        }
                        None => self.stats.junk_bytes += n as u64,
                    }
                }
                Step::Need => return None,
                Step::Junk(n) => {
                    self.stats.junk_bytes += n as u64;
                    self.advance(n);
                }
                Step::Noise => {
                    self.stats.at_noise += 1;
                    self.advance(AT_NOISE.len());
                }
                Step::Emit(item, n) => {
                    match &item {
                        Item::Rejected { .. } => self.stats.rejected += 1,
                        Item::Command { .. } => self.stats.commands += 1,
                        _ => self.stats.frames += 1,
                    }
                    self.advance(n);
                    return Some(item);
                }
            }
        }
    }

    fn step(&self) -> Step {
        let b = &self.buf[self.start..];
        let offset = self.offset;
        let c = &self.config;
        if c.ble || c.rs485 {
            if let Some(step) = prefixed(b, &FRAME_HEADER, || self.frame(b, offset)) {
                return step;
            }
        }
        if c.ble {
            if let Some(step) = prefixed(b, &COMMAND_HEADER, || command_step(b, offset)) {
                return step;
            }
            if let Some(step) = prefixed(b, &AT_NOISE, || Step::Noise) {
                return step;
            }
        }
        if c.serial {
            if let Some(step) = prefixed(b, &serial::STX, || serial_step(b, offset)) {
                return step;
            }
        }
        if c.rs485 {
            if let Some(step) = rs485_step(b, offset) {
                return step;
            }
        }
        // Junk: skip to the next byte that could start something we know.
        let next = b[1..]
            .iter()
            .position(|&x| self.could_start(x))
            .map_or(b.len(), |p| p + 1);
        Step::Junk(next)
    }

    fn could_start(&self, x: u8) -> bool {
        let c = &self.config;
        ((c.ble || c.rs485) && x == FRAME_HEADER[0])
            || (c.ble && (x == COMMAND_HEADER[0] || x == AT_NOISE[0]))
            || (c.serial && x == serial::STX[0])
            || (c.rs485 && x <= rs485::MAX_ADDRESS)
    }

    fn frame(&self, b: &[u8], offset: u64) -> Step {
        if b.len() < FRAME_LEN {
            return Step::Need;
        }
        match check_frame(&b[..FRAME_LEN]) {
            Ok(kind) => {
                let mut rs485_address = None;
                let mut consumed = FRAME_LEN;
                if self.config.rs485 {
                    // the tail may come after one padding 0x00, as real buses show
                    let rest = &b[FRAME_LEN..];
                    let pad = usize::from(
                        rest.len() >= 2 && rest[0] == 0x00 && rest[1] != rs485::FC_WRITE_MULTIPLE,
                    );
                    let after = &rest[pad..];
                    if after.len() >= TAIL_LEN {
                        if let Ok(ex) = rs485::parse_tail(&after[..TAIL_LEN]) {
                            rs485_address = Some(ex.address);
                            consumed += pad + TAIL_LEN;
                        }
                    } else if self.config.wait_for_rs485_tail
                        && !self.eof
                        && (could_be_tail_prefix(rest) || (pad == 1 && could_be_tail_prefix(after)))
                    {
                        return Step::Need;
                    }
                }
                let mut bytes = [0u8; FRAME_LEN];
                bytes.copy_from_slice(&b[..FRAME_LEN]);
                Step::Emit(
                    Item::Frame {
                        frame: Box::new(RawFrame {
                            bytes,
                            kind,
                            rs485_address,
                        }),
                        offset,
                    },
                    consumed,
                )
            }
            Err(error) => {
                // A header inside the 300 bytes means this frame was cut short and another one
                // began: say so, and resume at that header.
                if let Some(p) = find(&b[4..FRAME_LEN], &FRAME_HEADER).map(|p| p + 4) {
                    if matches!(error, DecodeError::BadChecksum { .. }) {
                        return Step::Emit(
                            Item::Rejected {
                                error: DecodeError::Truncated {
                                    what: "55 AA EB 90 frame",
                                    got: p,
                                    expected: FRAME_LEN,
                                },
                                offset,
                            },
                            p,
                        );
                    }
                }
                Step::Emit(Item::Rejected { error, offset }, FRAME_HEADER.len())
            }
        }
    }
}

/// `Some(Need)` when `b` is a proper prefix of `pattern`, `Some(handler())` when `b` starts with
/// it, `None` otherwise.
fn prefixed(b: &[u8], pattern: &[u8], handler: impl FnOnce() -> Step) -> Option<Step> {
    if b.len() < pattern.len() {
        pattern.starts_with(b).then_some(Step::Need)
    } else if b.starts_with(pattern) {
        Some(handler())
    } else {
        None
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn could_be_tail_prefix(b: &[u8]) -> bool {
    match b.len() {
        0 => true,
        1 => b[0] <= rs485::MAX_ADDRESS,
        2 => b[0] <= rs485::MAX_ADDRESS && b[1] == rs485::FC_WRITE_MULTIPLE,
        _ => b[0] <= rs485::MAX_ADDRESS && b[1] == rs485::FC_WRITE_MULTIPLE && b[2] == 0x16,
    }
}

fn command_step(b: &[u8], offset: u64) -> Step {
    if b.len() < COMMAND_LEN {
        return Step::Need;
    }
    match command::parse(&b[..COMMAND_LEN]) {
        Ok(command) => Step::Emit(Item::Command { command, offset }, COMMAND_LEN),
        Err(error) => Step::Emit(Item::Rejected { error, offset }, COMMAND_HEADER.len()),
    }
}

fn serial_step(b: &[u8], offset: u64) -> Step {
    let Some(total) = serial::announced_len(b) else {
        return Step::Need;
    };
    if (serial::MIN_FRAME_LEN..=serial::MAX_FRAME_LEN).contains(&total) && b.len() < total {
        return Step::Need;
    }
    match serial::check_envelope(b) {
        Ok(total) => Step::Emit(
            Item::SerialFrame {
                bytes: b[..total].to_vec(),
                offset,
            },
            total,
        ),
        Err(error) => Step::Emit(Item::Rejected { error, offset }, serial::STX.len()),
    }
}

/// A switch write (13 bytes) or its answer (8 bytes): `[address] 10 10 [70|74|78] 00 02 …`.
fn rs485_switch_step(b: &[u8], offset: u64) -> Option<Step> {
    if !control::could_be_rs485_write(&b[..b.len().min(4)]) {
        return None;
    }
    if b.len() < control::RS485_WRITE_ANSWER_LEN {
        return Some(Step::Need);
    }
    let emit = |write, len| Step::Emit(Item::Rs485Switch { write, offset }, len);
    if b.len() >= control::RS485_WRITE_LEN {
        if let Ok(write) = control::parse_rs485_write(&b[..control::RS485_WRITE_LEN]) {
            return Some(emit(write, control::RS485_WRITE_LEN));
        }
    } else if b[6] == 0x04 && control::parse_rs485_write_answer(&b[..8]).is_err() {
        // byte count 04: could still become a write
        return Some(Step::Need);
    }
    control::parse_rs485_write_answer(&b[..control::RS485_WRITE_ANSWER_LEN])
        .ok()
        .map(|write| emit(write, control::RS485_WRITE_ANSWER_LEN))
}

fn rs485_step(b: &[u8], offset: u64) -> Option<Step> {
    if let Some(step) = rs485_switch_step(b, offset) {
        return Some(step);
    }
    if !could_be_tail_prefix(&b[..b.len().min(3)]) {
        return None;
    }
    if b.len() < TAIL_LEN {
        return Some(Step::Need);
    }
    if b.len() >= REQUEST_LEN {
        if let Ok(exchange) = rs485::parse_request(&b[..REQUEST_LEN]) {
            return Some(Step::Emit(
                Item::Rs485Request { exchange, offset },
                REQUEST_LEN,
            ));
        }
    } else if b[6] == 0x02 && b[4..6] == [0x00, 0x01] {
        // could still become a request (byte count 02): wait for it
        if rs485::parse_tail(&b[..TAIL_LEN]).is_err() {
            return Some(Step::Need);
        }
    }
    rs485::parse_tail(&b[..TAIL_LEN])
        .ok()
        .map(|exchange| Step::Emit(Item::Rs485Tail { exchange, offset }, TAIL_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{checksum::sum8, seal_frame};

    fn frame(counter: u8) -> [u8; FRAME_LEN] {
        let mut f = [0u8; FRAME_LEN];
        for (i, b) in f.iter_mut().enumerate().skip(6) {
            *b = (i as u8).wrapping_mul(7);
        }
        seal_frame(&mut f, FrameType::CellInfo, counter);
        f
    }

    fn drain(a: &mut Assembler) -> Vec<Item> {
        std::iter::from_fn(|| a.poll()).collect()
    }

    fn frames(items: &[Item]) -> Vec<u8> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Frame { frame, .. } => Some(frame.bytes[5]),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn twenty_byte_notifications_make_one_frame() {
        let f = frame(1);
        let mut a = Assembler::new(AssemblerConfig::ble());
        for chunk in f.chunks(20) {
            assert!(a.poll().is_none(), "no frame before the last chunk");
            a.push(chunk);
        }
        let items = drain(&mut a);
        assert_eq!(frames(&items), vec![1]);
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn noise_and_ack_glued_to_frames_are_discarded() {
        let mut ack = [0u8; 20];
        ack[..7].copy_from_slice(&[0xAA, 0x55, 0x90, 0xEB, 0xC8, 0x01, 0x01]);
        ack[19] = sum8(&ack[..19]);
        let mut stream = Vec::new();
        stream.extend(AT_NOISE);
        stream.extend(frame(1));
        stream.extend(ack);
        stream.extend(AT_NOISE);
        stream.extend(b"\x30\xF8\x30\xF8\r\n"); // the v19 junk of esphome #852
        stream.extend(frame(2));
        let mut a = Assembler::new(AssemblerConfig::ble());
        let mut items = Vec::new();
        for chunk in stream.chunks(7) {
            a.push(chunk);
            items.extend(drain(&mut a));
        }
        assert_eq!(frames(&items), vec![1, 2]);
        assert_eq!(a.stats().at_noise, 2);
        assert_eq!(a.stats().commands, 1);
        assert_eq!(a.stats().junk_bytes, 6);
        assert_eq!(a.stats().rejected, 0);
    }

    #[test]
    fn a_bad_frame_is_reported_and_the_next_one_still_arrives() {
        let mut bad = frame(1);
        bad[100] ^= 0x40;
        let mut stream = bad.to_vec();
        stream.extend(frame(2));
        let mut a = Assembler::new(AssemblerConfig::ble());
        a.push(&stream);
        let items = drain(&mut a);
        assert!(matches!(
            items[0],
            Item::Rejected {
                error: DecodeError::BadChecksum { at: 299, .. },
                offset: 0
            }
        ));
        assert_eq!(frames(&items), vec![2]);
    }

    #[test]
    fn a_frame_cut_short_by_the_next_header_is_truncated() {
        let mut stream = frame(1)[..150].to_vec();
        stream.extend(frame(2));
        let mut a = Assembler::new(AssemblerConfig::ble());
        a.push(&stream);
        let items = drain(&mut a);
        assert_eq!(
            items[0],
            Item::Rejected {
                error: DecodeError::Truncated {
                    what: "55 AA EB 90 frame",
                    got: 150,
                    expected: 300
                },
                offset: 0
            }
        );
        assert_eq!(frames(&items), vec![2]);
    }

    #[test]
    fn finish_reports_a_truncated_tail_and_reset_forgets_it() {
        let mut a = Assembler::new(AssemblerConfig::ble());
        a.push(&frame(1)[..298]);
        assert!(a.poll().is_none());
        a.finish();
        assert!(matches!(
            a.poll(),
            Some(Item::Rejected {
                error: DecodeError::Truncated { got: 298, .. },
                ..
            })
        ));
        a.reset();
        a.push(&frame(1)[..100]);
        a.reset();
        a.push(&frame(3));
        assert_eq!(frames(&drain(&mut a)), vec![3]);
    }

    #[test]
    fn a_header_split_across_chunks_is_found() {
        let f = frame(4);
        let mut a = Assembler::new(AssemblerConfig::ble());
        a.push(&[0x00, 0x12, 0x55]);
        assert!(a.poll().is_none());
        a.push(&[0xAA]);
        a.push(&f[2..]);
        assert_eq!(frames(&drain(&mut a)), vec![4]);
        assert_eq!(a.stats().junk_bytes, 2);
    }

    #[test]
    fn the_buffer_stays_bounded() {
        let mut a = Assembler::new(AssemblerConfig {
            max_buffer: 512,
            ..AssemblerConfig::ble()
        });
        for _ in 0..100 {
            a.push(&[0x55; 100]); // never a header: all junk, and never polled
        }
        assert!(a.pending() <= 512);
        assert!(a.stats().overflow_bytes > 0);
    }

    /// The frame of `address`, its tail, with a padding 0x00 before or after the tail, then
    /// the master's next request.
    fn padded_exchange(address: u8, pad_before_tail: bool) -> Vec<u8> {
        let mut stream = rs485::request(address, rs485::Rs485Register::CellInfo).to_vec();
        stream.extend(frame(5));
        let tail = rs485::tail(address, rs485::Rs485Register::CellInfo);
        if pad_before_tail {
            stream.push(0x00);
            stream.extend(tail);
        } else {
            stream.extend(tail);
            stream.push(0x00);
        }
        stream.extend(rs485::request(address + 1, rs485::Rs485Register::CellInfo));
        stream
    }

    #[test]
    fn a_padding_byte_on_the_bus_does_not_cost_the_frame_its_address() {
        for pad_before_tail in [true, false] {
            for chunk_len in [1, 7, 64, 1_000] {
                let stream = padded_exchange(3, pad_before_tail);
                let mut a = Assembler::new(AssemblerConfig::rs485());
                let mut items = Vec::new();
                for chunk in stream.chunks(chunk_len) {
                    a.push(chunk);
                    items.extend(drain(&mut a));
                }
                let frames: Vec<Option<u8>> = items
                    .iter()
                    .filter_map(|i| match i {
                        Item::Frame { frame, .. } => Some(frame.rs485_address),
                        _ => None,
                    })
                    .collect();
                assert_eq!(
                    frames,
                    [Some(3)],
                    "pad before tail {pad_before_tail}, chunks {chunk_len}: {items:?}"
                );
                let requests = items
                    .iter()
                    .filter(|i| matches!(i, Item::Rs485Request { .. }))
                    .count();
                assert_eq!(requests, 2, "{items:?}");
            }
        }
        // a tail of the master pack (address 0) right after the frame is no padding
        let mut stream = frame(5).to_vec();
        stream.extend(rs485::tail(0, rs485::Rs485Register::CellInfo));
        let mut a = Assembler::new(AssemblerConfig::rs485());
        a.push(&stream);
        match drain(&mut a).first() {
            Some(Item::Frame { frame, .. }) => assert_eq!(frame.rs485_address, Some(0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rs485_frames_carry_the_address_of_their_tail() {
        let mut stream = rs485::request(2, rs485::Rs485Register::CellInfo).to_vec();
        stream.extend(frame(5));
        stream.extend([0x02, 0x10, 0x16, 0x20, 0x00, 0x01]);
        let crc = crate::protocol::checksum::crc16_modbus(&stream[stream.len() - 6..]);
        stream.extend(crc.to_le_bytes());
        let mut a = Assembler::new(AssemblerConfig::rs485());
        let mut items = Vec::new();
        for chunk in stream.chunks(64) {
            a.push(chunk);
            items.extend(drain(&mut a));
        }
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(matches!(
            items[0],
            Item::Rs485Request {
                exchange: Rs485Exchange {
                    address: 2,
                    register: 0x1620
                },
                ..
            }
        ));
        match &items[1] {
            Item::Frame { frame, .. } => assert_eq!(frame.rs485_address, Some(2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rs485_switch_writes_and_their_echoes_are_told_apart_in_any_chunking() {
        use crate::protocol::control::{self, Setting, Switch};
        let on: Setting = "balancer=on".parse().unwrap();
        let mut stream = control::rs485_write(2, on).unwrap();
        stream.extend(control::rs485_write_answer(2, Switch::Balancer).unwrap());
        stream.extend(rs485::request(2, rs485::Rs485Register::Settings));
        for size in [1, 3, 8, 13, 64] {
            let mut a = Assembler::new(AssemblerConfig::rs485());
            let mut items = Vec::new();
            for chunk in stream.chunks(size) {
                a.push(chunk);
                items.extend(drain(&mut a));
            }
            let writes: Vec<_> = items
                .iter()
                .filter_map(|i| match i {
                    Item::Rs485Switch { write, .. } => {
                        Some((write.address, write.switch, write.on))
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(
                writes,
                [
                    (2, Switch::Balancer, Some(true)),
                    (2, Switch::Balancer, None)
                ],
                "chunks of {size}: {items:?}"
            );
            assert!(matches!(items[2], Item::Rs485Request { .. }), "{items:?}");
            assert_eq!(items.len(), 3, "{items:?}");
        }
    }
}
