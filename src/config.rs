//! `listen`'s settings: a TOML config file layered under the command line
//! ([`ListenConfig`]), then checked against [`crate::limits`] and converted
//! once ([`resolve`]) before any model loads, so a bad value, at start or in
//! a SIGHUP reload, changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::audio::CaptureSettings;
use crate::audio::capture::parse_sample_format;
use crate::error::{Error, Invalid, Result};
use crate::limits;
use crate::scheduler::{Hop, LiveSettings};

/// Every `listen` setting, read from the command line (clap) and from a
/// TOML config file (serde) alike: one definition, so the flag, the key and
/// the help cannot drift apart. Each is optional so the two can be layered
/// ([`ListenConfig::overlay`]: the command line wins). On the command line
/// clap's value parsers check each range before anything loads; [`resolve`]
/// checks every value again, whatever its source. `model`, `threads` and
/// `variant` are genrepi's global options on the command line.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Model manifest (the global `--model`).
    #[arg(skip)]
    pub model: Option<PathBuf>,
    /// Matrix-product threads (the global `--threads`).
    #[arg(skip)]
    pub threads: Option<usize>,
    /// Input device: a substring of its name or id (see `genrepi devices`)
    /// [default: the default input].
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// Capture sample rate in Hz, 1000 to 768000 [default: the device's].
    #[arg(long, value_name = "HZ", value_parser = limits::parser(limits::AUDIO_RATE))]
    pub rate: Option<u32>,
    /// Capture channels, 1 to 64 [default: the device's].
    #[arg(long, value_name = "N", value_parser = channels)]
    pub channels: Option<u16>,
    /// Capture sample format: i16, i32, f32, u8… [default: the device's].
    #[arg(long, value_name = "FORMAT", value_parser = sample_format)]
    pub format: Option<String>,
    /// Seconds between window starts (0.01 to 3600), or `auto` to follow
    /// inference time [default: 1.0].
    #[arg(long, value_name = "SECONDS|auto", value_parser = hop)]
    pub hop: Option<String>,
    /// Windows waiting for the model at most, 1 to 1024; when full the
    /// oldest is dropped [default: 2].
    #[arg(long, value_name = "N", value_parser = limits::parser(limits::QUEUE))]
    pub queue: Option<usize>,
    /// Skip windows that waited longer than this, 0.01 to 3600 s
    /// [default: 2 hops, at least 1 s].
    #[arg(long, value_name = "SECONDS", value_parser = limits::parser(limits::DEADLINE_SECONDS))]
    pub deadline: Option<f64>,
    /// Smoothing span in windows (exponential moving average), 1 to 1000
    /// [default: 4].
    #[arg(long, value_name = "N", value_parser = limits::parser(limits::SMOOTHING))]
    pub smoothing: Option<usize>,
    /// A new genre is reported only when its smoothed probability leads by
    /// this much, 0 to 1 [default: 0.1].
    #[arg(long, value_name = "P", value_parser = limits::parser(limits::HYSTERESIS))]
    pub hysteresis: Option<f32>,
    /// Windows quieter than this RMS level are reported as `silence`,
    /// -200 to 0 [default: -60].
    #[arg(long, value_name = "DBFS", allow_hyphen_values = true,
          value_parser = limits::parser(limits::SILENCE_DB))]
    pub silence_db: Option<f32>,
    /// Reopen the device after this long without audio, 0.1 to 3600 s
    /// [default: 3].
    #[arg(long, value_name = "SECONDS", value_parser = limits::parser(limits::STALL_SECONDS))]
    pub stall_timeout: Option<f64>,
    /// Serve a status page, /api/status and /metrics on PORT or ADDR:PORT
    /// (a bare port binds 127.0.0.1) [default: off].
    #[arg(long, value_name = "ADDR:PORT")]
    pub http: Option<String>,
    /// Refuse to start if the memory plan exceeds this (e.g. 256M, 1G;
    /// 1M to 1T).
    #[arg(long, value_name = "SIZE", value_parser = max_memory)]
    pub max_memory: Option<String>,
    /// JSON lines instead of text.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub json: Option<bool>,
    /// Model variant (the global `--variant`).
    #[arg(skip)]
    pub variant: Option<String>,
    /// Read this audio file instead of the device, through the same
    /// pipeline (queue, deadline, silence gate, smoothing, output); ends
    /// with the file.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Pace of --input, × real time, 0 to 1000; 0 reads as fast as the
    /// model takes windows, dropping none [default: 1].
    #[arg(long, value_name = "X", value_parser = limits::parser(limits::SPEED))]
    pub speed: Option<f64>,
    /// Config file only: whether the kiosk service starts (`genrepi
    /// autostart`, the unit's `ExecCondition=`) [default: false]. `listen`
    /// itself ignores it.
    #[arg(skip)]
    pub autostart: Option<bool>,
}

/// `--channels`: a count in [`limits::AUDIO_CHANNELS`].
fn channels(s: &str) -> std::result::Result<u16, Invalid> {
    limits::parser(limits::AUDIO_CHANNELS)(s).map(|c| c as u16)
}

/// `--format`: a sample format genrepi captures.
fn sample_format(s: &str) -> std::result::Result<String, Invalid> {
    parse_sample_format(s).map(|_| s.to_string())
}

/// `--hop`: seconds in range, or `auto`.
fn hop(s: &str) -> std::result::Result<String, Invalid> {
    s.parse::<Hop>().map(|_| s.to_string())
}

/// `--max-memory`: a size in [`limits::MAX_MEMORY`].
fn max_memory(s: &str) -> std::result::Result<String, Invalid> {
    parse_size(s).map(|_| s.to_string())
}

impl ListenConfig {
    /// Reads a TOML config file.
    /// Only a regular file of at most [`limits::TEXT_BYTES`] is read.
    pub fn load(path: &Path) -> Result<ListenConfig> {
        let text = limits::read_text(path)?;
        Self::parse(&text).map_err(|cause| Error::ConfigFile {
            path: path.to_path_buf(),
            cause,
        })
    }

    /// Parses a config file's text (unknown keys are an error).
    pub fn parse(text: &str) -> std::result::Result<ListenConfig, Invalid> {
        toml::from_str(text).map_err(|e| Invalid::Syntax(e.message().replace('\n', " ")))
    }

    /// `self` with every setting that `over` has replaced by `over`'s: both
    /// as TOML tables (where an unset setting is absent), `over`'s keys
    /// written over `self`'s.
    pub fn overlay(&self, over: &ListenConfig) -> Result<ListenConfig> {
        let syntax = |e: String| Error::Setting(Invalid::Syntax(format!("settings: {e}")));
        let table = |c: &ListenConfig| toml::Table::try_from(c).map_err(|e| syntax(e.to_string()));
        let mut merged = table(self)?;
        merged.extend(table(over)?);
        merged
            .try_into()
            .map_err(|e: toml::de::Error| syntax(e.message().to_string()))
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
    let config = Error::Setting;
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
pub fn parse_size(s: &str) -> std::result::Result<u64, Invalid> {
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
            let out_of_range = || Invalid::OutOfRange {
                name: "max-memory",
                value: s.to_string(),
                lo: "1M".into(),
                hi: "1T".into(),
            };
            if bytes > *limits::MAX_MEMORY.range.end() as f64 {
                return Err(out_of_range());
            }
            limits::MAX_MEMORY
                .check(bytes as u64)
                .map_err(|_| out_of_range())
        }
        _ => Err(Invalid::Form(format!(
            "max-memory '{s}' is not a size like 256M, 1G or 900K"
        ))),
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
        // The example names no model (the packaged one is found by lookup);
        // resolve against the repo's.
        cfg.model = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/models/default.toml").into());
        let r = resolve(&cfg).unwrap();
        assert_eq!(r.live.hop, Hop::Fixed(1.0));
        assert_eq!(r.max_memory, Some(768 << 20));
        assert_eq!(r.threads, 2);
    }

    #[test]
    fn autostart_is_off_unless_the_file_says_so() {
        let on: ListenConfig = toml::from_str("autostart = true").unwrap();
        assert_eq!(on.autostart, Some(true));
        let example: ListenConfig = toml::from_str(include_str!("../deploy/genrepi.toml")).unwrap();
        assert_eq!(example.autostart, Some(false));
        assert!(toml::from_str::<ListenConfig>("autostart = \"yes\"").is_err());
    }

    #[test]
    fn command_line_overrides_the_file() {
        let file: ListenConfig = toml::from_str("hop = \"2.0\"\nsilence_db = -50.0").unwrap();
        let cli = ListenConfig {
            hop: Some("auto".into()),
            ..ListenConfig::default()
        };
        let merged = file.overlay(&cli).unwrap();
        assert_eq!(merged.hop.as_deref(), Some("auto"));
        assert_eq!(merged.silence_db, Some(-50.0));
        assert!(toml::from_str::<ListenConfig>("colour = 1").is_err());
    }
}
