//! The live scheduler: capture → front-end → bounded window queue →
//! classifier → smoother → one verdict per window, for microphones and for
//! files standing in for one (`listen --input`, `replay --realtime`).
//!
//! Two threads and a fixed memory plan decided at start:
//!
//! - the **capture thread** opens the device (reopening it with backoff when
//!   it fails), reads the capture ring through the same [`Frontend`](crate::frontend::Frontend) that
//!   replay uses, and pushes each finished window into the [`WindowQueue`];
//! - the **inference thread** takes windows from the queue, skips those older
//!   than the deadline, classifies the rest with a [`Classifier`](crate::model::Classifier) whose input
//!   and output buffers were allocated once, smooths, and hands a [`Verdict`]
//!   to the sink.
//!
//! Buffers: the capture ring (`ring_seconds` of device audio), the mel
//! stream's frame ring, `queue` window slots, one window copy for the
//! classifier and the model's own input and output. None grows with run
//! time. When inference is slower than windows arrive the queue drops its
//! oldest window (counted in `dropped`); a window that waited longer than
//! the deadline is skipped (also counted), so what gets classified is
//! always recent audio. With `--hop auto` the hop follows measured inference
//! time, so on a slow machine windows are spaced out instead of dropped.
//!
//! Rooms: [`queue`] (the bounded queue and its drop policy), [`smoother`]
//! (moving average and hysteresis), `capture` and `inference` (the two
//! thread loops), [`pipeline`] (starting and stopping them); what is opened
//! lives in [`crate::audio::opener`].

mod capture;
mod inference;
pub mod pipeline;
pub mod queue;
pub mod smoother;

pub use capture::BACKOFF;
pub use inference::{AUTO_HOP_EMA, AUTO_HOP_FACTOR, Sink};
pub use pipeline::{CaptureState, Pipeline};
pub use queue::{Overflow, Pop, WindowMeta, WindowQueue};
pub use smoother::Smoother;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

/// How far apart windows start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hop {
    /// A fixed hop, in seconds.
    Fixed(f64),
    /// Follow inference time: [`AUTO_HOP_FACTOR`] × its running mean, at
    /// least [`AUTO_MIN_HOP`].
    Auto,
}

/// Shortest hop `--hop auto` picks, in seconds.
pub const AUTO_MIN_HOP: f64 = 0.25;

impl std::str::FromStr for Hop {
    type Err = crate::error::Invalid;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Hop::Auto);
        }
        match s.trim().parse::<f64>() {
            Ok(v) => crate::limits::HOP_SECONDS.check(v).map(Hop::Fixed),
            _ => Err(crate::error::Invalid::Form(format!(
                "hop must be a number of seconds or 'auto', not '{s}'"
            ))),
        }
    }
}

/// Scheduler and smoothing parameters.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// Window hop.
    pub hop: Hop,
    /// Window queue capacity (>= 1).
    pub queue: usize,
    /// Skip windows that waited longer than this; `None`: twice the hop,
    /// at least 1 s.
    pub deadline: Option<Duration>,
    /// Smoothing span in windows (exponential moving average; 1 = none).
    pub smoothing: usize,
    /// Hysteresis: a new genre replaces the reported one only when its
    /// smoothed probability is higher by this much.
    pub hysteresis: f32,
    /// Windows quieter than this (RMS, dBFS) are reported as silence and
    /// not classified.
    pub silence_db: f32,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            hop: Hop::Fixed(1.0),
            queue: 2,
            deadline: None,
            smoothing: 4,
            hysteresis: 0.1,
            silence_db: -60.0,
        }
    }
}

impl LiveSettings {
    /// The deadline in force for a hop of `hop_s` seconds.
    pub fn deadline_for(&self, hop_s: f64) -> Duration {
        self.deadline
            .unwrap_or_else(|| Duration::from_secs_f64((2.0 * hop_s).max(1.0)))
    }
}

/// One result of the live pipeline.
#[derive(Debug)]
pub struct Verdict<'a> {
    /// Wall-clock time of the result.
    pub ts: SystemTime,
    /// Window number since start.
    pub seq: u64,
    /// End of the window in stream time, seconds.
    pub end_s: f64,
    /// RMS level, dBFS.
    pub level_db: f32,
    /// `None` when the window was quieter than the silence threshold.
    pub result: Option<Classified<'a>>,
    /// From the window's last sample leaving the ring to this verdict.
    pub latency: Duration,
    /// Windows dropped or skipped so far.
    pub dropped: u64,
    /// Capture overruns so far.
    pub overruns: u64,
}

/// The classified part of a [`Verdict`].
#[derive(Debug)]
pub struct Classified<'a> {
    /// This window's probabilities, in label order.
    pub probs: &'a [f32],
    /// The reported (smoothed, hysteretic) genre.
    pub smoothed: usize,
    /// Its smoothed probability.
    pub smoothed_p: f32,
    /// Model time for this window.
    pub inference: Duration,
}

/// Counters shared by the pipeline's threads, the status page and the
/// caller; they survive device reopens and model reloads.
#[derive(Debug, Default)]
pub struct Counters {
    /// Windows produced by the front-end.
    pub windows: AtomicU64,
    /// Windows classified (or reported as silence).
    pub verdicts: AtomicU64,
    /// Windows dropped by the full queue.
    pub dropped_full: AtomicU64,
    /// Windows skipped for missing the deadline.
    pub dropped_late: AtomicU64,
    /// Capture overruns, over every device session.
    pub overruns: AtomicU64,
    /// Times the device was reopened after a failure.
    pub reopens: AtomicU64,
    /// Windows the model failed on.
    pub errors: AtomicU64,
    /// Current hop, in STFT frames: read by the front-end before every
    /// chunk, written by the inference thread under `--hop auto`.
    pub hop_frames: Arc<AtomicUsize>,
}

impl Counters {
    /// Dropped plus skipped windows.
    pub fn dropped(&self) -> u64 {
        self.dropped_full.load(Ordering::Relaxed) + self.dropped_late.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_parses() {
        assert_eq!("auto".parse::<Hop>(), Ok(Hop::Auto));
        assert_eq!("0.5".parse::<Hop>(), Ok(Hop::Fixed(0.5)));
        assert!("-1".parse::<Hop>().is_err());
        assert!("fast".parse::<Hop>().is_err());
    }
}
