//! The front-end every source goes through: source → conditioner → mel →
//! windows (→ model, for replay and eval).
//!
//! [`Frontend`] drives one [`AudioSource`] to its end, turning chunks into
//! mono at the model's rate and then into windows, and times each stage.
//! [`classify_stream`] puts a [`Classifier`] behind it. Replay, evaluation,
//! feature export and the live scheduler's capture thread all go through
//! here, so they cannot disagree about what a window is.
//!
//! Offline, the source is pulled only as fast as windows are consumed, so
//! nothing queues: the only buffers are the chunk, the resampler block and
//! the mel stream's frame ring, all sized at start.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::audio::{AudioSource, Conditioner};
use crate::error::{Error, Result};
use crate::features::{FeatureConfig, MelStream, ShortInput, Window};
use crate::model::Classifier;

/// Wall time spent in each stage of a stream.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageTimes {
    /// Reading and decoding the source.
    pub decode: Duration,
    /// Downmixing and resampling.
    pub resample: Duration,
    /// STFT, mel and dB.
    pub features: Duration,
    /// Preparing the input and running the model.
    pub inference: Duration,
}

impl StageTimes {
    /// Adds another stream's times to these.
    pub fn add(&mut self, other: &StageTimes) {
        self.decode += other.decode;
        self.resample += other.resample;
        self.features += other.features;
        self.inference += other.inference;
    }
}

/// What a stream amounted to.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    /// Audio consumed, in seconds at the source's rate.
    pub audio_seconds: f64,
    /// Windows produced.
    pub windows: usize,
    /// Whether the audio was shorter than one window and made into one.
    pub padded: bool,
    /// How it was made into one (the manifest's `short_input`), if it was.
    pub short_input: Option<ShortInput>,
    /// Time per stage.
    pub times: StageTimes,
}

/// Source-to-windows driver for one worker; reusable across streams.
pub struct Frontend {
    mel: MelStream,
    chunk: Vec<f32>,
    hop_control: Option<Arc<AtomicUsize>>,
    pad_short: bool,
    /// The stream's first mono samples, kept until its first window (at most
    /// one window's worth, allocated once): what `ShortInput::Loop` repeats.
    head: Vec<f32>,
}

impl Frontend {
    /// A front-end with windows every `hop_frames` STFT frames.
    pub fn new(cfg: &FeatureConfig, hop_frames: usize) -> Result<Self> {
        let head = match cfg.short_input {
            ShortInput::Loop => Vec::with_capacity(cfg.window_samples()),
            ShortInput::Pad => Vec::new(),
        };
        Ok(Frontend {
            mel: MelStream::new(cfg, hop_frames)?,
            chunk: Vec::new(),
            hop_control: None,
            pad_short: true,
            head,
        })
    }

    /// A live front-end: the window hop follows `hop_frames` (read before
    /// every chunk, so another thread can adapt it). A recording
    /// (`finite`, a file) shorter than one window is made into one as in
    /// [`Frontend::new`]; a stream that stops before its first window is not.
    pub fn live(cfg: &FeatureConfig, hop_frames: Arc<AtomicUsize>, finite: bool) -> Result<Self> {
        let mut frontend = Frontend::new(cfg, hop_frames.load(Ordering::Relaxed).max(1))?;
        frontend.hop_control = Some(hop_frames);
        frontend.pad_short = finite;
        Ok(frontend)
    }

    /// The feature parameters.
    pub fn config(&self) -> &FeatureConfig {
        self.mel.config()
    }

    /// Reads `source` to its end and calls `on_window` for each window.
    ///
    /// Audio shorter than one window is made into one window as the
    /// manifest's `short_input` says, silence after it or the audio looped
    /// (and reported as `padded`); a source with no samples, or with a NaN or
    /// infinite sample, is an error. Time spent inside `on_window` is counted
    /// as `inference`.
    pub fn run(
        &mut self,
        source: &mut dyn AudioSource,
        on_window: &mut dyn FnMut(Window<'_>) -> Result<()>,
    ) -> Result<StreamStats> {
        let format = source.format();
        let cfg = self.mel.config().clone();
        let mut conditioner =
            Conditioner::new(format.sample_rate, format.channels, cfg.sample_rate)?;
        self.mel.reset();
        let mut stats = StreamStats::default();
        let mut frames_in: u64 = 0;
        self.head.clear();
        let keep_head = self.pad_short && cfg.short_input == ShortInput::Loop;
        let mut feeder = Feeder {
            mel: &mut self.mel,
            on_window,
            windows: 0,
            mono_out: 0,
            mel_time: Duration::ZERO,
            sink_time: Duration::ZERO,
            failed: None,
            head: keep_head.then_some(&mut self.head),
        };
        loop {
            let t = Instant::now();
            let more = source.read_chunk(&mut self.chunk)?;
            stats.times.decode += t.elapsed();
            if !more {
                break;
            }
            if let Some(i) = self.chunk.iter().position(|x| !x.is_finite()) {
                let frame = frames_in + (i / format.channels) as u64;
                return Err(Error::NonFinite {
                    what: source.name().to_string(),
                    seconds: frame as f64 / format.sample_rate as f64,
                });
            }
            frames_in += (self.chunk.len() / format.channels) as u64;
            if let Some(hop) = &self.hop_control {
                let hop = hop.load(Ordering::Relaxed).max(1);
                if hop != feeder.mel.hop_frames() {
                    feeder.mel.set_hop_frames(hop);
                }
            }
            let t = Instant::now();
            conditioner.process(&self.chunk, |mono| feeder.feed(mono));
            stats.times.resample += t.elapsed();
            if let Some(e) = feeder.failed.take() {
                return Err(e);
            }
        }
        let t = Instant::now();
        conditioner.finish(|mono| feeder.feed(mono));
        stats.times.resample += t.elapsed();
        if frames_in == 0 {
            return Err(Error::Empty {
                what: source.name().to_string(),
            });
        }
        if self.pad_short && feeder.windows == 0 && feeder.mono_out < cfg.window_samples() as u64 {
            let t = Instant::now();
            feeder.fill_short(&cfg, source.name());
            stats.times.resample += t.elapsed();
            stats.padded = true;
            stats.short_input = Some(cfg.short_input);
        }
        if let Some(e) = feeder.failed.take() {
            return Err(e);
        }
        // `resample` so far includes the mel stream's time, which includes the sink's.
        stats.windows = feeder.windows;
        stats.times.resample = stats.times.resample.saturating_sub(feeder.mel_time);
        stats.times.features = feeder.mel_time.saturating_sub(feeder.sink_time);
        stats.times.inference = feeder.sink_time;
        stats.audio_seconds = frames_in as f64 / format.sample_rate as f64;
        Ok(stats)
    }
}

/// Carries mono samples into the mel stream and windows out to the sink,
/// timing both and holding the sink's first error.
struct Feeder<'a, 'b> {
    mel: &'a mut MelStream,
    /// Where the stream's first samples are kept (for looping short input)
    /// until the first window is out; `None` when not needed.
    head: Option<&'a mut Vec<f32>>,
    on_window: &'a mut (dyn FnMut(Window<'_>) -> Result<()> + 'b),
    windows: usize,
    mono_out: u64,
    mel_time: Duration,
    sink_time: Duration,
    failed: Option<Error>,
}

impl Feeder<'_, '_> {
    /// Completes a recording shorter than one window into one, as
    /// `cfg.short_input` says: the recording looped from its start (the last
    /// copy cut short), or silence after it.
    fn fill_short(&mut self, cfg: &FeatureConfig, name: &str) {
        let policy = cfg.short_input;
        // Said once per stream at info level: a batch of excerpts would
        // otherwise fill the terminal (replay's verdict line says it too).
        log::info!(
            "{name}: {:.2} s is shorter than one window ({:.2} s); {}",
            self.mono_out as f64 / cfg.sample_rate as f64,
            cfg.window_seconds(),
            match policy {
                ShortInput::Pad => "padded with silence",
                ShortInput::Loop => "looped to fill it",
            }
        );
        let missing = (cfg.window_samples() as u64 - self.mono_out) as usize;
        match (policy, self.head.take()) {
            (ShortInput::Loop, Some(head)) if !head.is_empty() => {
                let mut left = missing;
                while left > 0 {
                    let n = left.min(head.len());
                    self.feed(&head[..n]);
                    left -= n;
                }
            }
            _ => self.feed(&vec![0.0; missing]),
        }
    }

    fn feed(&mut self, mono: &[f32]) {
        self.mono_out += mono.len() as u64;
        if let Some(head) = self.head.as_mut() {
            let room = head.capacity() - head.len();
            head.extend_from_slice(&mono[..mono.len().min(room)]);
        }
        let start = Instant::now();
        let (on_window, failed) = (&mut self.on_window, &mut self.failed);
        let (windows, sink_time) = (&mut self.windows, &mut self.sink_time);
        self.mel.push(mono, |w| {
            if failed.is_some() {
                return;
            }
            *windows += 1;
            let t = Instant::now();
            if let Err(e) = on_window(w) {
                *failed = Some(e);
            }
            *sink_time += t.elapsed();
        });
        self.mel_time += start.elapsed();
    }
}

/// One classified window.
#[derive(Debug)]
pub struct Prediction<'a> {
    /// Window number in the stream, from 0.
    pub index: usize,
    /// Window start, in seconds from the start of the stream.
    pub start_s: f64,
    /// Window end, in seconds.
    pub end_s: f64,
    /// Class probabilities in label order.
    pub probs: &'a [f32],
    /// Time to prepare the input and run the model.
    pub latency: Duration,
}

/// A classified stream: its statistics and the mean of its windows'
/// probabilities.
#[derive(Debug, Clone)]
pub struct StreamResult {
    /// Stage times and counts.
    pub stats: StreamStats,
    /// Mean class probabilities over all windows, in label order.
    pub mean_probs: Vec<f32>,
}

/// Runs `source` through `frontend` and `classifier`, calling
/// `on_prediction` for every window.
pub fn classify_stream(
    frontend: &mut Frontend,
    classifier: &mut Classifier,
    source: &mut dyn AudioSource,
    mut on_prediction: impl FnMut(&Prediction<'_>),
) -> Result<StreamResult> {
    let cfg = frontend.config().clone();
    let mut sums = vec![0.0f64; classifier.model().labels().len()];
    let mut index = 0;
    let name = source.name().to_string();
    let stats = frontend.run(source, &mut |w| {
        let t = Instant::now();
        let start_s = w.first_frame as f64 * cfg.frame_seconds();
        let probs = classifier.classify(w.values).map_err(|e| Error::Window {
            what: name.clone(),
            start_s,
            detail: e.to_string(),
        })?;
        let latency = t.elapsed();
        for (s, &p) in sums.iter_mut().zip(probs) {
            *s += p as f64;
        }
        on_prediction(&Prediction {
            index,
            start_s,
            end_s: start_s + cfg.window_seconds(),
            probs,
            latency,
        });
        index += 1;
        Ok(())
    })?;
    let n = stats.windows.max(1) as f64;
    Ok(StreamResult {
        mean_probs: sums.iter().map(|s| (s / n) as f32).collect(),
        stats,
    })
}

/// Index of the largest value (the first, on ties).
pub fn argmax(xs: &[f32]) -> usize {
    xs.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        })
        .0
}
