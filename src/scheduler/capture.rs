//! The capture thread: opens the input, drives it through the front-end and
//! queues each finished window, reopening a failed device with backoff.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{CaptureState, Counters, Overflow, WindowMeta, WindowQueue};
use crate::audio::{Opener, Session};
use crate::error::Error;
use crate::features::FeatureConfig;
use crate::frontend::Frontend;

/// Reopen backoff: the first wait, and the most it doubles to. Short enough
/// that an unplugged USB microphone is back within a second; capped so a
/// missing device costs a log line every 30 s, not a busy loop.
pub const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// Everything the capture thread owns.
pub(super) struct CaptureLoop {
    pub opener: Box<dyn Opener>,
    pub frontend: Frontend,
    pub cfg: FeatureConfig,
    pub queue: Arc<WindowQueue>,
    pub overflow: Overflow,
    pub counters: Arc<Counters>,
    pub state: Arc<Mutex<CaptureState>>,
    pub stop: Arc<AtomicBool>,
    pub failure: Arc<Mutex<Option<Error>>>,
    /// A first open that fails ends the pipeline instead of being retried.
    pub fail_fast: bool,
    /// Windows so far (their `seq`).
    pub seq: u64,
}

impl CaptureLoop {
    /// Opens, reads and reopens until stopped or the input is exhausted,
    /// then closes the queue so the inference thread drains it and ends.
    pub fn run(mut self) {
        let mut backoff = BACKOFF.0;
        let mut first = self.fail_fast;
        while !self.stop.load(Ordering::Relaxed) {
            set(&self.state, CaptureState::Opening);
            match self.opener.open(self.stop.clone()) {
                Ok(session) => {
                    first = false;
                    if self.session(session, &mut backoff) {
                        break;
                    }
                }
                // A device that cannot be opened at start is a configuration
                // error: report it and end (a service manager restarts us).
                // Later failures are retried.
                Err(e) if first => {
                    if let Ok(mut f) = self.failure.lock() {
                        *f = Some(e);
                    }
                    self.stop.store(true, Ordering::Relaxed);
                    break;
                }
                Err(e) => log::warn!("{e}; retrying in {backoff:.1?}"),
            }
            set(&self.state, CaptureState::Retrying);
            sleep_unless(&self.stop, backoff);
            backoff = (backoff * 2).min(BACKOFF.1);
            if !self.stop.load(Ordering::Relaxed) {
                self.counters.reopens.fetch_add(1, Ordering::Relaxed);
            }
        }
        set(&self.state, CaptureState::Stopped);
        self.queue.close();
    }

    /// Reads one open session to its end; returns whether capture is over
    /// (stopped, or a finite input exhausted) rather than to be reopened.
    fn session(&mut self, session: Session, backoff: &mut Duration) -> bool {
        let Session {
            guard,
            mut source,
            stats,
        } = session;
        set(&self.state, CaptureState::Running);
        let base = self.counters.overruns.load(Ordering::Relaxed);
        let name = source.name().to_string();
        let (cfg, queue, counters, overflow) =
            (&self.cfg, &self.queue, &self.counters, self.overflow);
        let seq = &mut self.seq;
        let result = self.frontend.run(source.as_mut(), &mut |w| {
            counters
                .overruns
                .store(base + stats.overruns(), Ordering::Relaxed);
            let meta = WindowMeta {
                seq: *seq,
                end_s: w.first_frame as f64 * cfg.frame_seconds() + cfg.window_seconds(),
                level_db: w.level_db,
                ready: Instant::now(),
            };
            *seq += 1;
            counters.windows.fetch_add(1, Ordering::Relaxed);
            match overflow {
                Overflow::Wait => queue.push_waiting(w.values, meta),
                Overflow::DropOldest => {
                    if queue.push(w.values, meta) {
                        counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // A session that produced windows was healthy.
            *backoff = BACKOFF.0;
            Ok(())
        });
        counters
            .overruns
            .store(base + stats.overruns(), Ordering::Relaxed);
        drop(source);
        drop(guard);
        if self.stop.load(Ordering::Relaxed) || self.opener.exhausted() {
            return true;
        }
        match result {
            Err(e) => log::warn!("{e}; reopening in {backoff:.1?}"),
            Ok(_) => log::warn!("{name}: stream ended; reopening in {backoff:.1?}"),
        }
        false
    }
}

fn set(state: &Mutex<CaptureState>, value: CaptureState) {
    if let Ok(mut s) = state.lock() {
        *s = value;
    }
}

/// Sleeps `total`, waking early when `stop` is raised.
fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(20)));
    }
}
