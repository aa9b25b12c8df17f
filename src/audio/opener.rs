//! What the live scheduler's capture thread opens: a microphone through
//! cpal, or an audio file standing in for one.
//!
//! An [`Opener`] is asked for a [`Session`] each time the capture thread
//! (re)starts reading; it says whether its input runs on its own clock (a
//! device, a file paced at real time), which decides the window queue's
//! drop policy, and whether it is a finite recording.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{AudioSource, CaptureSettings, FileSource, Paced, RingStats};
use crate::error::Result;

/// One open input: the source to read, the guard that keeps it alive
/// (a cpal stream), and its ring's counters.
pub struct Session {
    /// Dropped after the source, when the session ends.
    pub guard: Box<dyn Send>,
    /// Where the samples come from.
    pub source: Box<dyn AudioSource + Send>,
    /// Overruns of the capture ring (zero for files).
    pub stats: Arc<RingStats>,
}

/// What the capture thread opens: a device, a file, or a synthetic producer
/// for benchmarks.
pub trait Opener: Send + 'static {
    /// Opens a session that stops reading when `stop` is raised.
    fn open(&mut self, stop: Arc<AtomicBool>) -> Result<Session>;

    /// Whether the input has ended for good (a finite source); checked
    /// after a session ends. Devices never end.
    fn exhausted(&self) -> bool {
        false
    }

    /// Whether the input runs on its own clock and cannot wait for the
    /// model (a device, a paced file): a full window queue then drops its
    /// oldest window, and a window that waited past the deadline is
    /// skipped. Input that can wait is read as fast as the model takes it.
    fn realtime(&self) -> bool {
        true
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
    path: PathBuf,
    speed: f64,
    opened: bool,
}

impl FileOpener {
    /// `path` at `speed` × real time; 0: as fast as the model allows.
    pub fn new(path: &Path, speed: f64) -> Self {
        FileOpener {
            path: path.to_path_buf(),
            speed,
            opened: false,
        }
    }
}

impl Opener for FileOpener {
    fn open(&mut self, stop: Arc<AtomicBool>) -> Result<Session> {
        self.opened = true;
        let file = FileSource::open(&self.path)?;
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
            Box::new(Paced::with_speed(file, self.speed, Some(stop)))
        } else {
            Box::new(file)
        };
        Ok(Session {
            guard: Box::new(()),
            source,
            stats: Arc::new(RingStats::default()),
        })
    }

    fn exhausted(&self) -> bool {
        self.opened
    }

    fn realtime(&self) -> bool {
        self.speed > 0.0
    }

    fn finite(&self) -> bool {
        true
    }
}

/// Opens a real input device through cpal.
pub struct DeviceOpener(pub CaptureSettings);

impl Opener for DeviceOpener {
    fn open(&mut self, stop: Arc<AtomicBool>) -> Result<Session> {
        let (capture, source) = super::capture::open(&self.0, stop)?;
        log::info!(
            "capturing from {}: {} Hz, {} ch, {}",
            capture.name,
            capture.format.sample_rate,
            capture.format.channels,
            capture.sample_format
        );
        let stats = capture.stats.clone();
        Ok(Session {
            guard: Box::new(capture),
            source,
            stats,
        })
    }
}
