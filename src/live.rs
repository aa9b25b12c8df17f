//! The live scheduler: capture → front-end → bounded window queue →
//! classifier → smoother → one verdict per window.
//!
//! Two threads and a fixed memory plan decided at start:
//!
//! - the **capture thread** opens the device (reopening it with backoff when
//!   it fails), reads the capture ring through the same [`Frontend`] that
//!   replay uses, and pushes each finished window into the [`WindowQueue`];
//! - the **inference thread** takes windows from the queue, skips those older
//!   than the deadline, classifies the rest with a [`Classifier`] whose input
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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::audio::{AudioSource, RingStats};
use crate::error::{Error, Result};
use crate::features::FeatureConfig;
use crate::model::Classifier;
use crate::scheduler::{Frontend, argmax};

/// How far apart windows start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hop {
    /// A fixed hop, in seconds.
    Fixed(f64),
    /// Follow inference time: 1.25 × its running mean, at least `AUTO_MIN_HOP`.
    Auto,
}

/// Shortest hop `--hop auto` picks, in seconds.
pub const AUTO_MIN_HOP: f64 = 0.25;

impl std::str::FromStr for Hop {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Hop::Auto);
        }
        match s.trim().parse::<f64>() {
            Ok(v) => crate::limits::HOP_SECONDS.check(v).map(Hop::Fixed),
            _ => Err(format!(
                "hop must be a number of seconds or 'auto', not '{s}'"
            )),
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

/// Exponential moving average of the class probabilities, with hysteresis
/// on the reported genre.
#[derive(Debug, Clone)]
pub struct Smoother {
    alpha: f32,
    margin: f32,
    ema: Vec<f32>,
    primed: bool,
    current: Option<usize>,
}

impl Smoother {
    /// Averages over about `span` windows (`alpha = 2 / (span + 1)`); a new
    /// genre must beat the reported one by `margin`.
    pub fn new(classes: usize, span: usize, margin: f32) -> Self {
        Smoother {
            alpha: 2.0 / (span.max(1) as f32 + 1.0),
            margin: margin.max(0.0),
            ema: vec![0.0; classes],
            primed: false,
            current: None,
        }
    }

    /// Forgets the history (after silence or a device change).
    pub fn reset(&mut self) {
        self.primed = false;
        self.current = None;
    }

    /// Adds one window's probabilities; returns the reported genre and its
    /// smoothed probability.
    pub fn update(&mut self, probs: &[f32]) -> (usize, f32) {
        if self.primed {
            for (e, &p) in self.ema.iter_mut().zip(probs) {
                *e += self.alpha * (p - *e);
            }
        } else {
            let n = self.ema.len();
            self.ema.copy_from_slice(&probs[..n]);
            self.primed = true;
        }
        let best = argmax(&self.ema);
        let current = match self.current {
            Some(c) if self.ema[best] < self.ema[c] + self.margin => c,
            _ => best,
        };
        self.current = Some(current);
        (current, self.ema[current])
    }

    /// The smoothed probabilities.
    pub fn probs(&self) -> &[f32] {
        &self.ema
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

/// What the capture thread opens: a device, or a synthetic producer for
/// benchmarks. The returned guard keeps the stream alive.
pub trait Opener: Send + 'static {
    /// Opens a capture session that stops when `stop` is raised.
    #[allow(clippy::type_complexity)]
    fn open(
        &mut self,
        stop: Arc<AtomicBool>,
    ) -> Result<(Box<dyn Send>, Box<dyn AudioSource + Send>, Arc<RingStats>)>;

    /// Whether the input has ended for good (a finite source); checked
    /// after a session ends. Devices never end.
    fn exhausted(&self) -> bool {
        false
    }

    /// What a full window queue does: devices drop the oldest window.
    fn overflow(&self) -> Overflow {
        Overflow::DropOldest
    }

    /// Whether the input is a recording (a file) rather than a stream: a
    /// recording shorter than one window is made into one, as `replay`
    /// does; a stream waits for a whole window.
    fn finite(&self) -> bool {
        false
    }
}

/// Opens an audio file as if it were a device: once, paced at `speed` ×
/// real time (a kiosk demo, a test), or, with `speed` 0, as fast as the
/// model takes windows, nothing dropped.
pub struct FileOpener {
    path: std::path::PathBuf,
    speed: f64,
    opened: bool,
}

impl FileOpener {
    /// `path` at `speed` × real time; 0: as fast as the model allows.
    pub fn new(path: &std::path::Path, speed: f64) -> Self {
        FileOpener {
            path: path.to_path_buf(),
            speed,
            opened: false,
        }
    }
}

impl Opener for FileOpener {
    fn open(
        &mut self,
        stop: Arc<AtomicBool>,
    ) -> Result<(Box<dyn Send>, Box<dyn AudioSource + Send>, Arc<RingStats>)> {
        self.opened = true;
        let file = crate::audio::FileSource::open(&self.path)?;
        log::info!(
            "reading {} ({} Hz, {} ch) at {}",
            self.path.display(),
            file.format().sample_rate,
            file.format().channels,
            if self.speed > 0.0 {
                format!("{}x real time", self.speed)
            } else {
                "the model's pace".into()
            }
        );
        let source: Box<dyn AudioSource + Send> = if self.speed > 0.0 {
            Box::new(crate::audio::Paced::with_speed(
                file,
                self.speed,
                Some(stop),
            ))
        } else {
            Box::new(file)
        };
        Ok((Box::new(()), source, Arc::new(RingStats::default())))
    }

    fn exhausted(&self) -> bool {
        self.opened
    }

    fn overflow(&self) -> Overflow {
        if self.speed > 0.0 {
            Overflow::DropOldest
        } else {
            Overflow::Wait
        }
    }

    fn finite(&self) -> bool {
        true
    }
}

/// Opens a real input device through cpal.
pub struct DeviceOpener(pub crate::audio::CaptureSettings);

impl Opener for DeviceOpener {
    fn open(
        &mut self,
        stop: Arc<AtomicBool>,
    ) -> Result<(Box<dyn Send>, Box<dyn AudioSource + Send>, Arc<RingStats>)> {
        let (capture, source) = crate::audio::capture::open(&self.0, stop)?;
        log::info!(
            "capturing from {}: {} Hz, {} ch, {}",
            capture.name,
            capture.format.sample_rate,
            capture.format.channels,
            capture.sample_format
        );
        let stats = capture.stats.clone();
        Ok((Box::new(capture), source, stats))
    }
}

/// State of the capture side, for the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureState {
    /// Opening the device.
    Opening,
    /// Reading audio.
    Running,
    /// Waiting to reopen after a failure.
    Retrying,
    /// Stopped.
    Stopped,
}

/// A running pipeline; stop it with [`Pipeline::stop`].
pub struct Pipeline {
    stop: Arc<AtomicBool>,
    queue: Arc<WindowQueue>,
    capture: Option<JoinHandle<()>>,
    inference: Option<JoinHandle<()>>,
    /// Capture state, for status.
    pub state: Arc<Mutex<CaptureState>>,
    failure: Arc<Mutex<Option<Error>>>,
}

/// Reopen backoff: first wait, and the most it grows to.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

impl Pipeline {
    /// Starts both threads. `sink` receives every verdict on the inference
    /// thread, in order. With `fail_fast`, a first open that fails ends the
    /// pipeline (see [`Pipeline::take_failure`]); otherwise it is retried
    /// like any later failure.
    pub fn start(
        settings: &LiveSettings,
        mut classifier: Classifier,
        mut opener: Box<dyn Opener>,
        counters: Arc<Counters>,
        mut sink: Box<dyn FnMut(&Verdict<'_>) + Send>,
        fail_fast: bool,
    ) -> Result<Pipeline> {
        let model = classifier.model().clone();
        let cfg: FeatureConfig = model.manifest().features.clone();
        let window_len = cfg.n_mels * cfg.frames;
        let queue = Arc::new(WindowQueue::new(settings.queue, window_len));
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(CaptureState::Opening));
        let failure = Arc::new(Mutex::new(None));
        let initial_hop = match settings.hop {
            Hop::Fixed(s) => s,
            Hop::Auto => 1.0,
        };
        counters
            .hop_frames
            .store(cfg.hop_frames_for(initial_hop), Ordering::Relaxed);
        let mut frontend = Frontend::live(&cfg, counters.hop_frames.clone(), opener.finite())?;
        let overflow = opener.overflow();

        let capture = {
            let (stop, queue, counters, state) =
                (stop.clone(), queue.clone(), counters.clone(), state.clone());
            let cfg = cfg.clone();
            let failure = failure.clone();
            std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || {
                    let mut backoff = BACKOFF.0;
                    let mut seq = 0u64;
                    let mut first = fail_fast;
                    while !stop.load(Ordering::Relaxed) {
                        set(&state, CaptureState::Opening);
                        let session_stop = stop.clone();
                        match opener.open(session_stop) {
                            Ok((guard, mut source, stats)) => {
                                first = false;
                                set(&state, CaptureState::Running);
                                let base = counters.overruns.load(Ordering::Relaxed);
                                let name = source.name().to_string();
                                let result = frontend.run(source.as_mut(), &mut |w| {
                                    counters
                                        .overruns
                                        .store(base + stats.overruns(), Ordering::Relaxed);
                                    let meta = WindowMeta {
                                        seq,
                                        end_s: w.first_frame as f64 * cfg.frame_seconds()
                                            + cfg.window_seconds(),
                                        level_db: w.level_db,
                                        ready: Instant::now(),
                                    };
                                    seq += 1;
                                    counters.windows.fetch_add(1, Ordering::Relaxed);
                                    match overflow {
                                        Overflow::Wait => queue.push_waiting(w.values, meta),
                                        Overflow::DropOldest => {
                                            if queue.push(w.values, meta) {
                                                counters
                                                    .dropped_full
                                                    .fetch_add(1, Ordering::Relaxed);
                                            }
                                        }
                                    }
                                    // A session that produced windows was healthy.
                                    backoff = BACKOFF.0;
                                    Ok(())
                                });
                                counters
                                    .overruns
                                    .store(base + stats.overruns(), Ordering::Relaxed);
                                drop(source);
                                drop(guard);
                                if stop.load(Ordering::Relaxed) || opener.exhausted() {
                                    break;
                                }
                                match result {
                                    Err(e) => log::warn!("{e}; reopening in {backoff:.1?}"),
                                    Ok(_) => log::warn!(
                                        "{name}: stream ended; reopening in {backoff:.1?}"
                                    ),
                                }
                            }
                            // A device that cannot be opened at start is a
                            // configuration error: report it and end (a service
                            // manager restarts us). Later failures are retried.
                            Err(e) if first => {
                                if let Ok(mut f) = failure.lock() {
                                    *f = Some(e);
                                }
                                stop.store(true, Ordering::Relaxed);
                                break;
                            }
                            Err(e) => log::warn!("{e}; retrying in {backoff:.1?}"),
                        }
                        set(&state, CaptureState::Retrying);
                        sleep_unless(&stop, backoff);
                        backoff = (backoff * 2).min(BACKOFF.1);
                        if !stop.load(Ordering::Relaxed) {
                            counters.reopens.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    set(&state, CaptureState::Stopped);
                    queue.close();
                })
                .map_err(|cause| Error::Spawn {
                    what: "capture",
                    cause,
                })?
        };

        let inference = {
            let (stop, queue, counters) = (stop.clone(), queue.clone(), counters.clone());
            let settings = settings.clone();
            let labels = model.labels().len();
            std::thread::Builder::new()
                .name("inference".into())
                .spawn(move || {
                    let mut window = vec![0.0f32; window_len];
                    let mut smoother =
                        Smoother::new(labels, settings.smoothing, settings.hysteresis);
                    let mut mean_inference: Option<f64> = None;
                    let mut last_end = f64::INFINITY;
                    loop {
                        let meta = match queue.pop_into(&mut window, Duration::from_millis(100)) {
                            Pop::Window(m) => m,
                            Pop::Timeout if stop.load(Ordering::Relaxed) => break,
                            Pop::Timeout => continue,
                            Pop::Closed => break,
                        };
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        // Stream time restarts when the device is reopened:
                        // do not smooth across the gap.
                        if meta.end_s < last_end {
                            smoother.reset();
                        }
                        last_end = meta.end_s;
                        let hop_s = counters.hop_frames.load(Ordering::Relaxed) as f64
                            * cfg.frame_seconds();
                        // Input that waits for the model is never late.
                        if overflow == Overflow::DropOldest
                            && meta.ready.elapsed() > settings.deadline_for(hop_s)
                        {
                            counters.dropped_late.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let mut verdict = Verdict {
                            ts: SystemTime::now(),
                            seq: meta.seq,
                            end_s: meta.end_s,
                            level_db: meta.level_db,
                            result: None,
                            latency: Duration::ZERO,
                            dropped: 0,
                            overruns: 0,
                        };
                        let probs;
                        if meta.level_db < settings.silence_db {
                            smoother.reset();
                        } else {
                            let t = Instant::now();
                            probs = match classifier.classify(&window) {
                                Ok(p) => p,
                                Err(e) => {
                                    counters.errors.fetch_add(1, Ordering::Relaxed);
                                    log::error!("window {}: {e}", meta.seq);
                                    continue;
                                }
                            };
                            let inference = t.elapsed();
                            if settings.hop == Hop::Auto {
                                let s = inference.as_secs_f64();
                                let m = mean_inference.map_or(s, |m| m + 0.2 * (s - m));
                                mean_inference = Some(m);
                                let frames = cfg.hop_frames_for((1.25 * m).max(AUTO_MIN_HOP));
                                counters.hop_frames.store(frames, Ordering::Relaxed);
                            }
                            let (smoothed, smoothed_p) = smoother.update(probs);
                            verdict.result = Some(Classified {
                                probs,
                                smoothed,
                                smoothed_p,
                                inference,
                            });
                        }
                        counters.verdicts.fetch_add(1, Ordering::Relaxed);
                        verdict.ts = SystemTime::now();
                        verdict.latency = meta.ready.elapsed();
                        verdict.dropped = counters.dropped();
                        verdict.overruns = counters.overruns.load(Ordering::Relaxed);
                        sink(&verdict);
                    }
                })
                .map_err(|cause| Error::Spawn {
                    what: "inference",
                    cause,
                })?
        };

        Ok(Pipeline {
            stop,
            queue,
            capture: Some(capture),
            inference: Some(inference),
            state,
            failure,
        })
    }

    /// Why the pipeline ended by itself, if it failed to open the device.
    pub fn take_failure(&self) -> Option<Error> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }

    /// Whether both threads have finished (the opener's input ended).
    pub fn finished(&self) -> bool {
        self.capture.as_ref().is_none_or(|h| h.is_finished())
            && self.inference.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Asks both threads to stop and waits up to `timeout` for them. Returns
    /// `false` if a thread is still blocked (in a device open or read that
    /// the OS has not returned from); it is then left to finish alone.
    pub fn stop(mut self, timeout: Duration) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        self.queue.close();
        let until = Instant::now() + timeout;
        let mut joined = true;
        for handle in [self.inference.take(), self.capture.take()]
            .into_iter()
            .flatten()
        {
            while !handle.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                joined = false;
            }
        }
        joined
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

    #[test]
    fn hysteresis_holds_a_close_call() {
        let mut s = Smoother::new(2, 1, 0.1);
        assert_eq!(s.update(&[0.6, 0.4]).0, 0);
        // Class 1 now leads, but by less than the margin: keep class 0.
        assert_eq!(s.update(&[0.47, 0.53]).0, 0);
        // A clear lead switches.
        assert_eq!(s.update(&[0.2, 0.8]).0, 1);
        s.reset();
        assert_eq!(s.update(&[0.7, 0.3]).0, 0);
    }

    #[test]
    fn smoothing_averages_recent_windows() {
        let mut s = Smoother::new(2, 3, 0.0);
        s.update(&[1.0, 0.0]);
        s.update(&[0.0, 1.0]);
        // alpha = 0.5: halfway.
        assert!((s.probs()[0] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn hop_parses() {
        assert_eq!("auto".parse::<Hop>(), Ok(Hop::Auto));
        assert_eq!("0.5".parse::<Hop>(), Ok(Hop::Fixed(0.5)));
        assert!("-1".parse::<Hop>().is_err());
        assert!("fast".parse::<Hop>().is_err());
    }
}
