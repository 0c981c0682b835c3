//! The points waiting for InfluxDB: a bounded queue, oldest first. The service adds to it and
//! never waits; the sink takes a batch from the front, and removes it only once InfluxDB took
//! it, so a batch that failed goes again, first, and nothing is written twice by jkmon.
//!
//! Full (InfluxDB away for longer than the buffer holds), the oldest waiting point is dropped
//! to make room: the newest are what a dashboard shows first. A batch on its way is never
//! dropped. Each drop is counted.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct Queue {
    waiting: VecDeque<String>,
    /// Points taken by the batch on its way (still counted against the capacity).
    in_flight: usize,
    capacity: usize,
    /// Points dropped since the last [`Queue::take_dropped`].
    dropped: u64,
}

impl Queue {
    /// A queue of at most `capacity` points (at least 1).
    pub fn new(capacity: usize) -> Queue {
        Queue {
            waiting: VecDeque::new(),
            in_flight: 0,
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    /// Adds `lines` at the back, dropping the oldest waiting points when full. Returns how many
    /// were dropped.
    pub fn push(&mut self, lines: impl IntoIterator<Item = String>) -> u64 {
        let mut dropped = 0;
        for line in lines {
            if self.waiting.len() + self.in_flight >= self.capacity {
                // the oldest waiting point, or this one when the batch on its way fills it all
                if self.waiting.pop_front().is_none() {
                    dropped += 1;
                    continue;
                }
                dropped += 1;
            }
            self.waiting.push_back(line);
        }
        self.dropped += dropped;
        dropped
    }

    /// The next batch: up to `max` of the oldest points, joined by line breaks, or `None`
    /// when nothing waits or a batch is already on its way.
    pub fn take(&mut self, max: usize) -> Option<(String, usize)> {
        if self.in_flight > 0 || self.waiting.is_empty() {
            return None;
        }
        let n = self.waiting.len().min(max.max(1));
        let mut body = String::new();
        for line in self.waiting.drain(..n) {
            body.push_str(&line);
            body.push('\n');
        }
        self.in_flight = n;
        Some((body, n))
    }

    /// The batch on its way was written (or refused for good): its points leave.
    pub fn done(&mut self) {
        self.in_flight = 0;
    }

    /// The batch on its way failed: its points go back to the front, to go first again. Room
    /// is made for them at the back's expense (the newest), as the order must hold.
    pub fn failed(&mut self, body: String) {
        let lines: Vec<String> = body.lines().map(str::to_string).collect();
        self.in_flight = 0;
        for line in lines.into_iter().rev() {
            self.waiting.push_front(line);
        }
        while self.waiting.len() > self.capacity {
            // cannot happen while only `push` adds; kept so the bound holds whatever comes
            self.waiting.pop_back();
            self.dropped += 1;
        }
    }

    /// Points waiting, the batch on its way included.
    pub fn len(&self) -> usize {
        self.waiting.len() + self.in_flight
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The drops since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("m v={i}i {i}")).collect()
    }

    #[test]
    fn batches_leave_in_order_and_only_once_written() {
        let mut q = Queue::new(10);
        q.push(points(0..5));
        let (body, n) = q.take(3).unwrap();
        assert_eq!((body.as_str(), n), ("m v=0i 0\nm v=1i 1\nm v=2i 2\n", 3));
        assert_eq!(q.take(3), None, "one batch at a time");
        q.failed(body);
        let (again, _) = q.take(3).unwrap();
        assert!(
            again.starts_with("m v=0i 0\n"),
            "a failed batch goes first again"
        );
        q.done();
        let (rest, n) = q.take(10).unwrap();
        assert_eq!((rest.as_str(), n), ("m v=3i 3\nm v=4i 4\n", 2));
        q.done();
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_queue_drops_the_oldest_waiting_and_counts_them() {
        let mut q = Queue::new(4);
        assert_eq!(q.push(points(0..6)), 2);
        assert_eq!(q.take_dropped(), 2);
        assert_eq!(q.take_dropped(), 0);
        let (body, _) = q.take(2).unwrap();
        assert!(body.starts_with("m v=2i 2\n"), "{body}");
        // two on their way, two waiting: the next push drops a waiting one, never those
        assert_eq!(q.push(points(6..7)), 1);
        assert_eq!(q.len(), 4);
        q.failed(body);
        let (body, _) = q.take(10).unwrap();
        assert_eq!(body, "m v=2i 2\nm v=3i 3\nm v=5i 5\nm v=6i 6\n");
    }

    #[test]
    fn a_batch_filling_the_queue_drops_what_comes_meanwhile() {
        let mut q = Queue::new(2);
        q.push(points(0..2));
        let (body, _) = q.take(2).unwrap();
        assert_eq!(q.push(points(2..3)), 1);
        q.failed(body);
        assert_eq!(q.len(), 2);
    }
}
