//! The inference thread: takes windows from the queue, skips the late ones,
//! classifies the rest, smooths, and hands each verdict to the sink.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::{
    Classified, Counters, Hop, LiveSettings, Overflow, Pop, Smoother, Verdict, WindowMeta,
    WindowQueue,
};
use crate::features::FeatureConfig;
use crate::model::Classifier;

/// `--hop auto`: the hop is this many times the running mean inference time,
/// so the model is busy about 80% of the time and a slow window does not
/// start a backlog.
pub const AUTO_HOP_FACTOR: f64 = 1.25;

/// `--hop auto`: weight of the newest inference time in its running mean
/// (an EMA over about the last 10 windows: steady, yet it follows a CPU that
/// slows down within seconds).
pub const AUTO_HOP_EMA: f64 = 0.2;

/// How often a waiting inference thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Where a verdict goes, on the inference thread, in order.
pub type Sink = Box<dyn FnMut(&Verdict<'_>) + Send>;

/// Everything the inference thread owns; buffers allocated once.
pub(super) struct InferenceLoop {
    pub classifier: Classifier,
    pub settings: LiveSettings,
    pub cfg: FeatureConfig,
    pub queue: Arc<WindowQueue>,
    pub overflow: Overflow,
    pub counters: Arc<Counters>,
    pub stop: Arc<AtomicBool>,
    pub sink: Sink,
    pub window: Vec<f32>,
    pub smoother: Smoother,
    /// Running mean inference time, seconds (`--hop auto`).
    pub mean_inference: Option<f64>,
}

impl InferenceLoop {
    /// Serves windows until the queue is closed and drained, or stopped.
    pub fn run(mut self) {
        let mut last_end = f64::INFINITY;
        loop {
            let meta = match self.queue.pop_into(&mut self.window, POLL) {
                Pop::Window(m) => m,
                Pop::Timeout if self.stop.load(Ordering::Relaxed) => break,
                Pop::Timeout => continue,
                Pop::Closed => break,
            };
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            // Stream time restarts when the device is reopened: do not
            // smooth across the gap.
            if meta.end_s < last_end {
                self.smoother.reset();
            }
            last_end = meta.end_s;
            if self.late(&meta) {
                self.counters.dropped_late.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.serve(meta);
        }
    }

    /// Whether a window waited past the deadline (input that waits for the
    /// model is never late).
    fn late(&self, meta: &WindowMeta) -> bool {
        let hop_s =
            self.counters.hop_frames.load(Ordering::Relaxed) as f64 * self.cfg.frame_seconds();
        self.overflow == Overflow::DropOldest
            && meta.ready.elapsed() > self.settings.deadline_for(hop_s)
    }

    /// Classifies one window (unless it is silence) and calls the sink.
    fn serve(&mut self, meta: WindowMeta) {
        let mut result = None;
        if meta.level_db < self.settings.silence_db {
            self.smoother.reset();
        } else {
            let t = Instant::now();
            let probs = match self.classifier.classify(&self.window) {
                Ok(p) => p,
                Err(e) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    log::error!("window {}: {e}", meta.seq);
                    return;
                }
            };
            let inference = t.elapsed();
            if self.settings.hop == Hop::Auto {
                let s = inference.as_secs_f64();
                let m = self
                    .mean_inference
                    .map_or(s, |m| m + AUTO_HOP_EMA * (s - m));
                self.mean_inference = Some(m);
                let hop = (AUTO_HOP_FACTOR * m).max(super::AUTO_MIN_HOP);
                let frames = self.cfg.hop_frames_for(hop);
                self.counters.hop_frames.store(frames, Ordering::Relaxed);
            }
            let (smoothed, smoothed_p) = self.smoother.update(probs);
            result = Some(Classified {
                probs,
                smoothed,
                smoothed_p,
                inference,
            });
        }
        self.counters.verdicts.fetch_add(1, Ordering::Relaxed);
        let verdict = Verdict {
            ts: SystemTime::now(),
            seq: meta.seq,
            end_s: meta.end_s,
            level_db: meta.level_db,
            result,
            latency: meta.ready.elapsed(),
            dropped: self.counters.dropped(),
            overruns: self.counters.overruns.load(Ordering::Relaxed),
        };
        (self.sink)(&verdict);
    }
}
