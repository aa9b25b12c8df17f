//! Microphone capture: a cpal input stream feeding a lock-free ring.
//!
//! The audio callback does one thing: copy the device's samples, in the
//! device's own format, into a pre-allocated [`ringbuf`] SPSC ring, and count
//! in atomics what it received and what did not fit (an overrun). It never
//! locks, allocates, logs or does I/O. Everything else — conversion to `f32`,
//! downmix, resampling — happens on the reading side, in [`RingSource`],
//! which is an ordinary [`AudioSource`] for the shared front-end.
//!
//! The reader also watches the device: a stream error, no audio for
//! [`CaptureSettings::stall_timeout`], or audio arriving far faster than the
//! device's clock allows (a capture plugin whose input has gone away spins
//! instead of failing) end the stream with [`Error::Device`], and the caller
//! reopens it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use super::{AudioSource, StreamFormat};
use crate::error::{Error, Invalid, Result};

/// Which device to open and how.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    /// Substring of the device's name or id (case-insensitive); the host's
    /// default input device when `None`.
    pub device: Option<String>,
    /// Sample rate to ask for; the device's default when `None`.
    pub sample_rate: Option<u32>,
    /// Channel count to ask for; the device's default when `None`.
    pub channels: Option<u16>,
    /// Sample format to ask for; the device's default when `None`.
    pub sample_format: Option<SampleFormat>,
    /// Capacity of the ring, in seconds of audio.
    pub ring_seconds: f64,
    /// No audio for this long means the device is gone.
    pub stall_timeout: Duration,
}

/// Capture ring capacity, seconds of device audio: two hops of slack for
/// the front-end at the default 1-s hop, ~750 KB at 48 kHz stereo f32.
pub const RING_SECONDS: f64 = 2.0;

/// No audio for this long means the device is gone: ALSA periods are tens
/// of milliseconds, so 3 s is never a slow device, and a kiosk is back
/// within seconds of a USB microphone being replugged.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Audio arriving faster than this many times real time (over a second or
/// more) is a broken device: ALSA's file plugin at end of file spins, a
/// real device never runs more than a few percent fast.
pub const MAX_SPEED: f64 = 4.0;

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings {
            device: None,
            sample_rate: None,
            channels: None,
            sample_format: None,
            ring_seconds: RING_SECONDS,
            stall_timeout: STALL_TIMEOUT,
        }
    }
}

/// Parses a sample format name as `genrepi devices` prints it (`i16`, `f32`…).
pub fn parse_sample_format(name: &str) -> std::result::Result<SampleFormat, Invalid> {
    SUPPORTED_FORMATS
        .iter()
        .copied()
        .find(|f| f.to_string().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let names: Vec<String> = SUPPORTED_FORMATS.iter().map(|f| f.to_string()).collect();
            Invalid::Form(format!(
                "unknown sample format '{name}' (one of {})",
                names.join(", ")
            ))
        })
}

const SUPPORTED_FORMATS: [SampleFormat; 8] = [
    SampleFormat::I8,
    SampleFormat::I16,
    SampleFormat::I32,
    SampleFormat::U8,
    SampleFormat::U16,
    SampleFormat::U32,
    SampleFormat::F32,
    SampleFormat::F64,
];

/// What the callback and the reader share. Plain atomics: the callback only
/// adds to them.
#[derive(Debug, Default)]
pub struct RingStats {
    received: AtomicU64,
    overruns: AtomicU64,
    lost: AtomicU64,
    xruns: AtomicU64,
    failed: AtomicBool,
    error: Mutex<Option<String>>,
}

impl RingStats {
    /// Samples the producer offered, whether or not they fitted.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Times the ring was full when the producer wrote, plus device xruns.
    pub fn overruns(&self) -> u64 {
        self.overruns.load(Ordering::Relaxed) + self.xruns.load(Ordering::Relaxed)
    }

    /// Samples that did not fit into the ring.
    pub fn lost_samples(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Marks the stream as failed (called from the stream's error callback,
    /// never from the data callback).
    fn fail(&self, why: String) {
        if let Ok(mut slot) = self.error.try_lock() {
            slot.get_or_insert(why);
        }
        self.failed.store(true, Ordering::Release);
    }

    fn failure(&self) -> Option<String> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        let why = self.error.lock().ok().and_then(|e| e.clone());
        Some(why.unwrap_or_else(|| "stream failed".into()))
    }
}

/// The producing end of a capture ring: the audio callback's only state.
pub struct RingWriter<T> {
    prod: HeapProd<T>,
    stats: Arc<RingStats>,
}

impl<T: Copy> RingWriter<T> {
    /// Copies `data` into the ring; what does not fit is dropped and counted
    /// (newest samples are dropped: the ring never blocks the device).
    /// Lock-free and allocation-free: safe in an audio callback.
    #[inline]
    pub fn write(&mut self, data: &[T]) {
        let n = self.prod.push_slice(data);
        self.stats
            .received
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if n < data.len() {
            self.stats.overruns.fetch_add(1, Ordering::Relaxed);
            self.stats
                .lost
                .fetch_add((data.len() - n) as u64, Ordering::Relaxed);
        }
    }

    /// Copies all of `data`, waiting while the ring is full; for producers
    /// that are not a device clock (benchmarks). Returns `false` if `stop`
    /// was raised first.
    pub fn write_blocking(&mut self, mut data: &[T], stop: &AtomicBool) -> bool {
        self.stats
            .received
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        while !data.is_empty() {
            let n = self.prod.push_slice(data);
            data = &data[n..];
            if n == 0 {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        true
    }

    /// The counters shared with the reader.
    pub fn stats(&self) -> &Arc<RingStats> {
        &self.stats
    }

    /// Samples written but not yet read.
    pub fn pending(&self) -> usize {
        self.prod.occupied_len()
    }
}

/// The consuming end of a capture ring, as an [`AudioSource`].
pub struct RingSource<T> {
    cons: HeapCons<T>,
    stats: Arc<RingStats>,
    format: StreamFormat,
    name: String,
    stop: Arc<AtomicBool>,
    scratch: Vec<T>,
    stall_timeout: Duration,
    /// Fail when audio arrives faster than this multiple of real time.
    max_speed: Option<f64>,
    last_data: Option<Instant>,
    rate_check: Option<(Instant, u64)>,
}

/// A ring for `seconds` of interleaved audio in `format`, split into its
/// two ends. `stop` ends the reader's stream (`read_chunk` returns
/// `Ok(false)`).
pub fn ring<T: Copy + Default>(
    name: &str,
    format: StreamFormat,
    seconds: f64,
    stop: Arc<AtomicBool>,
) -> (RingWriter<T>, RingSource<T>) {
    let capacity =
        ((seconds * format.sample_rate as f64) as usize).max(1024) * format.channels.max(1);
    let (prod, cons) = HeapRb::<T>::new(capacity).split();
    let stats = Arc::new(RingStats::default());
    let chunk = (format.sample_rate as usize / 100).max(64) * format.channels;
    (
        RingWriter {
            prod,
            stats: stats.clone(),
        },
        RingSource {
            cons,
            stats,
            format,
            name: name.to_string(),
            stop,
            scratch: vec![T::default(); chunk],
            stall_timeout: STALL_TIMEOUT,
            max_speed: None,
            last_data: None,
            rate_check: None,
        },
    )
}

impl<T> RingSource<T> {
    /// Treats `timeout` without audio as a lost device.
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Treats audio arriving faster than `factor` times real time (measured
    /// over a second or more) as a broken device.
    pub fn with_max_speed(mut self, factor: f64) -> Self {
        self.max_speed = Some(factor);
        self
    }

    /// The counters shared with the writer.
    pub fn stats(&self) -> &Arc<RingStats> {
        &self.stats
    }

    fn lost(&self, detail: String) -> Error {
        Error::Device {
            device: self.name.clone(),
            detail,
        }
    }

    /// Errors when the device has failed, stalled or is spinning.
    fn check_health(&mut self, now: Instant) -> Result<()> {
        if let Some(why) = self.stats.failure() {
            return Err(self.lost(format!("stream error: {why}")));
        }
        let last = *self.last_data.get_or_insert(now);
        if now.duration_since(last) > self.stall_timeout {
            return Err(self.lost(format!(
                "no audio for {:.1} s",
                now.duration_since(last).as_secs_f64()
            )));
        }
        if let Some(limit) = self.max_speed {
            let received = self.stats.received();
            let (since, base) = *self.rate_check.get_or_insert((now, received));
            let elapsed = now.duration_since(since).as_secs_f64();
            if elapsed >= 1.0 {
                let nominal = self.format.sample_rate as f64 * self.format.channels as f64;
                let speed = (received - base) as f64 / nominal / elapsed;
                if speed > limit {
                    return Err(self.lost(format!(
                        "audio arrives at {speed:.0}x real time, so the device has no \
                         clock behind it (input gone?)"
                    )));
                }
                self.rate_check = Some((now, received));
            }
        }
        Ok(())
    }
}

impl<T> AudioSource for RingSource<T>
where
    T: Sample + Default + Send,
    f32: FromSample<T>,
{
    fn format(&self) -> StreamFormat {
        self.format
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// Waits for at least one frame (polling every 5 ms), then returns up to
    /// 10 ms of audio as `f32`. `Ok(false)` once `stop` is raised;
    /// [`Error::Device`] when the device fails.
    fn read_chunk(&mut self, buf: &mut Vec<f32>) -> Result<bool> {
        buf.clear();
        let channels = self.format.channels.max(1);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let now = Instant::now();
            self.check_health(now)?;
            let available = self.cons.occupied_len() / channels * channels;
            if available > 0 {
                let take = available.min(self.scratch.len() / channels * channels);
                let n = self.cons.pop_slice(&mut self.scratch[..take]);
                buf.extend(self.scratch[..n].iter().map(|&s| f32::from_sample(s)));
                self.last_data = Some(now);
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One input device as `genrepi devices` lists it.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// Human-readable name.
    pub name: String,
    /// The host's id for it (what `--device` also matches).
    pub id: String,
    /// Whether it is the host's default input.
    pub is_default: bool,
    /// The default configuration, e.g. `48000 Hz, 2 ch, i16`.
    pub default_config: Option<String>,
    /// Supported ranges, e.g. `8000-192000 Hz, 1 ch, i16`.
    pub configs: Vec<String>,
}

fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_string())
        .unwrap_or_else(|_| "(unnamed device)".into())
}

fn device_id(device: &cpal::Device) -> String {
    device.id().map(|i| i.to_string()).unwrap_or_default()
}

fn host_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Device {
        device: what.to_string(),
        detail: e.to_string(),
    }
}

/// Lists the host's input devices with what each supports.
pub fn list_input_devices() -> Result<Vec<DeviceInfo>> {
    let host = cpal::default_host();
    let default_id = host.default_input_device().map(|d| device_id(&d));
    let devices = host
        .input_devices()
        .map_err(|e| host_error("audio host", e))?;
    let mut out = Vec::new();
    for device in devices {
        let id = device_id(&device);
        let configs = device
            .supported_input_configs()
            .map(|cs| summarise_configs(cs.collect()))
            .unwrap_or_default();
        out.push(DeviceInfo {
            name: device_name(&device),
            is_default: default_id.as_deref() == Some(id.as_str()),
            default_config: device.default_input_config().ok().map(|c| {
                format!(
                    "{} Hz, {} ch, {}",
                    c.sample_rate(),
                    c.channels(),
                    c.sample_format()
                )
            }),
            configs,
            id,
        });
    }
    Ok(out)
}

/// One line per rate range and sample format, with the channel counts
/// folded into ranges (plugins like ALSA's `null` offer every combination).
fn summarise_configs(configs: Vec<cpal::SupportedStreamConfigRange>) -> Vec<String> {
    let mut groups: Vec<((u32, u32, SampleFormat), Vec<u16>)> = Vec::new();
    for c in configs {
        let key = (c.min_sample_rate(), c.max_sample_rate(), c.sample_format());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, chans)) => chans.push(c.channels()),
            None => groups.push((key, vec![c.channels()])),
        }
    }
    groups
        .into_iter()
        .map(|((lo, hi, format), mut chans)| {
            chans.sort_unstable();
            chans.dedup();
            let mut ranges: Vec<String> = Vec::new();
            let mut i = 0;
            while i < chans.len() {
                let mut j = i;
                while j + 1 < chans.len() && chans[j + 1] == chans[j] + 1 {
                    j += 1;
                }
                ranges.push(if i == j {
                    chans[i].to_string()
                } else {
                    format!("{}-{}", chans[i], chans[j])
                });
                i = j + 1;
            }
            let rates = if lo == hi {
                format!("{lo} Hz")
            } else {
                format!("{lo}-{hi} Hz")
            };
            format!("{format}, {rates}, {} ch", ranges.join(","))
        })
        .collect()
}

/// An open input stream. Dropping it stops the device.
pub struct Capture {
    _stream: cpal::Stream,
    /// The device's name.
    pub name: String,
    /// What the device delivers.
    pub format: StreamFormat,
    /// Its sample format.
    pub sample_format: SampleFormat,
    /// The ring's counters (overruns).
    pub stats: Arc<RingStats>,
}

/// Opens the input device `settings` name and starts it; the returned source
/// reads what it captures until `stop` is raised.
pub fn open(
    settings: &CaptureSettings,
    stop: Arc<AtomicBool>,
) -> Result<(Capture, Box<dyn AudioSource + Send>)> {
    let host = cpal::default_host();
    let wanted = settings.device.as_deref().unwrap_or("default input");
    let device = match &settings.device {
        None => host.default_input_device().ok_or_else(|| Error::Device {
            device: wanted.into(),
            detail: "no default input device (see `genrepi devices`)".into(),
        })?,
        Some(pattern) => find_device(&host, pattern)?,
    };
    let name = device_name(&device);
    let (format, config, sample_format) = pick_config(&device, &name, settings)?;
    macro_rules! build {
        ($t:ty) => {{
            let (writer, reader) = ring::<$t>(&name, format, settings.ring_seconds, stop);
            let reader = reader
                .with_stall_timeout(settings.stall_timeout)
                .with_max_speed(MAX_SPEED);
            let stats = reader.stats().clone();
            let stream = build_stream(&device, &name, config, writer)?;
            (
                stream,
                stats,
                Box::new(reader) as Box<dyn AudioSource + Send>,
            )
        }};
    }
    let (stream, stats, source) = match sample_format {
        SampleFormat::I8 => build!(i8),
        SampleFormat::I16 => build!(i16),
        SampleFormat::I32 => build!(i32),
        SampleFormat::U8 => build!(u8),
        SampleFormat::U16 => build!(u16),
        SampleFormat::U32 => build!(u32),
        SampleFormat::F32 => build!(f32),
        SampleFormat::F64 => build!(f64),
        other => {
            return Err(Error::Device {
                device: name,
                detail: format!(
                    "sample format {other} is not supported; ask for another with --format"
                ),
            });
        }
    };
    stream.play().map_err(|e| host_error(&name, e))?;
    Ok((
        Capture {
            _stream: stream,
            name,
            format,
            sample_format,
            stats,
        },
        source,
    ))
}

/// The stream format to open `device` with: the settings where given, else
/// the device's default; an error naming the device when it does not
/// support that combination.
fn pick_config(
    device: &cpal::Device,
    name: &str,
    settings: &CaptureSettings,
) -> Result<(StreamFormat, cpal::StreamConfig, SampleFormat)> {
    let default = device
        .default_input_config()
        .map_err(|e| host_error(name, e))?;
    let sample_rate = settings.sample_rate.unwrap_or(default.sample_rate());
    let channels = settings.channels.unwrap_or(default.channels());
    let sample_format = settings.sample_format.unwrap_or(default.sample_format());
    let supported = device
        .supported_input_configs()
        .map_err(|e| host_error(name, e))?
        .any(|c| {
            c.channels() == channels
                && c.sample_format() == sample_format
                && (c.min_sample_rate()..=c.max_sample_rate()).contains(&sample_rate)
        });
    if !supported {
        return Err(Error::Device {
            device: name.to_string(),
            detail: format!(
                "does not support {sample_rate} Hz, {channels} ch, {sample_format} \
                 (see `genrepi devices`)"
            ),
        });
    }
    let format = StreamFormat {
        sample_rate,
        channels: channels as usize,
    };
    let config = cpal::StreamConfig {
        channels,
        sample_rate,
        buffer_size: cpal::BufferSize::Default,
    };
    Ok((format, config, sample_format))
}

fn find_device(host: &cpal::Host, pattern: &str) -> Result<cpal::Device> {
    let devices = host
        .input_devices()
        .map_err(|e| host_error("audio host", e))?;
    let needle = pattern.to_lowercase();
    let mut names = Vec::new();
    for device in devices {
        let name = device_name(&device);
        let id = device_id(&device);
        if name.to_lowercase().contains(&needle) || id.to_lowercase().contains(&needle) {
            return Ok(device);
        }
        names.push(name);
    }
    Err(Error::Device {
        device: pattern.to_string(),
        detail: format!(
            "no input device matches (have: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ),
    })
}

fn build_stream<T>(
    device: &cpal::Device,
    name: &str,
    config: cpal::StreamConfig,
    mut writer: RingWriter<T>,
) -> Result<cpal::Stream>
where
    T: SizedSample + Send + 'static,
{
    let stats = writer.stats().clone();
    device
        .build_input_stream::<T, _, _>(
            config,
            // The audio callback: copy and count, nothing else.
            move |data: &[T], _: &cpal::InputCallbackInfo| writer.write(data),
            move |e: cpal::Error| match e.kind() {
                cpal::ErrorKind::Xrun => {
                    stats.xruns.fetch_add(1, Ordering::Relaxed);
                }
                _ => stats.fail(e.to_string()),
            },
            Some(Duration::from_millis(500)),
        )
        .map_err(|e| host_error(name, e))
}
