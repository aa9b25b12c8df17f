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

use crate::audio::{DeviceOpener, FileOpener, Opener};
use crate::config::{ListenConfig, Resolved, resolve};
use crate::error::{Error, Result};
use crate::http::{Board, Status, StatusServer};
use crate::model::{MemoryEstimate, Model, estimate_memory};
use crate::output::{Format, OutputState, live_sink};
use crate::scheduler::{CaptureState, Counters, Pipeline};

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
            Some(limit) if estimate.total() > limit => Err(Error::MemoryPlan {
                model: settings.model.clone(),
                limit_mib: limit as f64 / (1 << 20) as f64,
                plan: estimate.describe(),
            }),
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

/// How often the main thread looks at signals, the pipeline and loads:
/// SIGTERM is honoured within this, whatever the listener is doing.
const POLL: Duration = Duration::from_millis(20);

/// How long a stop waits for the capture thread, which may be blocked in a
/// device call, before leaving it behind (systemd's stop timeout is 90 s;
/// a kiosk restart should take well under a second).
const STOP_WAIT: Duration = Duration::from_millis(800);

/// Reads the settings and loads their model.
type ConfigLoader = Arc<dyn Fn() -> Result<Resolved> + Send + Sync>;

/// A model load on a thread of its own, so that signals are still
/// answered while tract parses and optimises (seconds for ResNet-152).
struct Loading(std::sync::mpsc::Receiver<Result<(Resolved, Arc<Model>)>>);

impl Loading {
    /// Reads the settings with `load_config` and loads their model.
    fn start(load_config: ConfigLoader) -> Result<Loading> {
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

/// Runs the listener until SIGINT/SIGTERM (or until a finite input ends).
/// `cli` overrides `config_file`'s settings.
///
/// The model is loaded, and reloaded on SIGHUP, on a loader thread while
/// this thread keeps polling: SIGTERM is honoured within `POLL` (20 ms) in every
/// state, and a reload replaces the running pipeline only once its
/// settings and model are complete and valid. A SIGHUP during a reload
/// queues one more.
pub fn run(
    cli: &ListenConfig,
    config_file: Option<&Path>,
    opener: Option<OpenerFactory>,
) -> Result<()> {
    let signals = Signals::register()?;
    let load_config = config_loader(cli.clone(), config_file.map(Path::to_path_buf));
    // Settings are checked before the first load, so a bad value is
    // reported at once rather than after loading a model.
    load_config()?;
    let first = Loading::start(load_config.clone())?;
    let (settings, model) = loop {
        if signals.term.load(Ordering::Relaxed) {
            log::info!("stopping while the model loads");
            return Ok(());
        }
        if let Some(r) = first.poll() {
            break r?;
        }
        std::thread::sleep(POLL);
    };
    let mut service = Service::new(settings, model, opener, signals, load_config)?;
    let pipeline = service.start(true)?;
    let (pipeline, failure) = service.watch(pipeline)?;
    service.shut_down(pipeline);
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The config file (re)read and layered under the command line.
fn config_loader(cli: ListenConfig, config_file: Option<PathBuf>) -> ConfigLoader {
    Arc::new(move || {
        let file = match &config_file {
            Some(p) => ListenConfig::load(p)?,
            None => ListenConfig::default(),
        };
        resolve(&file.overlay(&cli)?)
    })
}

/// A listener's state between start and stop: the settings and model in
/// force, what outlives a reload (counters, status, status server, stdout),
/// and how to reload.
struct Service {
    settings: Resolved,
    model: Arc<Model>,
    make_opener: OpenerFactory,
    signals: Signals,
    load_config: ConfigLoader,
    counters: Arc<Counters>,
    status: Arc<Mutex<Status>>,
    server: Option<StatusServer>,
    output: Arc<OutputState>,
}

impl Service {
    fn new(
        settings: Resolved,
        model: Arc<Model>,
        opener: Option<OpenerFactory>,
        signals: Signals,
        load_config: ConfigLoader,
    ) -> Result<Service> {
        let make_opener = opener.unwrap_or_else(|| {
            Box::new(|s: &Resolved| match &s.input {
                Some((path, speed)) => Box::new(FileOpener::new(path, *speed)) as Box<dyn Opener>,
                None => Box::new(DeviceOpener(s.capture.clone())) as Box<dyn Opener>,
            })
        });
        let counters = Arc::new(Counters::default());
        let status = Arc::new(Mutex::new(Status::default()));
        let server = match &settings.http {
            Some(addr) => {
                let board = Board {
                    status: status.clone(),
                    counters: counters.clone(),
                    started: Instant::now(),
                };
                let s = StatusServer::start(addr, board)?;
                log::info!("status page on http://{}/", s.addr);
                Some(s)
            }
            None => None,
        };
        Ok(Service {
            settings,
            model,
            make_opener,
            signals,
            load_config,
            counters,
            status,
            server,
            output: Arc::new(OutputState::default()),
        })
    }

    /// Starts a pipeline with the settings and model in force. `fail_fast`:
    /// a device that cannot be opened ends the pipeline with the error (at
    /// start-up); otherwise it is retried with backoff (after a reload).
    fn start(&self, fail_fast: bool) -> Result<Pipeline> {
        let (settings, model) = (&self.settings, &self.model);
        {
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
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
        let format = if settings.json {
            Format::Json
        } else {
            Format::Text
        };
        let sink = live_sink(
            format,
            model.labels().to_vec(),
            self.output.clone(),
            self.status.clone(),
            self.counters.hop_frames.clone(),
            model.manifest().features.frame_seconds(),
        );
        Pipeline::start(
            &settings.live,
            model.classifier()?,
            (self.make_opener)(settings),
            self.counters.clone(),
            sink,
            fail_fast,
        )
    }

    /// Polls signals, stdout, the status server, the pipeline and reloads
    /// until something ends the run; returns the pipeline then running and
    /// why it ended, if that was a failure.
    fn watch(&mut self, mut pipeline: Pipeline) -> Result<(Pipeline, Option<Error>)> {
        let mut reload: Option<Loading> = None;
        loop {
            std::thread::sleep(POLL);
            if self.signals.term.load(Ordering::Relaxed) {
                log::info!("stopping");
                return Ok((pipeline, None));
            }
            if self.output.closed() {
                let failure = self.output.take_error().map(|e| Error::Write {
                    path: "stdout".into(),
                    detail: e.to_string(),
                });
                if failure.is_none() {
                    log::info!("output closed; stopping");
                }
                return Ok((pipeline, failure));
            }
            if let Some(server) = self.server.as_ref().filter(|s| s.finished()) {
                let failure = Error::StatusServer {
                    addr: server.addr.clone(),
                    detail:
                        "the server thread stopped; exiting so the service manager restarts genrepi"
                            .into(),
                };
                return Ok((pipeline, Some(failure)));
            }
            if pipeline.finished() {
                let failure = pipeline.take_failure();
                return Ok((pipeline, failure));
            }
            self.show_state(&pipeline);
            if reload.is_none() && self.signals.reload.swap(false, Ordering::Relaxed) {
                log::info!("SIGHUP: reloading config and model");
                match Loading::start(self.load_config.clone()) {
                    Ok(l) => reload = Some(l),
                    Err(e) => {
                        log::error!("reload failed, keeping the running model and settings: {e}")
                    }
                }
            }
            if let Some(result) = reload.as_ref().and_then(Loading::poll) {
                reload = None;
                pipeline = self.apply_reload(pipeline, result)?;
            }
        }
    }

    /// The capture state, for the status page.
    fn show_state(&self, pipeline: &Pipeline) {
        if let Ok(mut s) = self.status.lock() {
            let state = *pipeline.state.lock().unwrap_or_else(|e| e.into_inner());
            s.state = match state {
                CaptureState::Opening => "opening",
                CaptureState::Running => "running",
                CaptureState::Retrying => "retrying",
                CaptureState::Stopped => "stopped",
            }
            .into();
        }
    }

    /// Replaces the running pipeline with one of the reloaded settings and
    /// model; on any failure the previous ones stay (or start again).
    fn apply_reload(
        &mut self,
        pipeline: Pipeline,
        result: Result<(Resolved, Arc<Model>)>,
    ) -> Result<Pipeline> {
        let (settings, model) = match result {
            Ok(loaded) => loaded,
            Err(e) => {
                log::error!("reload failed, keeping the running model and settings: {e}");
                return Ok(pipeline);
            }
        };
        if settings.http != self.settings.http {
            log::warn!("a new --http address takes effect only after a restart");
        }
        // Stop first: most capture devices open only once.
        if !pipeline.stop(STOP_WAIT) {
            log::warn!("the previous capture thread is still blocked in the device");
        }
        let previous = (
            std::mem::replace(&mut self.settings, settings),
            std::mem::replace(&mut self.model, model),
        );
        match self.start(false) {
            Ok(p) => {
                log::info!("reloaded {}", self.model.manifest().name);
                Ok(p)
            }
            Err(e) => {
                log::error!("reload failed, restarting with the previous settings: {e}");
                (self.settings, self.model) = previous;
                self.start(false)
            }
        }
    }

    /// Stops the pipeline and the status server and logs the totals.
    fn shut_down(self, pipeline: Pipeline) {
        let t = Instant::now();
        if !pipeline.stop(STOP_WAIT) {
            log::warn!(
                "capture thread still blocked in the device after {:.0?}; exiting without it",
                t.elapsed()
            );
        }
        if let Some(server) = self.server {
            server.stop();
        }
        let _ = std::io::stdout().flush();
        let c = &self.counters;
        log::info!(
            "stopped in {:.0?}: {} windows, {} verdicts, {} dropped, {} overruns, {} device reopens",
            t.elapsed(),
            c.windows.load(Ordering::Relaxed),
            c.verdicts.load(Ordering::Relaxed),
            c.dropped(),
            c.overruns.load(Ordering::Relaxed),
            c.reopens.load(Ordering::Relaxed)
        );
    }
}
