//! One battery's one switch, as commands for it arrive: the newest wish wins, a write in
//! flight finishes before the next is made, writes are [`WRITE_SPACING`] apart, and a wish the
//! BMS already confirmed in this burst is not written again. Pure: it takes the time as input
//! and says what to do; [`super::Controller`] does it.
//!
//! ```text
//!   ask ──► wanted ──(take, when the spacing allows)──► in flight ──(answer)──► idle / next
//!             ▲ a newer ask replaces it: the older callers are told "superseded"
//! ```

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::SetError;
use crate::store::switches::Source;

/// The least time between two writes to one switch. A BLE BMS takes a few hundred ms to apply
/// a write and send the settings frame that confirms it; an RS485 pack answers within a poll.
/// A looping automation that sends ten thousand commands makes two writes a second at most.
pub const WRITE_SPACING: Duration = Duration::from_millis(500);

/// At most this many callers wait for one value's outcome; an older one is told it was
/// superseded (by a newer, identical command) when more arrive.
pub const MAX_WAITING: usize = 16;

/// How often the commands that newer ones replaced are summed up in the log.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// What a caller asked, numbered in the order it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub seq: u64,
    pub on: bool,
    pub source: Source,
}

pub type Reply = oneshot::Sender<Result<(), SetError>>;

struct Waiter {
    seq: u64,
    on: bool,
    reply: Reply,
}

/// What the worker does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing is wanted: the worker stops.
    Idle,
    /// Wait until then (the spacing), then ask again.
    WaitUntil(Instant),
    /// The BMS confirmed this value in this burst already: answer its callers, write nothing.
    Already(Ask),
    /// Write this.
    Write(Ask),
}

#[derive(Default)]
pub struct Lane {
    seq: u64,
    wanted: Option<Ask>,
    in_flight: Option<Ask>,
    waiting: Vec<Waiter>,
    /// A worker is running for this lane.
    pub busy: bool,
    /// The value the last write of this burst confirmed, and when that write was made.
    confirmed: Option<bool>,
    last_write: Option<Instant>,
    /// Commands replaced by newer ones since the last summary, and when that was.
    superseded: u64,
    summary_at: Option<Instant>,
}

impl Lane {
    /// A new command: it is the newest wish. Callers of an older wish that is not in flight
    /// are answered `superseded(on)` (where `on` is the new wish), and so is the oldest of
    /// too many callers of the same value.
    pub fn ask(
        &mut self,
        on: bool,
        source: Source,
        reply: Reply,
        superseded: impl Fn(bool) -> SetError,
    ) -> Ask {
        self.seq += 1;
        let ask = Ask {
            seq: self.seq,
            on,
            source,
        };
        if self.wanted.replace(ask).is_some() {
            self.superseded += 1;
        }
        let in_flight = self.in_flight.map(|a| a.seq);
        let mut keep = Vec::with_capacity(self.waiting.len() + 1);
        let same = self
            .waiting
            .iter()
            .filter(|w| w.on == on && Some(w.seq) > in_flight)
            .count();
        let mut drop_same = same.saturating_sub(MAX_WAITING - 1);
        for w in self.waiting.drain(..) {
            let flying = in_flight.is_some_and(|f| w.seq <= f);
            if flying {
                keep.push(w);
            } else if w.on != on {
                let _ = w.reply.send(Err(superseded(on)));
            } else if drop_same > 0 {
                drop_same -= 1;
                let _ = w.reply.send(Err(superseded(on)));
            } else {
                keep.push(w);
            }
        }
        keep.push(Waiter {
            seq: ask.seq,
            on,
            reply,
        });
        self.waiting = keep;
        ask
    }

    /// What to do at `now`.
    pub fn next(&mut self, now: Instant) -> Next {
        let Some(ask) = self.wanted else {
            self.busy = false;
            self.confirmed = None;
            return Next::Idle;
        };
        if self.confirmed == Some(ask.on) {
            self.wanted = None;
            return Next::Already(ask);
        }
        if let Some(due) = self.last_write.map(|t| t + WRITE_SPACING) {
            if now < due {
                return Next::WaitUntil(due);
            }
        }
        self.wanted = None;
        self.in_flight = Some(ask);
        self.last_write = Some(now);
        Next::Write(ask)
    }

    /// The outcome of `ask` (written, or already so): its callers and every earlier caller of
    /// the same value get it.
    pub fn answer(&mut self, ask: Ask, result: &Result<(), SetError>) {
        if self.in_flight.is_some_and(|f| f.seq == ask.seq) {
            self.in_flight = None;
            self.confirmed = result.is_ok().then_some(ask.on);
        }
        let (done, keep): (Vec<Waiter>, Vec<Waiter>) = self
            .waiting
            .drain(..)
            .partition(|w| w.seq <= ask.seq && w.on == ask.on);
        self.waiting = keep;
        for w in done {
            let _ = w.reply.send(result.clone());
        }
    }

    /// The number of commands replaced by newer ones, once per [`SUMMARY_EVERY`] (or when
    /// the lane goes idle), for one line in the log.
    pub fn summary(&mut self, now: Instant, idle: bool) -> Option<u64> {
        let due = idle || self.summary_at.is_none_or(|t| now >= t + SUMMARY_EVERY);
        if self.superseded == 0 || !due {
            return None;
        }
        self.summary_at = Some(now);
        Some(std::mem::take(&mut self.superseded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superseded(on: bool) -> SetError {
        SetError::Superseded {
            battery: "B".into(),
            switch: crate::protocol::control::Switch::Charging,
            on,
        }
    }

    fn ask(lane: &mut Lane, on: bool) -> (Ask, oneshot::Receiver<Result<(), SetError>>) {
        let (tx, rx) = oneshot::channel();
        (lane.ask(on, Source::Mqtt, tx, superseded), rx)
    }

    #[test]
    fn the_last_command_wins_and_writes_are_spaced() {
        let t0 = Instant::now();
        let mut lane = Lane::default();
        let (on1, mut r1) = ask(&mut lane, true);
        assert_eq!(lane.next(t0), Next::Write(on1));
        // while ON is written: OFF, then ON again, then OFF
        let (_, mut r2) = ask(&mut lane, false);
        let (_, mut r3) = ask(&mut lane, true);
        assert!(matches!(
            r2.try_recv(),
            Ok(Err(SetError::Superseded { on: true, .. }))
        ));
        let (off, mut r4) = ask(&mut lane, false);
        assert!(matches!(
            r3.try_recv(),
            Ok(Err(SetError::Superseded { on: false, .. }))
        ));
        // the write in flight finishes; its caller hears the BMS
        lane.answer(on1, &Ok(()));
        assert_eq!(r1.try_recv(), Ok(Ok(())));
        // the newest (OFF) waits for the spacing, then is written
        let soon = t0 + Duration::from_millis(300);
        assert_eq!(lane.next(soon), Next::WaitUntil(t0 + WRITE_SPACING));
        assert_eq!(lane.next(t0 + WRITE_SPACING), Next::Write(off));
        lane.answer(off, &Ok(()));
        assert_eq!(r4.try_recv(), Ok(Ok(())));
        assert_eq!(lane.summary(t0 + WRITE_SPACING, false), Some(2));
        assert_eq!(lane.next(t0 + WRITE_SPACING * 2), Next::Idle);
        assert!(!lane.busy);
    }

    #[test]
    fn a_value_the_bms_just_confirmed_is_not_written_again() {
        let t0 = Instant::now();
        let mut lane = Lane::default();
        let (a, _r) = ask(&mut lane, true);
        assert_eq!(lane.next(t0), Next::Write(a));
        let (b, mut rb) = ask(&mut lane, true);
        lane.answer(a, &Ok(()));
        assert_eq!(lane.next(t0 + WRITE_SPACING), Next::Already(b));
        lane.answer(b, &Ok(()));
        assert_eq!(rb.try_recv(), Ok(Ok(())));
        // a failed write is no confirmation: the same value is written again
        let (c, _rc) = ask(&mut lane, false);
        assert_eq!(lane.next(t0 + WRITE_SPACING * 2), Next::Write(c));
        lane.answer(c, &Err(superseded(false)));
        let (d, _rd) = ask(&mut lane, false);
        assert_eq!(lane.next(t0 + WRITE_SPACING * 3), Next::Write(d));
    }

    #[test]
    fn a_flood_keeps_few_callers_and_makes_one_write_per_spacing() {
        let t0 = Instant::now();
        let mut lane = Lane::default();
        let mut receivers = Vec::new();
        let mut writes = 0;
        let mut flying: Option<Ask> = None;
        let mut last_written = None;
        // 10,000 alternating commands over 10 s: a write takes 50 ms
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_millis(i);
            receivers.push(ask(&mut lane, i % 2 == 0).1);
            if let Some(f) = flying.filter(|_| i % 50 == 49) {
                lane.answer(f, &Ok(()));
                flying = None;
            }
            if flying.is_none() {
                match lane.next(now) {
                    Next::Write(a) => {
                        writes += 1;
                        flying = Some(a);
                        last_written = Some(a.on);
                    }
                    Next::Already(a) => lane.answer(a, &Ok(())),
                    Next::WaitUntil(_) | Next::Idle => {}
                }
            }
            assert!(
                lane.waiting.len() <= MAX_WAITING + 1,
                "{}",
                lane.waiting.len()
            );
        }
        if let Some(f) = flying {
            lane.answer(f, &Ok(()));
        }
        // what is still wanted goes out after the flood
        for k in 1..5 {
            match lane.next(t0 + Duration::from_secs(10 + k)) {
                Next::Write(a) => {
                    writes += 1;
                    last_written = Some(a.on);
                    lane.answer(a, &Ok(()));
                }
                Next::Already(a) => lane.answer(a, &Ok(())),
                Next::WaitUntil(_) => {}
                Next::Idle => break,
            }
        }
        assert_eq!(
            last_written,
            Some(false),
            "the last command (OFF) is the BMS's state"
        );
        assert!(writes <= 22, "{writes} writes");
        // every caller got an answer
        for mut r in receivers {
            assert!(r.try_recv().is_ok());
        }
    }
}
