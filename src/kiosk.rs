//! `genrepi listen` as a long-running service: settings from a config file
//! and the command line, the memory check, signals, model reloads and the
//! status server, around one [`Pipeline`].
//!
//! Signals (signal-hook, flags only; the main thread polls them every
//! 20 ms): SIGINT or SIGTERM stops the pipeline within a second and returns
//! normally; a second SIGINT exits at once (status 130); SIGHUP rereads the
//! config file and reloads the model, keeping the old ones if that fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::audio::CaptureSettings;
use crate::audio::capture::parse_sample_format;
use crate::error::{Error, Result};
use crate::http::{Board, Status, StatusServer};
use crate::limits;
use crate::live::{
    CaptureState, Counters, DeviceOpener, FileOpener, Hop, LiveSettings, Opener, Pipeline, Verdict,
};
use crate::model::{Model, ModelMemory};
use crate::output::{Format, live_line};

/// Every `listen` setting; each is optional so a config file and the
/// command line can be layered (the command line wins).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Model manifest.
    pub model: Option<PathBuf>,
    /// Matrix-product threads.
    pub threads: Option<usize>,
    /// Input device (substring of its name or id).
    pub device: Option<String>,
    /// Capture sample rate, Hz.
    pub rate: Option<u32>,
    /// Capture channels.
    pub channels: Option<u16>,
    /// Capture sample format (`i16`, `f32`…).
    pub format: Option<String>,
    /// Window hop: seconds or `auto`.
    pub hop: Option<String>,
    /// Window queue capacity.
    pub queue: Option<usize>,
    /// Skip windows older than this many seconds.
    pub deadline: Option<f64>,
    /// Smoothing span, in windows.
    pub smoothing: Option<usize>,
    /// Hysteresis margin on the smoothed probability.
    pub hysteresis: Option<f32>,
    /// Silence threshold, dBFS.
    pub silence_db: Option<f32>,
    /// Seconds without audio before the device is reopened.
    pub stall_timeout: Option<f64>,
    /// Status server address.
    pub http: Option<String>,
    /// Memory limit, e.g. `256M`.
    pub max_memory: Option<String>,
    /// JSON lines instead of text.
    pub json: Option<bool>,
    /// Model variant (`auto` or a name from `genrepi info`).
    pub variant: Option<String>,
    /// An audio file instead of the device (a kiosk demo without a
    /// microphone; tests): it runs the same pipeline and ends with the file.
    pub input: Option<PathBuf>,
    /// Pace of `input`, × real time; 0: as fast as the model allows.
    pub speed: Option<f64>,
}

impl ListenConfig {
    /// Reads a TOML config file.
    /// Only a regular file of at most [`limits::TEXT_BYTES`] is read.
    pub fn load(path: &Path) -> Result<ListenConfig> {
        let text = limits::read_text(path)?;
        Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Parses a config file's text (unknown keys are an error).
    pub fn parse(text: &str) -> std::result::Result<ListenConfig, String> {
        toml::from_str(text).map_err(|e| e.message().replace('\n', " "))
    }

    /// `self` with every setting that `over` has replaced by `over`'s.
    pub fn overlay(self, over: &ListenConfig) -> ListenConfig {
        macro_rules! pick {
            ($($f:ident),*) => { ListenConfig { $($f: over.$f.clone().or(self.$f)),* } };
        }
        pick!(
            model,
            threads,
            device,
            rate,
            channels,
            format,
            hop,
            queue,
            deadline,
            smoothing,
            hysteresis,
            silence_db,
            stall_timeout,
            http,
            max_memory,
            json,
            variant,
            input,
            speed
        )
    }
}

/// Settings checked and converted.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Model manifest (after lookup).
    pub model: PathBuf,
    /// Matrix-product threads.
    pub threads: usize,
    /// Capture settings.
    pub capture: CaptureSettings,
    /// Scheduler settings.
    pub live: LiveSettings,
    /// Status server address.
    pub http: Option<String>,
    /// Memory limit in bytes.
    pub max_memory: Option<u64>,
    /// JSON lines.
    pub json: bool,
    /// Model variant.
    pub variant: crate::model::Choice,
    /// An audio file instead of the device, and its pace (0: unpaced).
    pub input: Option<(PathBuf, f64)>,
}

/// Checks and converts `cfg`.
///
/// Every value is checked against its range in [`limits`] here, before any
/// model loads or any pipeline is touched: a reload with a bad value
/// changes nothing.
pub fn resolve(cfg: &ListenConfig) -> Result<Resolved> {
    let defaults = LiveSettings::default();
    let config = |e: String| Error::Config(e);
    let hop = match &cfg.hop {
        None => defaults.hop,
        Some(h) => h.parse::<Hop>().map_err(config)?,
    };
    let seconds = |limit: limits::Limit<f64>, v: Option<f64>| -> Result<Option<Duration>> {
        v.map(|x| limit.check(x).map(Duration::from_secs_f64))
            .transpose()
            .map_err(config)
    };
    let deadline = seconds(limits::DEADLINE_SECONDS, cfg.deadline)?;
    let stall = seconds(limits::STALL_SECONDS, cfg.stall_timeout)?;
    let check = |limit: limits::Limit<usize>, v: Option<usize>, default: usize| {
        limit.check(v.unwrap_or(default)).map_err(config)
    };
    let queue = check(limits::QUEUE, cfg.queue, defaults.queue)?;
    let threads = check(limits::THREADS, cfg.threads, 1)?;
    let smoothing = check(limits::SMOOTHING, cfg.smoothing, defaults.smoothing)?;
    let hysteresis = limits::HYSTERESIS
        .check(cfg.hysteresis.unwrap_or(defaults.hysteresis))
        .map_err(config)?;
    let silence_db = limits::SILENCE_DB
        .check(cfg.silence_db.unwrap_or(defaults.silence_db))
        .map_err(config)?;
    let rate = cfg
        .rate
        .map(|r| limits::AUDIO_RATE.check(r))
        .transpose()
        .map_err(config)?;
    if let Some(c) = cfg.channels {
        limits::AUDIO_CHANNELS.check(c as usize).map_err(config)?;
    }
    let sample_format = cfg
        .format
        .as_deref()
        .map(parse_sample_format)
        .transpose()
        .map_err(config)?;
    Ok(Resolved {
        model: crate::model::locate(cfg.model.as_deref())?,
        threads,
        capture: CaptureSettings {
            device: cfg.device.clone(),
            sample_rate: rate,
            channels: cfg.channels,
            sample_format,
            stall_timeout: stall.unwrap_or(CaptureSettings::default().stall_timeout),
            ..CaptureSettings::default()
        },
        live: LiveSettings {
            hop,
            queue,
            deadline,
            smoothing,
            hysteresis,
            silence_db,
        },
        http: cfg.http.clone(),
        max_memory: cfg.max_memory.as_deref().map(parse_size).transpose()?,
        json: cfg.json.unwrap_or(false),
        variant: match cfg.variant.as_deref() {
            None => crate::model::Choice::Auto,
            Some(v) => v.parse().map_err(config)?,
        },
        input: match &cfg.input {
            None => None,
            Some(path) => Some((
                path.clone(),
                limits::SPEED
                    .check(cfg.speed.unwrap_or(1.0))
                    .map_err(config)?,
            )),
        },
    })
}

/// Parses `256M`, `1.5G`, `900k` or plain bytes (binary multiples).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'B' => 1,
                _ => 0,
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if mult > 0 && v > 0.0 && v.is_finite() => {
            let bytes = v * mult as f64;
            // Checked as a float first: the cast to u64 saturates.
            if bytes > *limits::MAX_MEMORY.range.end() as f64 {
                return Err(Error::Config(format!("max-memory {s} is outside 1M..=1T")));
            }
            limits::MAX_MEMORY
                .check(bytes as u64)
                .map_err(|_| Error::Config(format!("max-memory {s} is outside 1M..=1T")))
        }
        _ => Err(Error::Config(format!(
            "max-memory '{s}' is not a size like 256M, 1G or 900K"
        ))),
    }
}

/// The memory plan of a listener, decided before the device opens.
#[derive(Debug, Clone, Copy)]
pub struct MemoryEstimate {
    /// What the model holds.
    pub model: ModelMemory,
    /// Working memory of one inference: tract's scratch (im2col and packed
    /// inputs) on top of the live tensors; measured at 8x the peak of live
    /// tensors on ResNet-152 (+18 MB at the first inference for 2.1 MiB).
    pub working: u64,
    /// Weights as tract holds them once optimised: twice the file (measured
    /// on ResNet-152: loading its 232 MB file adds 458 MB of RSS; the
    /// operators keep the weights and a copy packed for the matmul kernels).
    pub weights: u64,
    /// Capture ring, mel stream, window queue and the classifier's buffers.
    pub buffers: u64,
    /// Program, libraries, thread stacks and allocator slack (measured).
    pub base: u64,
}

/// The program itself: binary, libraries, tract's runtime, thread stacks
/// and allocator slack. Measured on x86-64 only: `listen` with the tiny
/// model peaks at 23 MB (`scripts/listen-fifo.sh`), rounded up.
const BASE_BYTES: u64 = 24 << 20;

impl MemoryEstimate {
    /// Estimated peak resident bytes.
    pub fn total(&self) -> u64 {
        self.weights + self.working + self.buffers + self.base
    }

    /// One line for `info` and errors.
    pub fn describe(&self) -> String {
        let mb = |b: u64| b as f64 / (1 << 20) as f64;
        format!(
            "{:.0} MiB = weights {:.0} MiB (2 x the {:.0} MiB file{}: as loaded and packed for the \
             matmul kernels) + inference {:.1} MiB (8 x {:.1} MiB of live tensors) \
             + buffers {:.1} MiB + program {:.0} MiB",
            mb(self.total()),
            mb(self.weights),
            mb(self.model.file),
            if self.model.widened > 0 {
                format!(
                    " + {:.0} MiB of FP16 weights widened",
                    mb(self.model.widened)
                )
            } else {
                String::new()
            },
            mb(self.working),
            mb(self.model.activations),
            mb(self.buffers),
            mb(self.base)
        )
    }
}

/// Estimates what listening with `model` and `settings` will hold.
pub fn estimate_memory(
    model: &Model,
    capture: &CaptureSettings,
    live: &LiveSettings,
) -> MemoryEstimate {
    let m = model.memory_plan();
    let f = &model.manifest().features;
    let window = (f.n_mels * f.frames * 4) as u64;
    // The capture ring at the device's rate; assume 48 kHz stereo f32 (the
    // largest common format) when not set.
    let rate = capture.sample_rate.unwrap_or(48_000) as f64;
    let channels = capture.channels.unwrap_or(2) as f64;
    let ring = (capture.ring_seconds * rate * channels * 4.0) as u64;
    let mel = window * 2 + (f.n_fft * 16) as u64;
    let classifier = window * 2 + model.input_len() as u64 * 4;
    let queue = window * live.queue.max(1) as u64;
    MemoryEstimate {
        model: m,
        weights: (m.file + m.widened) * 2,
        working: m.activations * 8,
        buffers: ring + mel + classifier + queue,
        base: BASE_BYTES,
    }
}

/// Process-wide signal flags.
struct Signals {
    term: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        use signal_hook::flag;
        let term = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        let fail = |cause: std::io::Error| Error::Spawn {
            what: "signal handler",
            cause,
        };
        // Registered first, so it sees the flag before this SIGINT sets it:
        // a second SIGINT exits at once.
        flag::register_conditional_shutdown(SIGINT, 130, term.clone()).map_err(fail)?;
        flag::register(SIGINT, term.clone()).map_err(fail)?;
        flag::register(SIGTERM, term.clone()).map_err(fail)?;
        flag::register(SIGHUP, reload.clone()).map_err(fail)?;
        Ok(Signals { term, reload })
    }
}

/// Loads the model (the first variant whose memory plan fits
/// `max_memory`, with `--variant auto`) and checks the memory plan.
fn prepare(settings: &Resolved) -> Result<(Arc<Model>, MemoryEstimate)> {
    let options = crate::model::LoadOptions {
        threads: settings.threads,
        variant: settings.variant.clone(),
    };
    let model = Model::load_with(&settings.model, &options, |model| {
        let estimate = estimate_memory(model, &settings.capture, &settings.live);
        match settings.max_memory {
            Some(limit) if estimate.total() > limit => Err(format!(
                "--max-memory {:.0} MiB is too small for {}: the plan needs {}",
                limit as f64 / (1 << 20) as f64,
                settings.model.display(),
                estimate.describe()
            )),
            _ => Ok(()),
        }
    })?;
    let estimate = estimate_memory(&model, &settings.capture, &settings.live);
    log::info!("memory plan: {}", estimate.describe());
    Ok((model, estimate))
}

/// Where `listen` gets its audio: a real device, or (for benchmarks and
/// tests) any [`Opener`].
pub type OpenerFactory = Box<dyn Fn(&Resolved) -> Box<dyn Opener>>;

/// How often the main thread looks at signals, the pipeline and loads.
const POLL: Duration = Duration::from_millis(20);

/// A model load on a thread of its own, so that signals are still
/// answered while tract parses and optimises (seconds for ResNet-152).
struct Loading(std::sync::mpsc::Receiver<Result<(Resolved, Arc<Model>)>>);

impl Loading {
    /// Reads the settings with `load_config` and loads their model.
    fn start(load_config: Arc<dyn Fn() -> Result<Resolved> + Send + Sync>) -> Result<Loading> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("loader".into())
            .spawn(move || {
                let result = crate::error::contain("the reload", || {
                    let settings = load_config()?;
                    let (model, _) = prepare(&settings)?;
                    Ok((settings, model))
                });
                let _ = tx.send(result);
            })
            .map_err(|cause| Error::Spawn {
                what: "loader",
                cause,
            })?;
        Ok(Loading(rx))
    }

    /// The result, once the load has finished.
    fn poll(&self) -> Option<Result<(Resolved, Arc<Model>)>> {
        match self.0.try_recv() {
            Ok(r) => Some(r),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(Err(Error::Panic {
                what: "the reload".into(),
                detail: "the loader thread ended without a result".into(),
            })),
        }
    }
}

/// What became of standard output, written by the sink.
#[derive(Default)]
struct OutputState {
    closed: AtomicBool,
    error: Mutex<Option<std::io::Error>>,
}

impl OutputState {
    fn record(&self, e: std::io::Error) {
        if let (true, Ok(mut slot)) = (
            e.kind() != std::io::ErrorKind::BrokenPipe,
            self.error.lock(),
        ) {
            slot.get_or_insert(e);
        }
        self.closed.store(true, Ordering::Relaxed);
    }
}

/// Runs the listener until SIGINT/SIGTERM (or until a synthetic opener's
/// input ends). `cli` overrides `config_file`'s settings.
///
/// The model is loaded, and reloaded on SIGHUP, on a loader thread while
/// this thread keeps polling: SIGTERM is honoured within [`POLL`] in every
/// state, and a reload replaces the running pipeline only once its
/// settings and model are complete and valid. A SIGHUP during a reload
/// queues one more.
pub fn run(
    cli: &ListenConfig,
    config_file: Option<&Path>,
    opener: Option<OpenerFactory>,
) -> Result<()> {
    let signals = Signals::register()?;
    let (cli, config_file) = (cli.clone(), config_file.map(Path::to_path_buf));
    let load_config: Arc<dyn Fn() -> Result<Resolved> + Send + Sync> = Arc::new(move || {
        let file = match &config_file {
            Some(p) => ListenConfig::load(p)?,
            None => ListenConfig::default(),
        };
        resolve(&file.overlay(&cli))
    });
    // Settings are checked before the first load, so a bad value is
    // reported at once rather than after loading a model.
    load_config()?;
    let first = Loading::start(load_config.clone())?;
    let (mut settings, mut model) = loop {
        if signals.term.load(Ordering::Relaxed) {
            log::info!("stopping while the model loads");
            return Ok(());
        }
        if let Some(r) = first.poll() {
            break r?;
        }
        std::thread::sleep(POLL);
    };
    let make_opener = opener.unwrap_or_else(|| {
        Box::new(|s: &Resolved| match &s.input {
            Some((path, speed)) => Box::new(FileOpener::new(path, *speed)) as Box<dyn Opener>,
            None => Box::new(DeviceOpener(s.capture.clone())) as Box<dyn Opener>,
        })
    });

    let counters = Arc::new(Counters::default());
    let status = Arc::new(Mutex::new(Status::default()));
    let started = Instant::now();
    let server = match &settings.http {
        Some(addr) => {
            let s = StatusServer::start(
                addr,
                Board {
                    status: status.clone(),
                    counters: counters.clone(),
                    started,
                },
            )?;
            log::info!("status page on http://{}/", s.addr);
            Some(s)
        }
        None => None,
    };
    let output = Arc::new(OutputState::default());

    // `fail_fast`: a device that cannot be opened ends the pipeline with the
    // error (at start-up); otherwise it is retried with backoff (reloads).
    let start = |settings: &Resolved, model: &Arc<Model>, fail_fast: bool| -> Result<Pipeline> {
        {
            let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
            s.model = model.manifest().name.clone();
            s.device = match &settings.input {
                Some((path, _)) => path.display().to_string(),
                None => settings
                    .capture
                    .device
                    .clone()
                    .unwrap_or_else(|| "default input".into()),
            };
        }
        let labels = model.labels().to_vec();
        let format = if settings.json {
            Format::Json
        } else {
            Format::Text
        };
        let (status, output) = (status.clone(), output.clone());
        let frame_s = model.manifest().features.frame_seconds();
        let counters_for_sink = counters.clone();
        let sink = Box::new(move |v: &Verdict<'_>| {
            let line = live_line(format, &labels, v);
            let mut out = std::io::stdout().lock();
            if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
                output.record(e);
            }
            let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
            s.level_db = v.level_db;
            s.latency_ms = v.latency.as_secs_f64() * 1e3;
            s.updated = humantime::format_rfc3339_millis(v.ts).to_string();
            s.hop_s = counters_for_sink.hop_frames.load(Ordering::Relaxed) as f64 * frame_s;
            match &v.result {
                None => {
                    s.genre = Some("silence".into());
                    s.probability = 0.0;
                    s.probs.clear();
                }
                Some(c) => {
                    s.genre = Some(labels[c.smoothed].clone());
                    s.probability = c.smoothed_p;
                    s.inference_ms = c.inference.as_secs_f64() * 1e3;
                    s.probs = labels
                        .iter()
                        .cloned()
                        .zip(c.probs.iter().copied())
                        .collect();
                }
            }
        });
        Pipeline::start(
            &settings.live,
            model.classifier()?,
            make_opener(settings),
            counters.clone(),
            sink,
            fail_fast,
        )
    };

    let mut pipeline = start(&settings, &model, true)?;
    let mut reload: Option<Loading> = None;
    let mut failure: Option<Error> = None;
    loop {
        std::thread::sleep(POLL);
        if signals.term.load(Ordering::Relaxed) {
            log::info!("stopping");
            break;
        }
        if output.closed.load(Ordering::Relaxed) {
            match output.error.lock().ok().and_then(|mut e| e.take()) {
                Some(e) => {
                    failure = Some(Error::Write {
                        path: "stdout".into(),
                        detail: e.to_string(),
                    });
                }
                None => log::info!("output closed; stopping"),
            }
            break;
        }
        if server.as_ref().is_some_and(|s| s.finished()) {
            failure = Some(Error::StatusServer {
                addr: server.as_ref().map(|s| s.addr.clone()).unwrap_or_default(),
                detail:
                    "the server thread stopped; exiting so the service manager restarts genrepi"
                        .into(),
            });
            break;
        }
        if pipeline.finished() {
            failure = pipeline.take_failure();
            break;
        }
        if let Ok(mut s) = status.lock() {
            let state = *pipeline.state.lock().unwrap_or_else(|e| e.into_inner());
            s.state = match state {
                CaptureState::Opening => "opening",
                CaptureState::Running => "running",
                CaptureState::Retrying => "retrying",
                CaptureState::Stopped => "stopped",
            }
            .into();
        }
        if reload.is_none() && signals.reload.swap(false, Ordering::Relaxed) {
            log::info!("SIGHUP: reloading config and model");
            match Loading::start(load_config.clone()) {
                Ok(l) => reload = Some(l),
                Err(e) => log::error!("reload failed, keeping the running model and settings: {e}"),
            }
        }
        let Some(result) = reload.as_ref().and_then(Loading::poll) else {
            continue;
        };
        reload = None;
        match result {
            Err(e) => log::error!("reload failed, keeping the running model and settings: {e}"),
            Ok((new_settings, new_model)) => {
                if new_settings.http != settings.http {
                    log::warn!("a new --http address takes effect only after a restart");
                }
                // Stop first: most capture devices open only once.
                if !pipeline.stop(Duration::from_millis(800)) {
                    log::warn!("the previous capture thread is still blocked in the device");
                }
                pipeline = match start(&new_settings, &new_model, false) {
                    Ok(p) => {
                        settings = new_settings;
                        model = new_model;
                        log::info!("reloaded {}", model.manifest().name);
                        p
                    }
                    Err(e) => {
                        log::error!("reload failed, restarting with the previous settings: {e}");
                        start(&settings, &model, false)?
                    }
                };
            }
        }
    }
    let t = Instant::now();
    if !pipeline.stop(Duration::from_millis(800)) {
        log::warn!(
            "capture thread still blocked in the device after {:.0?}; exiting without it",
            t.elapsed()
        );
    }
    if let Some(server) = server {
        server.stop();
    }
    let _ = std::io::stdout().flush();
    log::info!(
        "stopped in {:.0?}: {} windows, {} verdicts, {} dropped, {} overruns, {} device reopens",
        t.elapsed(),
        counters.windows.load(Ordering::Relaxed),
        counters.verdicts.load(Ordering::Relaxed),
        counters.dropped(),
        counters.overruns.load(Ordering::Relaxed),
        counters.reopens.load(Ordering::Relaxed)
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("9000k").unwrap(), 9000 << 10);
        assert_eq!(parse_size("2048K").unwrap(), 2 << 20);
        assert!(parse_size("4096").is_err());
        assert!(parse_size("1e300G").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1M").is_err());
        assert!(parse_size("12Q").is_err());
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../deploy/genrepi.toml");
        let mut cfg: ListenConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.http.as_deref(), Some("127.0.0.1:8080"));
        // The example's model lives under /opt; resolve against the repo's.
        cfg.model = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/models/default.toml").into());
        let r = resolve(&cfg).unwrap();
        assert_eq!(r.live.hop, Hop::Fixed(1.0));
        assert_eq!(r.max_memory, Some(768 << 20));
        assert_eq!(r.threads, 2);
    }

    #[test]
    fn command_line_overrides_the_file() {
        let file: ListenConfig = toml::from_str("hop = \"2.0\"\nsilence_db = -50.0").unwrap();
        let cli = ListenConfig {
            hop: Some("auto".into()),
            ..ListenConfig::default()
        };
        let merged = file.overlay(&cli);
        assert_eq!(merged.hop.as_deref(), Some("auto"));
        assert_eq!(merged.silence_db, Some(-50.0));
        assert!(toml::from_str::<ListenConfig>("colour = 1").is_err());
    }
}
