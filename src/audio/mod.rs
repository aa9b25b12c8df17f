//! Audio sources and conversion to the front-end's format.
//!
//! Owns where samples come from and how they become mono `f32` at the
//! model's rate. Every source — a decoded file, a paced replay of one, and
//! a microphone's capture ring — implements [`AudioSource`], so the consumer in
//! [`crate::frontend`] cannot tell them apart: every replay test is also a
//! test of the live path downstream of the source. [`opener`] says what the
//! live scheduler opens (a device, or a file standing in for one).

pub mod capture;
mod convert;
mod file;
pub mod opener;

pub use capture::{CaptureSettings, RingSource, RingStats, RingWriter};
pub use convert::Conditioner;
pub use file::FileSource;
pub use opener::{DeviceOpener, FileOpener, Opener, Session};

use std::time::{Duration, Instant};

use crate::error::Result;

/// Sample rate and channel count of a source's interleaved stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFormat {
    /// Frames per second, in Hz.
    pub sample_rate: u32,
    /// Interleaved channels per frame.
    pub channels: usize,
}

/// A stream of interleaved `f32` samples in `[-1, 1]`.
pub trait AudioSource {
    /// The stream's format; fixed for the source's life.
    fn format(&self) -> StreamFormat;

    /// A name for messages: the file path or device name.
    fn name(&self) -> &str;

    /// Replaces `buf`'s contents with the next chunk of interleaved samples
    /// (whole frames). Returns `Ok(false)`, with `buf` empty, at the end.
    /// Reuses `buf`'s capacity: steady state does not allocate.
    fn read_chunk(&mut self, buf: &mut Vec<f32>) -> Result<bool>;
}

/// Releases another source's chunks no faster than real time (or `speed`
/// times real time).
///
/// For replaying a file as if it were a microphone: chunk `n` is returned
/// once the wall clock has passed the stream time at its end. It sleeps in
/// slices of at most 20 ms and returns at once when its stop flag is
/// raised, so a paced file never delays a shutdown.
pub struct Paced<S> {
    inner: S,
    started: Option<Instant>,
    frames: u64,
    speed: f64,
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl<S: AudioSource> Paced<S> {
    /// Wraps `inner` at real time; the clock starts at the first read.
    pub fn new(inner: S) -> Self {
        Self::with_speed(inner, 1.0, None)
    }

    /// Wraps `inner` at `speed` times real time (> 0), giving up the wait
    /// when `stop` is raised.
    pub fn with_speed(
        inner: S,
        speed: f64,
        stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    ) -> Self {
        Paced {
            inner,
            started: None,
            frames: 0,
            speed,
            stop,
        }
    }
}

impl<S: AudioSource> AudioSource for Paced<S> {
    fn format(&self) -> StreamFormat {
        self.inner.format()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn read_chunk(&mut self, buf: &mut Vec<f32>) -> Result<bool> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let format = self.inner.format();
        // A chunk is available once its last frame has been "recorded".
        let more = self.inner.read_chunk(buf)?;
        self.frames += (buf.len() / format.channels.max(1)) as u64;
        let due = Duration::from_secs_f64(
            self.frames as f64 / format.sample_rate as f64 / self.speed.max(1e-6),
        );
        while let Some(wait) = due.checked_sub(started.elapsed()) {
            if self
                .stop
                .as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
            {
                break;
            }
            std::thread::sleep(wait.min(Duration::from_millis(20)));
        }
        Ok(more)
    }
}

/// Samples already in memory, handed out in chunks of chosen sizes.
///
/// For tests and benchmarks: the chunk sizes cycle, so the same audio can
/// arrive whole, frame by frame, or in irregular pieces.
pub struct MemorySource {
    name: String,
    format: StreamFormat,
    samples: Vec<f32>,
    chunk_frames: Vec<usize>,
    pos: usize,
    turn: usize,
}

impl MemorySource {
    /// `samples` interleaved in `format`, released `chunk_frames[i % len]`
    /// frames at a time (an empty list releases everything at once).
    pub fn new(
        name: &str,
        format: StreamFormat,
        samples: Vec<f32>,
        chunk_frames: Vec<usize>,
    ) -> Self {
        MemorySource {
            name: name.to_string(),
            format,
            samples,
            chunk_frames,
            pos: 0,
            turn: 0,
        }
    }
}

impl AudioSource for MemorySource {
    fn format(&self) -> StreamFormat {
        self.format
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn read_chunk(&mut self, buf: &mut Vec<f32>) -> Result<bool> {
        buf.clear();
        if self.pos >= self.samples.len() {
            return Ok(false);
        }
        let frames = match self.chunk_frames.len() {
            0 => usize::MAX,
            n => self.chunk_frames[self.turn % n].max(1),
        };
        self.turn += 1;
        let end = self.samples.len().min(
            self.pos
                .saturating_add(frames.saturating_mul(self.format.channels)),
        );
        buf.extend_from_slice(&self.samples[self.pos..end]);
        self.pos = end;
        Ok(true)
    }
}
