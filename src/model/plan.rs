//! The memory plan of a listener, decided before the device opens: what the
//! model's weights, tract's working memory, the pipeline's buffers and the
//! program itself will hold, so `--max-memory` can refuse (or `--variant
//! auto` skip) a model before it is loaded for good.

use super::{Model, ModelMemory};
use crate::audio::CaptureSettings;
use crate::scheduler::LiveSettings;

/// The memory plan of a listener, decided before the device opens.
#[derive(Debug, Clone, Copy)]
pub struct MemoryEstimate {
    /// What the model holds.
    pub model: ModelMemory,
    /// Working memory of one inference: tract's scratch (im2col and packed
    /// inputs) on top of the live tensors; measured at 8x the peak of live
    /// tensors on ResNet-152 (+18 MB at the first inference for 2.1 MiB).
    pub working: u64,
    /// Weights as tract holds them once optimised: twice the file (measured
    /// on ResNet-152: loading its 232 MB file adds 458 MB of RSS; the
    /// operators keep the weights and a copy packed for the matmul kernels).
    pub weights: u64,
    /// Capture ring, mel stream, window queue and the classifier's buffers.
    pub buffers: u64,
    /// Program, libraries, thread stacks and allocator slack (measured).
    pub base: u64,
}

/// Copies of the weights tract holds once optimised: measured on ResNet-152,
/// loading its 232 MB file adds 458 MB of RSS (the operators keep the
/// weights and a copy packed for the matmul kernels).
pub const WEIGHT_COPIES: u64 = 2;

/// Working memory of one inference per byte of live tensors: tract's scratch
/// (im2col, packed inputs) on top of them; measured at 8x on ResNet-152
/// (+18 MB at the first inference for 2.1 MiB of live tensors).
pub const WORKING_FACTOR: u64 = 8;

/// The program itself: binary, libraries, tract's runtime, thread stacks
/// and allocator slack. Measured on x86-64 only: `listen` with the tiny
/// model peaks at 23 MB (`scripts/listen-fifo.sh`), rounded up.
const BASE_BYTES: u64 = 24 << 20;

impl MemoryEstimate {
    /// Estimated peak resident bytes.
    pub fn total(&self) -> u64 {
        self.weights + self.working + self.buffers + self.base
    }

    /// One line for `info` and errors.
    pub fn describe(&self) -> String {
        let mb = |b: u64| b as f64 / (1 << 20) as f64;
        format!(
            "{:.0} MiB = weights {:.0} MiB ({WEIGHT_COPIES} x the {:.0} MiB file{}: as loaded and packed for the \
             matmul kernels) + inference {:.1} MiB ({WORKING_FACTOR} x {:.1} MiB of live tensors) \
             + buffers {:.1} MiB + program {:.0} MiB",
            mb(self.total()),
            mb(self.weights),
            mb(self.model.file),
            if self.model.widened > 0 {
                format!(
                    " + {:.0} MiB of FP16 weights widened",
                    mb(self.model.widened)
                )
            } else {
                String::new()
            },
            mb(self.working),
            mb(self.model.activations),
            mb(self.buffers),
            mb(self.base)
        )
    }
}

/// Estimates what listening with `model` and `settings` will hold.
pub fn estimate_memory(
    model: &Model,
    capture: &CaptureSettings,
    live: &LiveSettings,
) -> MemoryEstimate {
    let m = model.memory_plan();
    let f = &model.manifest().features;
    let window = (f.n_mels * f.frames * 4) as u64;
    // The capture ring at the device's rate; assume 48 kHz stereo f32 (the
    // largest common format) when not set.
    let rate = capture.sample_rate.unwrap_or(48_000) as f64;
    let channels = capture.channels.unwrap_or(2) as f64;
    let ring = (capture.ring_seconds * rate * channels * 4.0) as u64;
    let mel = window * 2 + (f.n_fft * 16) as u64;
    let classifier = window * 2 + model.input_len() as u64 * 4;
    let queue = window * live.queue.max(1) as u64;
    MemoryEstimate {
        model: m,
        weights: (m.file + m.widened) * WEIGHT_COPIES,
        working: m.activations * WORKING_FACTOR,
        buffers: ring + mel + classifier + queue,
        base: BASE_BYTES,
    }
}
