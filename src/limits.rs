//! The valid range of every size, rate and count that comes from outside:
//! file headers, devices, manifests, config files and the command line.
//!
//! Owns the ranges (one table, printed in the README) and the checks that
//! apply them where a value enters, so nothing later has to ask whether a
//! number is sane: arithmetic on checked values cannot overflow and no
//! allocation sized from them can exhaust memory. A value outside its range
//! is a one-line error naming the value, the range and (from the caller)
//! the file or option it came from. Files that genrepi reads whole (model,
//! manifest, config) must be regular files under a stated size: a FIFO, a
//! device or a folder is refused before anything is read from it.

use std::fmt::Display;
use std::fs::File;
use std::io::Read;
use std::ops::RangeInclusive;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Invalid, Result};

/// A named inclusive range.
#[derive(Debug, Clone)]
pub struct Limit<T> {
    /// What the value is, as the user names it (`sample rate (Hz)`, `queue`).
    pub name: &'static str,
    /// Smallest and largest accepted values.
    pub range: RangeInclusive<T>,
}

impl<T: PartialOrd + Display + Copy> Limit<T> {
    /// `value` if it is in range, else [`Invalid::OutOfRange`].
    pub fn check(&self, value: T) -> std::result::Result<T, Invalid> {
        // `contains` is false for NaN, so NaN is refused too.
        if self.range.contains(&value) {
            Ok(value)
        } else {
            Err(Invalid::OutOfRange {
                name: self.name,
                value: short(&value),
                lo: self.range.start().to_string(),
                hi: self.range.end().to_string(),
            })
        }
    }
}

/// A number as the user would write it: `1e300`, not 301 digits.
fn short(value: &impl Display) -> String {
    let text = value.to_string();
    match text.parse::<f64>() {
        Ok(x) if text.len() > 24 => format!("{x:e}"),
        _ => text,
    }
}

const fn limit<T>(name: &'static str, lo: T, hi: T) -> Limit<T> {
    Limit {
        name,
        range: lo..=hi,
    }
}

/// Audio sample rate of a file or a device, Hz. Below 1 kHz nothing
/// musical survives; above 768 kHz no converter exists, and the resampler's
/// set-up grows with the rate.
pub const AUDIO_RATE: Limit<u32> = limit("sample rate (Hz)", 1_000, 768_000);
/// Interleaved channels of a file or a device.
pub const AUDIO_CHANNELS: Limit<usize> = limit("channels", 1, 64);
/// Largest magnitude a decoded sample may have (full scale is 1.0); beyond
/// it a file is corrupt, and the resampler's FFT would overflow to NaN.
pub const SAMPLE_MAGNITUDE: f32 = 1_000.0;

/// Window hop, seconds (`--hop`, `hop =`).
pub const HOP_SECONDS: Limit<f64> = limit("hop", 0.01, 3_600.0);
/// Windows waiting for the model (`--queue`).
pub const QUEUE: Limit<usize> = limit("queue", 1, 1_024);
/// Deadline for a waiting window, seconds (`--deadline`).
pub const DEADLINE_SECONDS: Limit<f64> = limit("deadline", 0.01, 3_600.0);
/// Silence before the device is reopened, seconds (`--stall-timeout`).
pub const STALL_SECONDS: Limit<f64> = limit("stall-timeout", 0.1, 3_600.0);
/// Smoothing span, windows (`--smoothing`).
pub const SMOOTHING: Limit<usize> = limit("smoothing", 1, 1_000);
/// Hysteresis margin on a probability (`--hysteresis`).
pub const HYSTERESIS: Limit<f32> = limit("hysteresis", 0.0, 1.0);
/// Silence threshold, dBFS (`--silence-db`).
pub const SILENCE_DB: Limit<f32> = limit("silence-db", -200.0, 0.0);
/// Pace of `listen --input`, × real time (0: as fast as the model allows).
pub const SPEED: Limit<f64> = limit("speed", 0.0, 1_000.0);
/// Threads per inference (`--threads`, `threads =`).
pub const THREADS: Limit<usize> = limit("threads", 1, 256);
/// Worker threads of `eval` and `features` (`--jobs`).
pub const JOBS: Limit<usize> = limit("jobs", 1, 256);
/// Windows timed per `bench` row (`--windows`).
pub const BENCH_WINDOWS: Limit<usize> = limit("windows", 1, 10_000);
/// Memory limit of `listen` (`--max-memory`), bytes: 1 MiB to 1 TiB.
pub const MAX_MEMORY: Limit<u64> = limit("max-memory (bytes)", 1 << 20, 1 << 40);

/// Front-end sample rate in a manifest, Hz.
pub const FEATURE_RATE: Limit<u32> = limit("features.sample_rate", 1_000, 192_000);
/// FFT size in a manifest.
pub const N_FFT: Limit<usize> = limit("features.n_fft", 16, 65_536);
/// Mel bands in a manifest.
pub const N_MELS: Limit<usize> = limit("features.n_mels", 1, 1_024);
/// STFT frames per window in a manifest.
pub const FRAMES: Limit<usize> = limit("frames", 1, 4_096);
/// Dynamic range below a window's maximum, dB.
pub const TOP_DB: Limit<f32> = limit("features.top_db", 1.0, 1_000.0);
/// Height and width of the model input in a manifest.
pub const INPUT_SIDE: Limit<usize> = limit("input side", 1, 4_096);
/// Values in one model input (channels × height × width): 64 MiB of f32.
pub const INPUT_VALUES: Limit<usize> = limit("input values", 1, 1 << 24);
/// Class labels in a manifest.
pub const LABELS: Limit<usize> = limit("labels", 2, 1_000);
/// Characters in one label.
pub const LABEL_CHARS: Limit<usize> = limit("label length", 1, 64);

/// Largest ONNX model file.
pub const MODEL_BYTES: u64 = 2 << 30;
/// Largest manifest or config file.
pub const TEXT_BYTES: u64 = 1 << 20;

/// A clap value parser that applies `limit` to a parsed number, so a bad
/// option is a usage error (exit 2) before anything loads.
pub fn parser<T>(limit: Limit<T>) -> impl Fn(&str) -> std::result::Result<T, Invalid> + Clone
where
    T: std::str::FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |s: &str| {
        let v: T = s
            .trim()
            .parse()
            .map_err(|_| Invalid::NotANumber(s.to_string()))?;
        limit.check(v)
    }
}

/// Opens `path` for reading if it is a regular file of at most `max_bytes`.
///
/// Opened non-blocking and checked on the handle, so a FIFO without a
/// writer, a device or a folder is refused at once instead of hanging or
/// reading forever.
pub fn open_regular(path: &Path, max_bytes: u64) -> Result<File> {
    let read_err = |cause: std::io::Error| Error::Read {
        path: path.to_path_buf(),
        cause,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if meta.is_dir() {
        return Err(read_err(std::io::Error::other("is a folder, not a file")));
    }
    if !meta.is_file() {
        return Err(read_err(std::io::Error::other(
            "not a regular file (a device, FIFO or socket)",
        )));
    }
    if meta.len() > max_bytes {
        return Err(read_err(std::io::Error::other(format!(
            "{} bytes is larger than the {max_bytes} accepted",
            meta.len()
        ))));
    }
    Ok(file)
}

/// Reads a small text file (manifest, config) through [`open_regular`].
pub fn read_text(path: &Path) -> Result<String> {
    let file = open_regular(path, TEXT_BYTES)?;
    let mut text = String::new();
    file.take(TEXT_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|cause| Error::Read {
            path: path.to_path_buf(),
            cause,
        })?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_refuse_edges_and_nan() {
        assert_eq!(QUEUE.check(1), Ok(1));
        assert_eq!(QUEUE.check(1024), Ok(1024));
        assert_eq!(
            QUEUE.check(1025).unwrap_err().to_string(),
            "queue 1025 is outside 1..=1024"
        );
        assert!(DEADLINE_SECONDS.check(f64::NAN).is_err());
        assert!(DEADLINE_SECONDS.check(1e300).is_err());
        assert!(SILENCE_DB.check(f32::INFINITY).is_err());
        assert!(AUDIO_RATE.check(u32::MAX).is_err());
    }

    #[test]
    fn the_parser_says_what_is_wrong() {
        let p = parser(THREADS);
        assert_eq!(p("4"), Ok(4));
        assert!(
            p("100000")
                .unwrap_err()
                .to_string()
                .contains("outside 1..=256")
        );
        assert_eq!(
            p("18446744073709551616"),
            Err(Invalid::NotANumber("18446744073709551616".into()))
        );
        assert!(p("x").is_err());
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = std::env::temp_dir();
        assert!(read_text(&dir).unwrap_err().to_string().contains("folder"));
        let e = read_text(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
