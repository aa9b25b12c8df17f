//! [`Pipeline`]: starts the capture and inference threads around one window
//! queue, and stops them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::capture::CaptureLoop;
use super::inference::{InferenceLoop, Sink};
use super::{Counters, Hop, LiveSettings, Overflow, Smoother, WindowQueue};
use crate::audio::Opener;
use crate::error::{Error, Result};
use crate::frontend::Frontend;
use crate::model::Classifier;

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

impl Pipeline {
    /// Starts both threads. `sink` receives every verdict on the inference
    /// thread, in order. With `fail_fast`, a first open that fails ends the
    /// pipeline (see [`Pipeline::take_failure`]); otherwise it is retried
    /// like any later failure. Every buffer is allocated here, once.
    pub fn start(
        settings: &LiveSettings,
        classifier: Classifier,
        opener: Box<dyn Opener>,
        counters: Arc<Counters>,
        sink: Sink,
        fail_fast: bool,
    ) -> Result<Pipeline> {
        let cfg = classifier.model().manifest().features.clone();
        let labels = classifier.model().labels().len();
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
        let frontend = Frontend::live(&cfg, counters.hop_frames.clone(), opener.finite())?;
        let overflow = if opener.realtime() {
            Overflow::DropOldest
        } else {
            Overflow::Wait
        };
        let capture = CaptureLoop {
            opener,
            frontend,
            cfg: cfg.clone(),
            queue: queue.clone(),
            overflow,
            counters: counters.clone(),
            state: state.clone(),
            stop: stop.clone(),
            failure: failure.clone(),
            fail_fast,
            seq: 0,
        };
        let inference = InferenceLoop {
            classifier,
            settings: settings.clone(),
            cfg,
            queue: queue.clone(),
            overflow,
            counters,
            stop: stop.clone(),
            sink,
            window: vec![0.0; window_len],
            smoother: Smoother::new(labels, settings.smoothing, settings.hysteresis),
            mean_inference: None,
        };
        let capture = spawn("capture", move || capture.run())?;
        let inference = match spawn("inference", move || inference.run()) {
            Ok(h) => h,
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                queue.close();
                return Err(e);
            }
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

fn spawn(what: &'static str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(what.into())
        .spawn(body)
        .map_err(|cause| Error::Spawn { what, cause })
}
