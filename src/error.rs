//! The library's error type.
//!
//! Every variant names what failed (a file, a device, a model) and why, in
//! one line, so the binary can print it as is. Nothing in the library panics
//! on bad input; it returns one of these.

use std::path::PathBuf;

/// Errors from decoding, feature extraction, model loading and inference.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{}: cannot read: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        cause: std::io::Error,
    },
    /// A dataset folder is not in GTZAN layout.
    #[error("{}: {detail}", path.display())]
    Dataset {
        /// The folder.
        path: PathBuf,
        /// What is missing.
        detail: String,
    },
    /// A file could not be written.
    #[error("{}: cannot write: {detail}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The container or codec is not one genrepi can decode.
    #[error("{what}: unsupported or unrecognised audio ({detail})")]
    UnsupportedAudio {
        /// File or device.
        what: String,
        /// What was not recognised.
        detail: String,
    },
    /// The audio data is damaged.
    #[error("{what}: corrupt audio: {detail}")]
    CorruptAudio {
        /// File or device.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// The file ends before the length its header declares.
    #[error("{what}: truncated: header declares {declared} frames, only {decoded} decoded")]
    Truncated {
        /// File.
        what: String,
        /// Frames the header promises.
        declared: u64,
        /// Frames actually decoded.
        decoded: u64,
    },
    /// The source produced no samples at all.
    #[error("{what}: no audio samples")]
    Empty {
        /// File or device.
        what: String,
    },
    /// A sample was NaN or infinite.
    #[error("{what}: non-finite sample (NaN or infinity) at {seconds:.3} s")]
    NonFinite {
        /// File or device.
        what: String,
        /// Position of the first bad sample, in seconds from the start.
        seconds: f64,
    },
    /// An audio device could not be found, opened or kept running.
    #[error("{device}: {detail}")]
    Device {
        /// The device's name (or what was asked for).
        device: String,
        /// What went wrong.
        detail: String,
    },
    /// A manifest is missing, unreadable or inconsistent.
    #[error("{}: invalid model manifest: {detail}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The ONNX file does not match its manifest, or tract cannot load it.
    #[error("{}: {detail}", path.display())]
    Model {
        /// The ONNX file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// tract failed while running a window.
    #[error("inference failed: {0}")]
    Inference(String),
    /// A parameter is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
