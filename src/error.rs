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
    /// The file ends inside a packet or page (no length declared, or the
    /// declared length was met).
    #[error("{what}: truncated: the file ends inside a packet, {seconds:.3} s in")]
    CutOff {
        /// File.
        what: String,
        /// Audio decoded before the cut.
        seconds: f64,
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
    /// The model failed on one window of a file or stream (or gave an
    /// output that is not a probability); no verdict is made from it.
    #[error("{what}: window at {start_s:.2} s: {detail}")]
    Window {
        /// File or device.
        what: String,
        /// Start of the window, seconds from the stream's start.
        start_s: f64,
        /// What went wrong.
        detail: String,
    },
    /// tract failed while running a window.
    #[error("inference failed: {0}")]
    Inference(String),
    /// A setting (flag, config key, manifest field) that is refused.
    #[error("invalid configuration: {0}")]
    Setting(#[from] Invalid),
    /// A part of the configuration that cannot be set up (a resampler for
    /// those rates, a cache folder, no variant that fits).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A `listen` config file that cannot be used.
    #[error("invalid configuration: {}: {cause}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        cause: Invalid,
    },
    /// The model's memory plan is over `--max-memory`.
    #[error("--max-memory {limit_mib:.0} MiB is too small for {}: the plan needs {plan}", model.display())]
    MemoryPlan {
        /// The manifest.
        model: PathBuf,
        /// The limit, MiB.
        limit_mib: f64,
        /// The plan, as `MemoryEstimate::describe` puts it.
        plan: String,
    },
    /// Code working on one input panicked (a bug, most likely in a
    /// decoder); contained by [`contain`] so it costs only that input.
    #[error("{what}: internal error while processing it: {detail}")]
    Panic {
        /// The file or stream being processed.
        what: String,
        /// The panic's message and place.
        detail: String,
    },
    /// A thread could not be started.
    #[error("cannot start the {what} thread: {cause}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// The operating system's reason.
        cause: std::io::Error,
    },
    /// The status server could not start or stopped.
    #[error("status server {addr}: {detail}")]
    StatusServer {
        /// Its address.
        addr: String,
        /// What went wrong.
        detail: String,
    },
}

thread_local! {
    /// Set while [`contain`] runs: the panic hook then records the message
    /// here instead of printing it.
    static CONTAINED: std::cell::RefCell<Option<Option<String>>> =
        const { std::cell::RefCell::new(None) };
}

/// Installs the process's panic hook: a panic inside [`contain`] is
/// recorded for its error; any other panic is printed as Rust normally does.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let recorded = CONTAINED.with(|c| {
            let mut c = c.borrow_mut();
            match c.as_mut() {
                Some(slot) => {
                    let msg = info
                        .payload()
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| info.payload().downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    let place = info
                        .location()
                        .map(|l| format!(" at {}:{}", l.file(), l.line()))
                        .unwrap_or_default();
                    *slot = Some(format!("{msg}{place}"));
                    true
                }
                None => false,
            }
        });
        if !recorded {
            default(info);
        }
    }));
}

/// Runs `work` for the input `what`; a panic inside it becomes
/// [`Error::Panic`] for that input, so one bad file costs only itself.
/// State that `work` touched mutably must be rebuilt by the caller after
/// such an error.
pub fn contain<T>(what: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    let outer = CONTAINED.with(|c| c.borrow_mut().replace(None));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    let message = CONTAINED.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    result.unwrap_or_else(|_| {
        Err(Error::Panic {
            what: what.to_string(),
            detail: message.flatten().unwrap_or_else(|| "panic".into()),
        })
    })
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a value from outside (a flag, a config key, a manifest field, a file
/// header) is refused, before the caller says where it came from: clap
/// prints it for a flag, [`Error::Setting`] or the file's own error wraps it
/// otherwise.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// Outside its stated range (the ranges are in [`crate::limits`]).
    #[error("{name} {value} is outside {lo}..={hi}")]
    OutOfRange {
        /// What the value is, as the user names it.
        name: &'static str,
        /// The value, as the user would write it.
        value: String,
        /// Smallest accepted value.
        lo: String,
        /// Largest accepted value.
        hi: String,
    },
    /// Not a number where one is needed.
    #[error("'{0}' is not a number")]
    NotANumber(String),
    /// Not one of the accepted forms (a sample format, a hop, a name).
    #[error("{0}")]
    Form(String),
    /// In range on its own but inconsistent with the rest (a duplicate
    /// label, fmin above fmax, a default that names no variant).
    #[error("{0}")]
    Inconsistent(String),
    /// Not valid TOML for this file, or a key it does not have.
    #[error("{0}")]
    Syntax(String),
}
