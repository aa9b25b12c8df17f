//! The bounded window queue between the capture and inference threads.
//!
//! Its capacity is fixed at start (`--queue` slots of one window each) and
//! what happens when it is full is its drop policy, [`Overflow`]: input that
//! runs on its own clock (a device, a paced file) drops the oldest window;
//! input read as fast as the model takes it waits instead.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A window's bookkeeping as it travels through the queue.
#[derive(Debug, Clone, Copy)]
pub struct WindowMeta {
    /// Window number since the pipeline started.
    pub seq: u64,
    /// End of the window in stream time (seconds of audio since the
    /// current device was opened).
    pub end_s: f64,
    /// RMS level of the window, dBFS.
    pub level_db: f32,
    /// When the front-end finished it (its last sample had left the ring).
    pub ready: Instant,
}

/// What the queue hands the consumer.
#[derive(Debug)]
pub enum Pop {
    /// A window, copied into the caller's buffer.
    Window(WindowMeta),
    /// Nothing arrived in time.
    Timeout,
    /// The producer has finished and the queue is empty.
    Closed,
}

/// A fixed-capacity queue of windows; when full, pushing drops the oldest.
///
/// Slots are allocated once. Both ends copy under a short lock (a window is
/// 66 KB; the copy takes microseconds), so neither holds a slot while
/// computing.
pub struct WindowQueue {
    inner: Mutex<QueueInner>,
    ready: Condvar,
    room: Condvar,
    window_len: usize,
}

/// What a full [`WindowQueue`] does with a new window: the opener decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the oldest window (counted): live input cannot wait, so what
    /// gets classified is always recent audio. Devices and paced files.
    DropOldest,
    /// The producer waits for room: nothing is dropped and no window is
    /// late. Files read as fast as the model allows.
    Wait,
}

struct QueueInner {
    slots: Vec<Vec<f32>>,
    meta: Vec<Option<WindowMeta>>,
    head: usize,
    len: usize,
    closed: bool,
    dropped: u64,
}

impl WindowQueue {
    /// Room for `capacity` windows of `window_len` values.
    pub fn new(capacity: usize, window_len: usize) -> Self {
        let capacity = capacity.max(1);
        WindowQueue {
            inner: Mutex::new(QueueInner {
                slots: vec![vec![0.0; window_len]; capacity],
                meta: vec![None; capacity],
                head: 0,
                len: 0,
                closed: false,
                dropped: 0,
            }),
            ready: Condvar::new(),
            room: Condvar::new(),
            window_len,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueInner> {
        // A poisoned lock only means another thread panicked mid-copy; the
        // slots are plain numbers, so carry on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a window; returns `true` if the oldest had to be dropped.
    pub fn push(&self, values: &[f32], meta: WindowMeta) -> bool {
        let mut q = self.lock();
        let cap = q.slots.len();
        let dropped = q.len == cap;
        if dropped {
            q.head = (q.head + 1) % cap;
            q.len -= 1;
            q.dropped += 1;
        }
        let tail = (q.head + q.len) % cap;
        let n = values.len().min(self.window_len);
        q.slots[tail][..n].copy_from_slice(&values[..n]);
        q.meta[tail] = Some(meta);
        q.len += 1;
        drop(q);
        self.ready.notify_one();
        dropped
    }

    /// Adds a window once there is room, waiting as long as it takes (or
    /// until the queue is closed, when the window is discarded).
    pub fn push_waiting(&self, values: &[f32], meta: WindowMeta) {
        let mut q = self.lock();
        while q.len == q.slots.len() && !q.closed {
            q = self.room.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        if q.closed {
            return;
        }
        drop(q);
        self.push(values, meta);
    }

    /// Takes the oldest window into `out`, waiting up to `timeout`.
    pub fn pop_into(&self, out: &mut [f32], timeout: Duration) -> Pop {
        let mut q = self.lock();
        let deadline = Instant::now() + timeout;
        while q.len == 0 {
            if q.closed {
                return Pop::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Pop::Timeout;
            }
            q = self
                .ready
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let head = q.head;
        let n = out.len().min(self.window_len);
        out[..n].copy_from_slice(&q.slots[head][..n]);
        let meta = q.meta[head].take();
        q.head = (head + 1) % q.slots.len();
        q.len -= 1;
        drop(q);
        self.room.notify_one();
        meta.map_or(Pop::Timeout, Pop::Window)
    }

    /// Windows dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Marks the end of input; the consumer drains what is left.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
        self.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> WindowMeta {
        WindowMeta {
            seq,
            end_s: 0.0,
            level_db: 0.0,
            ready: Instant::now(),
        }
    }
    #[test]
    fn full_queue_drops_the_oldest() {
        let q = WindowQueue::new(2, 3);
        assert!(!q.push(&[1.0; 3], meta(1)));
        assert!(!q.push(&[2.0; 3], meta(2)));
        assert!(q.push(&[3.0; 3], meta(3)));
        let mut out = [0.0; 3];
        match q.pop_into(&mut out, Duration::ZERO) {
            Pop::Window(m) => assert_eq!((m.seq, out[0]), (2, 2.0)),
            other => panic!("expected a window, got {other:?}"),
        }
        match q.pop_into(&mut out, Duration::ZERO) {
            Pop::Window(m) => assert_eq!((m.seq, out[0]), (3, 3.0)),
            other => panic!("expected a window, got {other:?}"),
        }
        assert!(matches!(q.pop_into(&mut out, Duration::ZERO), Pop::Timeout));
        q.close();
        assert!(matches!(q.pop_into(&mut out, Duration::ZERO), Pop::Closed));
        assert_eq!(q.dropped(), 1);
    }
}
