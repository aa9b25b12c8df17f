//! genrepi: streaming music-genre detection.
//!
//! Audio from a file or a microphone becomes mono at 22050 Hz,
//! then rolling log-mel windows, then genre probabilities from a tract-run
//! ONNX model. The stages, one module each:
//!
//! - [`audio`]: sources behind one trait, downmix and resampling;
//! - [`features`]: the librosa-compatible streaming mel front-end;
//! - [`model`]: manifest, tract plan, per-worker classifiers;
//! - [`frontend`]: drives one source through conditioning and the mel
//!   stream into windows (and, for replay, the model) — the path every input
//!   shares;
//! - [`scheduler`]: the bounded-memory live scheduler for microphones and
//!   paced files (capture and inference threads, window queue, smoothing);
//! - [`http`]: the optional status page, JSON and Prometheus metrics;
//! - [`config`]: `listen`'s settings, from a file and the command line,
//!   checked once;
//! - [`kiosk`]: `listen` as a service: signals, loads and reloads, status;
//! - [`output`]: text and JSON lines;
//! - [`dataset`] and [`eval`]: GTZAN-layout folders, feature export, accuracy;
//! - [`limits`]: the valid range of every size, rate and count from outside;
//! - [`platform`]: the CPU features that decide tract's kernels;
//! - [`progress`]: progress bars on a terminal's stderr for long work;
//! - [`bench`](mod@bench): what each model variant costs here, cached for `--variant auto`.

pub mod audio;
pub mod bench;
pub mod config;
pub mod dataset;
pub mod error;
pub mod eval;
pub mod features;
pub mod frontend;
pub mod http;
pub mod kiosk;
pub mod limits;
pub mod model;
pub mod output;
pub mod platform;
pub mod progress;
pub mod scheduler;

pub use error::{Error, Result};
