//! Downmix to mono and resample to the front-end's rate.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

use crate::error::{Error, Result};

/// Resampler input block, in frames. Sets rubato's latency and FFT size.
const RESAMPLE_CHUNK: usize = 1024;

/// Turns interleaved frames at any rate into mono at the target rate.
///
/// Mono is the mean of the channels. Resampling uses rubato's synchronous
/// FFT resampler (its highest quality), delay-compensated so output sample
/// `n` is input time `n / target_rate`; with equal rates samples pass
/// through untouched. Buffers are sized at construction (for chunks up to
/// the largest seen) and reused.
pub struct Conditioner {
    channels: usize,
    mono: Vec<f32>,
    resampler: Option<Resampling>,
}

struct Resampling {
    fft: Fft<f32>,
    /// Input frames waiting for a full block.
    block: Vec<f32>,
    out: Vec<f32>,
    /// Output frames still to drop for the resampler's delay.
    delay_left: usize,
    in_frames: u64,
    out_frames: u64,
    ratio: f64,
}

impl Conditioner {
    /// Converts `channels`-channel audio at `from_rate` Hz to mono at
    /// `to_rate` Hz.
    pub fn new(from_rate: u32, channels: usize, to_rate: u32) -> Result<Self> {
        if channels == 0 || from_rate == 0 || to_rate == 0 {
            return Err(Error::Config(format!(
                "cannot convert {channels} channels at {from_rate} Hz to {to_rate} Hz"
            )));
        }
        let resampler = if from_rate == to_rate {
            None
        } else {
            let fft = Fft::<f32>::new(
                from_rate as usize,
                to_rate as usize,
                RESAMPLE_CHUNK,
                1,
                FixedSync::Input,
            )
            .map_err(|e| Error::Config(format!("resampler {from_rate}->{to_rate} Hz: {e}")))?;
            Some(Resampling {
                block: Vec::with_capacity(fft.input_frames_max()),
                out: vec![0.0; fft.output_frames_max()],
                delay_left: fft.output_delay(),
                in_frames: 0,
                out_frames: 0,
                ratio: to_rate as f64 / from_rate as f64,
                fft,
            })
        };
        Ok(Conditioner {
            channels,
            mono: Vec::new(),
            resampler,
        })
    }

    /// Converts one chunk of interleaved samples; calls `emit` with mono
    /// output as it becomes available (possibly not at all for a small chunk).
    pub fn process(&mut self, interleaved: &[f32], mut emit: impl FnMut(&[f32])) {
        self.mono.clear();
        if self.channels == 1 {
            self.mono.extend_from_slice(interleaved);
        } else {
            let scale = 1.0 / self.channels as f32;
            self.mono.extend(
                interleaved
                    .chunks_exact(self.channels)
                    .map(|f| f.iter().sum::<f32>() * scale),
            );
        }
        match &mut self.resampler {
            None => emit(&self.mono),
            Some(r) => r.push(&self.mono, &mut emit),
        }
    }

    /// Flushes the resampler's tail at the end of the stream.
    pub fn finish(&mut self, mut emit: impl FnMut(&[f32])) {
        if let Some(r) = &mut self.resampler {
            r.finish(&mut emit);
        }
    }
}

impl Resampling {
    fn push(&mut self, mut mono: &[f32], emit: &mut dyn FnMut(&[f32])) {
        self.in_frames += mono.len() as u64;
        while !mono.is_empty() {
            let need = self.fft.input_frames_next() - self.block.len();
            let take = need.min(mono.len());
            self.block.extend_from_slice(&mono[..take]);
            mono = &mono[take..];
            if take == need {
                self.run_block(None, u64::MAX, emit);
                self.block.clear();
            }
        }
    }

    fn finish(&mut self, emit: &mut dyn FnMut(&[f32])) {
        let expected = (self.in_frames as f64 * self.ratio).round() as u64;
        let mut partial = self.block.len();
        while self.out_frames < expected {
            self.block.resize(self.fft.input_frames_next(), 0.0);
            self.run_block(Some(partial), expected, emit);
            partial = 0;
        }
        self.block.clear();
    }

    /// Resamples `block` (of which `partial` frames are real, if given) and
    /// emits the output past the delay, up to `limit` frames in total.
    fn run_block(&mut self, partial: Option<usize>, limit: u64, emit: &mut dyn FnMut(&[f32])) {
        let frames = self.block.len();
        let out_frames = self.out.len();
        let (Ok(input), Ok(mut output)) = (
            InterleavedSlice::new(&self.block[..], 1, frames),
            InterleavedSlice::new_mut(&mut self.out[..], 1, out_frames),
        ) else {
            return;
        };
        let indexing = Indexing {
            partial_len: partial,
            ..Indexing::new()
        };
        // Buffer sizes come from the resampler itself, so this cannot fail.
        let Ok((_, produced)) = self
            .fft
            .process_into_buffer(&input, &mut output, Some(&indexing))
        else {
            return;
        };
        let skip = self.delay_left.min(produced);
        self.delay_left -= skip;
        let room = usize::try_from(limit.saturating_sub(self.out_frames)).unwrap_or(usize::MAX);
        let end = produced.min(skip.saturating_add(room));
        if end > skip {
            self.out_frames += (end - skip) as u64;
            emit(&self.out[skip..end]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(from: u32, channels: usize, to: u32, input: &[f32], chunk: usize) -> Vec<f32> {
        let mut c = Conditioner::new(from, channels, to).unwrap();
        let mut out = Vec::new();
        for piece in input.chunks(chunk * channels) {
            c.process(piece, |s| out.extend_from_slice(s));
        }
        c.finish(|s| out.extend_from_slice(s));
        out
    }

    #[test]
    fn stereo_is_averaged_and_same_rate_passes_through() {
        let out = convert(22050, 2, 22050, &[1.0, 0.0, 0.5, 0.5, -1.0, 0.0], 2);
        assert_eq!(out, vec![0.5, 0.5, -0.5]);
    }

    #[test]
    fn resampling_keeps_length_and_frequency() {
        // 1 s of 440 Hz at 48 kHz -> 22050 samples of 440 Hz, aligned in time.
        let input: Vec<f32> = (0..48_000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 48_000.0).sin())
            .collect();
        for chunk in [1, 480, 4096] {
            let out = convert(48_000, 1, 22_050, &input, chunk);
            assert_eq!(out.len(), 22_050, "chunk {chunk}");
            // Away from the edges: amplitude kept (RMS of a unit sine is
            // 1/sqrt 2), and aligned within rubato's whole-sample delay
            // compensation (half a sample of 440 Hz is at most 0.063).
            let mid = &out[2000..20000];
            let rms = (mid.iter().map(|x| x * x).sum::<f32>() / mid.len() as f32).sqrt();
            assert!(
                (rms - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-3,
                "chunk {chunk}: rms {rms}"
            );
            let err = (2000..20000)
                .map(|i| {
                    let ideal = (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 22_050.0).sin();
                    (out[i] - ideal).abs()
                })
                .fold(0.0f32, f32::max);
            assert!(err < 0.065, "chunk {chunk}: max error {err}");
        }
    }

    #[test]
    fn rejects_zero_channels() {
        assert!(Conditioner::new(44_100, 0, 22_050).is_err());
    }
}
