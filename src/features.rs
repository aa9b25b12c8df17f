//! Streaming log-mel front-end, compatible with librosa.
//!
//! Owns everything between mono samples at the model's rate and a finished
//! window of log-mel values: the STFT (periodic Hann, no centre padding, power
//! spectrum), the Slaney mel filterbank, the per-frame dB conversion and the
//! per-window `power_to_db(ref=max, top_db)` reference.
//!
//! [`MelStream`] is fed samples in chunks of any size and calls back with each
//! window as soon as its last frame is complete. Each STFT frame is computed
//! exactly once, however many windows contain it. The FFT plan, window, mel
//! filterbank and every buffer are built in [`MelStream::new`]; after that,
//! pushing samples never allocates. This module never blocks and does no I/O.

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Invalid};

/// Feature parameters shared by training and inference.
///
/// The defaults are genrepi's native front-end; a model's manifest may
/// override them (`[features]`), and the model then gets exactly what it was
/// trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureConfig {
    /// Sample rate the front-end works at, in Hz. Audio is resampled to it.
    pub sample_rate: u32,
    /// FFT size and frame length, in samples.
    pub n_fft: usize,
    /// Distance between consecutive STFT frames, in samples.
    pub hop_length: usize,
    /// Number of mel bands.
    pub n_mels: usize,
    /// Lowest mel band edge, in Hz.
    pub fmin: f32,
    /// Highest mel band edge, in Hz.
    pub fmax: f32,
    /// STFT frames per window.
    pub frames: usize,
    /// Dynamic range kept below each window's maximum, in dB.
    pub top_db: f32,
    /// How a recording shorter than one window becomes a window (files
    /// only; a live stream waits for a whole window).
    pub short_input: ShortInput,
}

/// How audio shorter than one window is made into one window. A model is
/// trained with one policy and its manifest names it, so `replay`, `eval`,
/// `features` and training all see short input the same way. Input of a
/// window or more is never changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShortInput {
    /// Silence after the audio (the default for manifests that say nothing).
    #[default]
    Pad,
    /// The audio repeated from its start until the window is full.
    Loop,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            sample_rate: 22_050,
            n_fft: 2048,
            hop_length: 512,
            n_mels: 128,
            fmin: 0.0,
            fmax: 11_025.0,
            frames: 130,
            top_db: 80.0,
            short_input: ShortInput::Pad,
        }
    }
}

impl FeatureConfig {
    /// Samples covered by one window: `n_fft + (frames - 1) * hop_length`.
    pub fn window_samples(&self) -> usize {
        self.n_fft + (self.frames - 1) * self.hop_length
    }

    /// Length of one window, in seconds.
    pub fn window_seconds(&self) -> f64 {
        self.window_samples() as f64 / self.sample_rate as f64
    }

    /// Duration of one STFT hop, in seconds.
    pub fn frame_seconds(&self) -> f64 {
        self.hop_length as f64 / self.sample_rate as f64
    }

    /// Converts a window hop in seconds to whole STFT frames (at least 1).
    pub fn hop_frames_for(&self, seconds: f64) -> usize {
        ((seconds / self.frame_seconds()).round() as usize).max(1)
    }

    /// Checks that the parameters describe a usable front-end.
    pub fn validate(&self) -> Result<(), Invalid> {
        use crate::limits::{FEATURE_RATE, FRAMES, N_FFT, N_MELS, TOP_DB};
        FEATURE_RATE.check(self.sample_rate)?;
        N_FFT.check(self.n_fft)?;
        N_MELS.check(self.n_mels)?;
        FRAMES.check(self.frames)?;
        if self.hop_length == 0 || self.hop_length > self.n_fft {
            return Err(Invalid::OutOfRange {
                name: "features.hop_length",
                value: self.hop_length.to_string(),
                lo: "1".into(),
                hi: self.n_fft.to_string(),
            });
        }
        let nyquist = self.sample_rate as f32 / 2.0;
        if !(0.0 <= self.fmin && self.fmin < self.fmax && self.fmax <= nyquist) {
            return Err(Invalid::Inconsistent(format!(
                "need 0 <= fmin < fmax <= {nyquist} Hz, got fmin {} fmax {}",
                self.fmin, self.fmax
            )));
        }
        TOP_DB.check(self.top_db)?;
        Ok(())
    }
}

/// Floor applied to power before taking the logarithm (librosa's `amin`).
const AMIN: f32 = 1e-10;

/// Slaney mel scale (librosa `hz_to_mel(htk=False)`).
fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ {
        min_log_mel + (hz / MIN_LOG_HZ).ln() / logstep
    } else {
        hz / F_SP
    }
}

/// Inverse of [`hz_to_mel`] (librosa `mel_to_hz(htk=False)`).
fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        MIN_LOG_HZ * (logstep * (mel - min_log_mel)).exp()
    } else {
        F_SP * mel
    }
}

/// One mel band: a run of consecutive FFT bins and their weights.
#[derive(Debug, Clone)]
struct MelBand {
    first_bin: usize,
    weights: Vec<f32>,
}

/// Builds librosa's `filters.mel(htk=False, norm="slaney")`, stored sparsely.
fn mel_filterbank(cfg: &FeatureConfig) -> Vec<MelBand> {
    let n_bins = cfg.n_fft / 2 + 1;
    let sr = cfg.sample_rate as f64;
    let fft_freqs: Vec<f64> = (0..n_bins)
        .map(|k| k as f64 * sr / cfg.n_fft as f64)
        .collect();
    let (mel_lo, mel_hi) = (hz_to_mel(cfg.fmin as f64), hz_to_mel(cfg.fmax as f64));
    let edges: Vec<f64> = (0..cfg.n_mels + 2)
        .map(|i| mel_to_hz(mel_lo + (mel_hi - mel_lo) * i as f64 / (cfg.n_mels + 1) as f64))
        .collect();
    (0..cfg.n_mels)
        .map(|m| {
            let (lo, centre, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            let enorm = 2.0 / (hi - lo);
            let dense: Vec<f32> = fft_freqs
                .iter()
                .map(|&f| {
                    let lower = (f - lo) / (centre - lo);
                    let upper = (hi - f) / (hi - centre);
                    (lower.min(upper).max(0.0) * enorm) as f32
                })
                .collect();
            let first = dense.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last = dense
                .iter()
                .rposition(|&w| w > 0.0)
                .map_or(first, |l| l + 1);
            MelBand {
                first_bin: first,
                weights: dense[first..last].to_vec(),
            }
        })
        .collect()
}

/// A finished window, borrowed from the [`MelStream`] that produced it.
#[derive(Debug)]
pub struct Window<'a> {
    /// Index of the window's first STFT frame since the stream started.
    pub first_frame: u64,
    /// Log-mel values in dB, `n_mels` rows of `frames` columns (mel-major,
    /// the layout of a `[1, 1, n_mels, frames]` model input), each in
    /// `[-top_db, 0]`.
    pub values: &'a [f32],
    /// The window's loudness: RMS of its samples in dB relative to full
    /// scale (a full-scale sine is about -3 dB; digital silence is -100).
    pub level_db: f32,
}

/// Incremental log-mel spectrogram with windows every `hop_frames` frames.
pub struct MelStream {
    cfg: FeatureConfig,
    hop_frames: usize,
    fft: Arc<dyn RealToComplex<f32>>,
    hann: Vec<f32>,
    bands: Vec<MelBand>,
    /// Samples not yet consumed by a frame; never longer than `n_fft`.
    pending: Vec<f32>,
    fft_in: Vec<f32>,
    fft_out: Vec<Complex32>,
    fft_scratch: Vec<Complex32>,
    power: Vec<f32>,
    /// Ring of the last `frames` frames in dB, `n_mels` values each.
    ring_db: Vec<f32>,
    /// Maximum dB of each frame in `ring_db`.
    ring_max: Vec<f32>,
    /// Mean square of each frame's samples, parallel to `ring_max`.
    ring_power: Vec<f32>,
    /// Frames computed so far.
    frames_done: u64,
    /// First frame of the next window to emit.
    next_first: u64,
    window: Vec<f32>,
}

impl MelStream {
    /// Plans the FFT and builds every buffer; emits a window every
    /// `hop_frames` STFT frames (`>= 1`).
    pub fn new(cfg: &FeatureConfig, hop_frames: usize) -> Result<Self, Error> {
        cfg.validate()?;
        if hop_frames == 0 {
            return Err(Invalid::Form("window hop must be at least one frame".into()).into());
        }
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(cfg.n_fft);
        let n = cfg.n_fft;
        let hann = (0..n)
            .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()) as f32)
            .collect();
        Ok(MelStream {
            hop_frames,
            hann,
            bands: mel_filterbank(cfg),
            pending: Vec::with_capacity(n),
            fft_in: fft.make_input_vec(),
            fft_out: fft.make_output_vec(),
            fft_scratch: fft.make_scratch_vec(),
            power: vec![0.0; n / 2 + 1],
            ring_db: vec![0.0; cfg.frames * cfg.n_mels],
            ring_max: vec![f32::NEG_INFINITY; cfg.frames],
            ring_power: vec![0.0; cfg.frames],
            frames_done: 0,
            next_first: 0,
            window: vec![0.0; cfg.frames * cfg.n_mels],
            fft,
            cfg: cfg.clone(),
        })
    }

    /// The parameters this stream was built with.
    pub fn config(&self) -> &FeatureConfig {
        &self.cfg
    }

    /// Window hop, in STFT frames.
    pub fn hop_frames(&self) -> usize {
        self.hop_frames
    }

    /// Changes the window hop from the next window on: the next window
    /// starts `hop_frames` (`>= 1`) frames after the last one emitted.
    pub fn set_hop_frames(&mut self, hop_frames: usize) {
        let hop_frames = hop_frames.max(1);
        if self.frames_done >= self.cfg.frames as u64 {
            self.next_first = self.next_first - self.hop_frames as u64 + hop_frames as u64;
        }
        self.hop_frames = hop_frames;
    }

    /// STFT frames computed since the stream started.
    pub fn frames_done(&self) -> u64 {
        self.frames_done
    }

    /// Forgets all audio, as if newly built (keeps every buffer).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.frames_done = 0;
        self.next_first = 0;
        self.ring_max.fill(f32::NEG_INFINITY);
        self.ring_power.fill(0.0);
    }

    /// Feeds mono samples at `sample_rate`; calls `on_window` for every window
    /// completed by them, in order.
    pub fn push(&mut self, mut samples: &[f32], mut on_window: impl FnMut(Window<'_>)) {
        let n_fft = self.cfg.n_fft;
        let hop = self.cfg.hop_length;
        while !samples.is_empty() {
            let take = (n_fft - self.pending.len()).min(samples.len());
            self.pending.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.pending.len() < n_fft {
                break;
            }
            self.compute_frame();
            self.pending.copy_within(hop.., 0);
            self.pending.truncate(n_fft - hop);
            if let Some(first) = self.completed_window() {
                self.fill_window();
                let power = self.ring_power.iter().sum::<f32>() / self.cfg.frames as f32;
                on_window(Window {
                    first_frame: first,
                    values: &self.window,
                    level_db: 10.0 * power.max(AMIN).log10(),
                });
            }
        }
    }

    /// Computes the frame in `pending` into the ring.
    fn compute_frame(&mut self) {
        let slot = (self.frames_done % self.cfg.frames as u64) as usize;
        self.ring_power[slot] =
            self.pending.iter().map(|s| s * s).sum::<f32>() / self.pending.len() as f32;
        for ((dst, &s), &w) in self.fft_in.iter_mut().zip(&self.pending).zip(&self.hann) {
            *dst = s * w;
        }
        // Lengths are fixed at construction, so this cannot fail.
        let _ = self.fft.process_with_scratch(
            &mut self.fft_in,
            &mut self.fft_out,
            &mut self.fft_scratch,
        );
        for (p, c) in self.power.iter_mut().zip(&self.fft_out) {
            *p = c.norm_sqr();
        }
        let n_mels = self.cfg.n_mels;
        let row = &mut self.ring_db[slot * n_mels..(slot + 1) * n_mels];
        let mut frame_max = f32::NEG_INFINITY;
        for (db, band) in row.iter_mut().zip(&self.bands) {
            let bins = &self.power[band.first_bin..band.first_bin + band.weights.len()];
            let mel: f32 = bins.iter().zip(&band.weights).map(|(p, w)| p * w).sum();
            *db = 10.0 * mel.max(AMIN).log10();
            frame_max = frame_max.max(*db);
        }
        self.ring_max[slot] = frame_max;
        self.frames_done += 1;
    }

    /// The first frame of the window that the latest frame completed, if any.
    fn completed_window(&mut self) -> Option<u64> {
        let frames = self.cfg.frames as u64;
        if self.frames_done < frames {
            return None;
        }
        let first = self.frames_done - frames;
        if first < self.next_first {
            return None;
        }
        self.next_first = first + self.hop_frames as u64;
        Some(first)
    }

    /// Writes the ring's frames, oldest first, as a referenced window.
    fn fill_window(&mut self) {
        let frames = self.cfg.frames;
        let n_mels = self.cfg.n_mels;
        let floor = -self.cfg.top_db;
        let max = self
            .ring_max
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        let oldest = (self.frames_done % frames as u64) as usize;
        for t in 0..frames {
            let slot = (oldest + t) % frames;
            let row = &self.ring_db[slot * n_mels..(slot + 1) * n_mels];
            for (m, &db) in row.iter().enumerate() {
                self.window[m * frames + t] = (db - max).max(floor);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mel_scale_round_trips_and_matches_librosa_points() {
        // librosa.hz_to_mel(htk=False): 1000 Hz -> 15, 11025 Hz -> 48.86...
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        assert!((hz_to_mel(11025.0) - 49.910_594_480_159_05).abs() < 1e-9);
        for hz in [0.0, 10.0, 999.0, 1000.0, 4321.0, 11025.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9, "{hz}");
        }
    }

    #[test]
    fn window_geometry_follows_config() {
        let cfg = FeatureConfig::default();
        assert_eq!(cfg.window_samples(), 68_096);
        assert_eq!(cfg.hop_frames_for(1.0), 43);
        assert_eq!(cfg.hop_frames_for(0.0), 1);
    }

    #[test]
    fn filterbank_bands_are_nonempty_and_ordered() {
        let bands = mel_filterbank(&FeatureConfig::default());
        assert_eq!(bands.len(), 128);
        for pair in bands.windows(2) {
            assert!(pair[0].first_bin <= pair[1].first_bin);
        }
        assert!(bands.iter().all(|b| !b.weights.is_empty()));
    }

    #[test]
    fn windows_arrive_every_hop_frames() {
        let cfg = FeatureConfig::default();
        let mut stream = MelStream::new(&cfg, 10).unwrap();
        let samples = vec![0.1f32; cfg.window_samples() + 25 * cfg.hop_length];
        let mut firsts = Vec::new();
        stream.push(&samples, |w| firsts.push(w.first_frame));
        assert_eq!(firsts, vec![0, 10, 20]);
    }

    #[test]
    fn silence_is_all_zero_db_like_librosa() {
        let cfg = FeatureConfig::default();
        let mut stream = MelStream::new(&cfg, 130).unwrap();
        let mut seen = 0;
        stream.push(&vec![0.0; cfg.window_samples()], |w| {
            assert!(w.values.iter().all(|&v| v == 0.0));
            seen += 1;
        });
        assert_eq!(seen, 1);
    }

    #[test]
    fn rejects_bad_config() {
        let cfg = FeatureConfig {
            fmax: 20_000.0,
            ..FeatureConfig::default()
        };
        assert!(MelStream::new(&cfg, 1).is_err());
        assert!(MelStream::new(&FeatureConfig::default(), 0).is_err());
    }
}
