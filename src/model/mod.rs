//! The model runtime: manifest, tract plan, and per-worker classifiers.
//!
//! A [`Model`] is loaded, checked against its manifest and optimised once,
//! with a fixed input shape; it is shared (`Arc`) by any number of
//! [`Classifier`]s, one per worker, each owning its tract state, its input
//! tensor and its output buffer. Classifying a window fills the same input
//! tensor in place: no model-sized allocation per window.

pub mod manifest;
mod onnx_ops;
pub mod plan;
pub mod variant;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::konst::Const;

pub use manifest::{InputSpec, Manifest, Normalize, OutputKind, locate};
pub use plan::{MemoryEstimate, estimate_memory};
pub use variant::{Arithmetic, Choice, Measured, VariantSpec};

use crate::error::{Error, Result};

/// Bilinear resampling of one axis: for each output index, two source
/// indices and the weight of the second (PyTorch `align_corners=False`).
#[derive(Debug, Clone)]
struct AxisMap {
    lo: Vec<usize>,
    hi: Vec<usize>,
    frac: Vec<f32>,
}

impl AxisMap {
    fn new(from: usize, to: usize) -> Self {
        let scale = from as f64 / to as f64;
        let mut map = AxisMap {
            lo: Vec::with_capacity(to),
            hi: Vec::with_capacity(to),
            frac: Vec::with_capacity(to),
        };
        for o in 0..to {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let lo = (src.floor() as usize).min(from - 1);
            map.lo.push(lo);
            map.hi.push((lo + 1).min(from - 1));
            map.frac.push((src - lo as f64) as f32);
        }
        map
    }
}

/// How a window becomes the model's input tensor.
#[derive(Debug, Clone)]
enum Layout {
    /// `[1, 1, n_mels, frames]`: copied as is.
    Native,
    /// Resized to `H × W` and repeated over the channels.
    Resized { rows: AxisMap, cols: AxisMap },
}

/// A loaded, optimised model and its manifest.
pub struct Model {
    manifest: Manifest,
    manifest_path: PathBuf,
    onnx_path: PathBuf,
    onnx_bytes: u64,
    /// Bytes added by widening FP16 weights to FP32 at load.
    widened_bytes: u64,
    plan: Arc<TypedRunnableModel>,
    /// The matrix products' thread pool (`threads > 1`); each inference runs
    /// on it as a whole, see [`Classifier::classify`].
    executor: Option<multithread::Executor>,
    layout: Layout,
    load_time: Duration,
    threads: usize,
    variant: Option<ChosenVariant>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.manifest.name)
            .field("onnx", &self.onnx_path)
            .finish_non_exhaustive()
    }
}

/// Hex sha256 of a file, read in blocks (never the whole file in memory),
/// and its size in bytes. Only a regular file of at most
/// [`crate::limits::MODEL_BYTES`] is read: a FIFO or `/dev/zero` is refused
/// at once.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    use std::io::Read;
    let mut file = crate::limits::open_regular(path, crate::limits::MODEL_BYTES)?;
    let read_err = |cause: std::io::Error| Error::Read {
        path: path.to_path_buf(),
        cause,
    };
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut block).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
        size += n as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, size))
}

/// How [`Model::load_with`] loads a manifest.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Matrix-product threads per inference (1 or more).
    pub threads: usize,
    /// Which of the manifest's variants to run.
    pub variant: Choice,
}

/// The variant a model was loaded as, and why.
#[derive(Debug, Clone)]
pub struct ChosenVariant {
    /// Its name in the manifest.
    pub name: String,
    /// Its arithmetic.
    pub arithmetic: Arithmetic,
    /// Why it was chosen, one line.
    pub reason: String,
}

impl Model {
    /// Loads the manifest at `manifest_path` and its ONNX file (the variant
    /// `--variant auto` picks, when it lists variants), checks them against
    /// each other (checksum, input shape, label count) and optimises the
    /// plan. `threads > 1` runs matrix products on that many threads.
    pub fn load(manifest_path: &Path, threads: usize) -> Result<Arc<Self>> {
        let options = LoadOptions {
            threads,
            variant: Choice::Auto,
        };
        Self::load_with(manifest_path, &options, |_| Ok(()))
    }

    /// [`Model::load`] with a variant choice, keeping the first candidate
    /// for which `fits` (e.g. a memory limit) says `Ok`; with
    /// [`Choice::Auto`] a variant that does not fit gives way to the next.
    pub fn load_with(
        manifest_path: &Path,
        options: &LoadOptions,
        fits: impl Fn(&Model) -> Result<()>,
    ) -> Result<Arc<Self>> {
        let manifest = Manifest::read(manifest_path)?;
        let threads = options.threads.max(1);
        if manifest.variants.is_empty() {
            if let Choice::Named(name) = &options.variant {
                return Err(Error::Manifest {
                    path: manifest_path.to_path_buf(),
                    detail: format!("lists no variants, so --variant {name} cannot be chosen"),
                });
            }
            let (file, sha) = (manifest.model.clone(), manifest.sha256.clone());
            let model = Self::load_file(manifest, manifest_path, &file, &sha, None, threads)?;
            fits(&model)?;
            return Ok(Arc::new(model));
        }
        let platform = crate::platform::Platform::detect();
        let measured = crate::bench::Measurements::cached(&manifest, &platform);
        let candidates = variant::rank(
            &manifest.variants,
            &options.variant,
            &platform,
            measured.as_ref().map(|m| m as &dyn Measured),
            threads,
        )
        .map_err(|e| Error::Manifest {
            path: manifest_path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let mut refused = Vec::new();
        for candidate in &candidates {
            let spec = &candidate.spec;
            let mut reason = candidate.reason.clone();
            if let Some(why) = Self::follow_tile_choice(measured.as_ref(), &spec.name, threads) {
                reason += &format!("; int8 kernel tile {why}");
            }
            let chosen = ChosenVariant {
                name: spec.name.clone(),
                arithmetic: spec.arithmetic,
                reason,
            };
            let model = Self::load_file(
                manifest.clone(),
                manifest_path,
                &spec.model,
                &spec.sha256,
                Some(chosen),
                threads,
            )?;
            match fits(&model) {
                Ok(()) => {
                    log::info!(
                        "variant {:?} ({}): {}",
                        spec.name,
                        spec.arithmetic.as_str(),
                        model.variant().map_or("", |v| v.reason.as_str())
                    );
                    return Ok(Arc::new(model));
                }
                Err(why) => {
                    log::warn!("variant {:?} does not fit: {why}", spec.name);
                    refused.push(format!("{}: {why}", spec.name));
                }
            }
        }
        Err(Error::Config(refused.join("; ")))
    }

    /// Sets tract's int8 kernel tile ([`crate::bench::FMA_UNITS`]) to what
    /// `genrepi bench` measured fastest for `variant` at `threads` on this CPU,
    /// and returns the reason to report; `None` when there is no such
    /// measurement (tract's own probe decides) or it cannot apply. tract reads
    /// the setting once per process, at the first plan it optimises, so the
    /// first model loaded decides for the process's life: a later model (a
    /// kiosk reload) that would want another tile gets it at the next start.
    fn follow_tile_choice(
        measured: Option<&crate::bench::Measurements>,
        variant: &str,
        threads: usize,
    ) -> Option<String> {
        static FIRST: std::sync::OnceLock<Option<u8>> = std::sync::OnceLock::new();
        let wanted = crate::bench::tile_choice(measured, variant, threads);
        let applied = *FIRST.get_or_init(|| {
            let (units, _) = wanted.as_ref()?;
            tract_linalg::knobs::TRACT_AVX512_FMA_UNITS.set(Some(units.to_string()));
            Some(*units)
        });
        let (units, why) = wanted?;
        if applied == Some(units) {
            Some(why)
        } else {
            log::info!(
                "{why}, but tract chose its int8 kernels for this process already: \
             {}={units} applies from the next start",
                crate::bench::FMA_UNITS
            );
            None
        }
    }

    /// Loads one ONNX file of `manifest` (checked against `sha256`),
    /// computed in `variant`'s arithmetic.
    fn load_file(
        manifest: Manifest,
        manifest_path: &Path,
        file: &Path,
        sha256: &str,
        variant: Option<ChosenVariant>,
        threads: usize,
    ) -> Result<Self> {
        let started = Instant::now();
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        let onnx_path = dir.join(file);
        // Hashed in blocks, then parsed by tract from the file: the weights
        // are never in memory twice.
        let (digest, onnx_bytes) = sha256_file(&onnx_path)?;
        let mismatch = |detail: String| Error::Model {
            path: onnx_path.clone(),
            detail,
        };
        if !digest.eq_ignore_ascii_case(sha256) {
            return Err(mismatch(format!(
                "checksum mismatch: manifest {} says sha256 {sha256}, file has {digest}",
                manifest_path.display(),
            )));
        }
        let fp16 = variant
            .as_ref()
            .is_some_and(|v| v.arithmetic == Arithmetic::Fp16);
        let (plan, executor, widened_bytes) = optimise(&onnx_path, &manifest, threads, fp16)?;
        let [_, _, height, width] = manifest.input.shape;
        let (n_mels, frames) = (manifest.features.n_mels, manifest.features.frames);
        let layout = if [height, width] == [n_mels, frames] && manifest.input.shape[1] == 1 {
            Layout::Native
        } else {
            Layout::Resized {
                rows: AxisMap::new(n_mels, height),
                cols: AxisMap::new(frames, width),
            }
        };
        release_freed_memory();
        let load_time = started.elapsed();
        log::info!(
            "model {:?} ({}, {:.1} MB{}) loaded and optimised in {:.0} ms; input {:?}, {} labels, {} thread(s)",
            manifest.name,
            onnx_path.display(),
            onnx_bytes as f64 / 1e6,
            variant
                .as_ref()
                .map(|v| format!(", variant {}", v.name))
                .unwrap_or_default(),
            load_time.as_secs_f64() * 1e3,
            manifest.input.shape,
            manifest.labels.len(),
            threads,
        );
        Ok(Model {
            manifest,
            manifest_path: manifest_path.to_path_buf(),
            onnx_path,
            onnx_bytes,
            widened_bytes,
            plan,
            executor,
            layout,
            load_time,
            threads,
            variant,
        })
    }

    /// The variant this model runs, when its manifest lists variants.
    pub fn variant(&self) -> Option<&ChosenVariant> {
        self.variant.as_ref()
    }

    /// The matrix-product kernels of the plan (tract-linalg's names, e.g.
    /// `avx512vnni_mmm_i32_8x8` for int8, `arm64fp16_mmm_f16_…` for FP16).
    pub fn kernels(&self) -> std::collections::BTreeSet<String> {
        let mut kernels = std::collections::BTreeSet::new();
        for node in self.plan.model().nodes() {
            if node.op().name() != "OptMatMul" {
                continue;
            }
            for line in node.op().info().unwrap_or_default() {
                // "Mult: m:8 k:25 n:1056 with [avx512vnni_mmm_i32_8x8]"
                if let Some(rest) = line.split(" with [").nth(1) {
                    for k in rest.trim_end_matches(']').split(',') {
                        kernels.insert(k.trim().to_string());
                    }
                }
            }
        }
        kernels
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Class labels, in output order.
    pub fn labels(&self) -> &[String] {
        &self.manifest.labels
    }

    /// Path of the manifest this model was loaded from.
    pub fn manifest_path(&self) -> &Path {
        &self.manifest_path
    }

    /// Path of the ONNX file.
    pub fn onnx_path(&self) -> &Path {
        &self.onnx_path
    }

    /// Size of the ONNX file, in bytes.
    pub fn onnx_bytes(&self) -> u64 {
        self.onnx_bytes
    }

    /// Time taken to load, check and optimise.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Matrix-product threads per inference.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Values in one model input: `channels × height × width`.
    pub fn input_len(&self) -> usize {
        self.manifest.input.shape.iter().product()
    }

    /// What running this model holds in memory: its weights (the ONNX
    /// file's size; after optimisation tract keeps them inside the operators,
    /// not as graph constants) and, from the optimised plan, the peak of
    /// intermediate values alive at once in tract's execution order.
    pub fn memory_plan(&self) -> ModelMemory {
        let model = self.plan.model();
        let fact_bytes = |f: &TypedFact| -> u64 {
            let volume: usize = f
                .shape
                .as_concrete()
                .map(|s| s.iter().product())
                .unwrap_or(0);
            (volume * f.datum_type.size_of()) as u64
        };
        let order = self.plan.order_without_consts();
        let mut last_use = vec![usize::MAX; model.nodes().len()];
        for (step, &n) in order.iter().enumerate() {
            for input in &model.nodes()[n].inputs {
                last_use[input.node] = step;
            }
        }
        for output in model.output_outlets().unwrap_or(&[]) {
            last_use[output.node] = order.len();
        }
        let mut frees: Vec<Vec<usize>> = vec![Vec::new(); order.len() + 1];
        for &n in order {
            if last_use[n] != usize::MAX {
                frees[last_use[n]].push(n);
            }
        }
        let node_bytes = |n: usize| -> u64 {
            model.nodes()[n]
                .outputs
                .iter()
                .map(|o| fact_bytes(&o.fact))
                .sum()
        };
        let (mut live, mut peak) = (0u64, 0u64);
        for (step, &n) in order.iter().enumerate() {
            live += node_bytes(n);
            peak = peak.max(live);
            for &m in &frees[step] {
                live = live.saturating_sub(node_bytes(m));
            }
        }
        ModelMemory {
            file: self.onnx_bytes,
            widened: self.widened_bytes,
            activations: peak,
        }
    }

    /// Node count and operator histogram of the optimised plan.
    pub fn plan_summary(&self) -> (usize, BTreeMap<String, usize>) {
        let model = self.plan.model();
        let mut ops = BTreeMap::new();
        for node in model.nodes() {
            *ops.entry(node.op().name().to_string()).or_insert(0) += 1;
        }
        (model.nodes().len(), ops)
    }

    /// Writes a window (mel-major dB values, as [`crate::features::Window`]
    /// gives them) into `out` exactly as the model receives it: normalised,
    /// resized and repeated over channels as the manifest says.
    /// `scratch` is reused between calls.
    pub fn prepare_input(&self, window: &[f32], out: &mut [f32], scratch: &mut Vec<f32>) {
        let Normalize { mean, std } = self.manifest.normalize;
        let inv = 1.0 / std;
        match &self.layout {
            Layout::Native => {
                for (o, &x) in out.iter_mut().zip(window) {
                    *o = (x - mean) * inv;
                }
            }
            Layout::Resized { rows, cols } => {
                let frames = self.manifest.features.frames;
                scratch.clear();
                scratch.extend(window.iter().map(|&x| (x - mean) * inv));
                let plane = rows.lo.len() * cols.lo.len();
                let (first, rest) = out.split_at_mut(plane);
                for (r, row_out) in first.chunks_exact_mut(cols.lo.len()).enumerate() {
                    let (r0, r1, fr) = (rows.lo[r], rows.hi[r], rows.frac[r]);
                    let top = &scratch[r0 * frames..(r0 + 1) * frames];
                    let bottom = &scratch[r1 * frames..(r1 + 1) * frames];
                    for (c, o) in row_out.iter_mut().enumerate() {
                        let (c0, c1, fc) = (cols.lo[c], cols.hi[c], cols.frac[c]);
                        let t = top[c0] + (top[c1] - top[c0]) * fc;
                        let b = bottom[c0] + (bottom[c1] - bottom[c0]) * fc;
                        *o = t + (b - t) * fr;
                    }
                }
                for channel in rest.chunks_exact_mut(plane) {
                    channel.copy_from_slice(first);
                }
            }
        }
    }

    /// A classifier for one worker.
    pub fn classifier(self: &Arc<Self>) -> Result<Classifier> {
        let state =
            TypedSimpleState::new(&self.plan).map_err(|e| Error::Inference(e.to_string()))?;
        let shape = self.manifest.input.shape;
        let dt = self
            .plan
            .model()
            .input_fact(0)
            .map_err(|e| Error::Inference(e.to_string()))?
            .datum_type;
        let input = Tensor::zero_dt(dt, &shape).map_err(|e| Error::Inference(e.to_string()))?;
        let len = self.manifest.features.n_mels * self.manifest.features.frames;
        Ok(Classifier {
            model: Arc::clone(self),
            state,
            input: Arc::new(input),
            scratch: Vec::with_capacity(len),
            staging: if dt == f16::datum_type() {
                vec![0.0; shape.iter().product()]
            } else {
                Vec::new()
            },
            probs: vec![0.0; self.manifest.labels.len()],
        })
    }
}

/// What a loaded model holds, in bytes; see [`Model::memory_plan`].
#[derive(Debug, Clone, Copy)]
pub struct ModelMemory {
    /// The ONNX file's size (its weights, as stored).
    pub file: u64,
    /// What widening FP16 weights to FP32 at load added to them.
    pub widened: u64,
    /// Peak bytes of intermediate values alive at once.
    pub activations: u64,
}

/// Bytes of the FP16 tensors among these constants.
fn f16_constant_bytes<'a>(consts: impl Iterator<Item = Option<&'a Const>>) -> u64 {
    consts
        .flatten()
        .filter(|c| c.val().datum_type() == f16::datum_type())
        .map(|c| c.val().len() as u64 * 2)
        .sum()
}

/// Replaces every FP16 constant that is only cast to FP32 by its FP32 value,
/// so an "FP16 on disk" model (weights stored as FP16, each followed by a
/// `Cast` to FP32) runs exactly like its FP32 original: tract's constant
/// folding leaves such casts alone on purpose (the result is twice the
/// size), which would cast every weight on every run and keep the kernels
/// from packing them at load. Returns how many tensors were widened.
fn widen_f16_weights(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::cast::Cast;
    let mut widened = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let to_f32 = node
            .op_as::<Cast>()
            .is_some_and(|c| c.to == f32::datum_type());
        if !to_f32 || node.inputs.len() != 1 {
            continue;
        }
        let Some(weights) = model.outlet_fact(node.inputs[0])?.konst.clone() else {
            continue;
        };
        if weights.datum_type() != f16::datum_type() {
            continue;
        }
        let wide = weights.cast_to::<f32>()?.into_owned().into_arc_tensor();
        let mut patch = TypedModelPatch::default();
        let wire = patch.add_const(format!("{}.widened", node.name), wide)?;
        patch.shunt_outside(model, id.into(), wire)?;
        patch.apply(model)?;
        widened += 1;
    }
    if widened > 0 {
        model.compact()?;
    }
    Ok(widened)
}

/// Hands the heap memory freed while loading (the parsed protobuf, the
/// weights before tract packed them, the graphs between passes) back to the
/// system. glibc keeps freed memory in its arenas otherwise, and resident
/// memory would stay at the loading peak for the life of the process.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Largest result [`fold_constant_chains`] stores: tract's own folding
/// budget (`CONST_FOLD_MEM_BUDGET`, 4 MiB).
const FOLD_MAX_BYTES: usize = 4 << 20;

/// Replaces each chain of operators that computes a small value from
/// constants alone by that value, in the optimised plan.
///
/// tract folds such chains only while every step stays under its 4 MiB
/// budget. An integer convolution sums its weights once per output channel
/// for the zero-point correction, through a cast of the int8 kernel to i32:
/// for ResNet-152's layer4 kernels (2.4 M weights) the cast is 9.4 MB, so
/// tract leaves the cast and the sum in the plan and recomputes them on
/// every run (about 2 ms a window here). Here the chain is evaluated once
/// and only its (small) end result is kept. Returns the chains folded.
fn fold_constant_chains(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::source::TypedSource;
    let mut folded = 0;
    // One pass in evaluation order: a fold feeds the nodes after it, which
    // may then fold in turn. Node ids stay valid until the final compact.
    let mut consumed = std::collections::HashSet::new();
    for id in model.eval_order()? {
        let node = model.node(id);
        if consumed.contains(&id)
            || node.op_is::<Const>()
            || node.op_is::<TypedSource>()
            || node.inputs.is_empty()
        {
            continue;
        }
        let Some(inputs) = node
            .inputs
            .iter()
            .map(|i| Some(model.outlet_fact(*i).ok()?.konst.clone()?.into_tvalue()))
            .collect::<Option<TVec<_>>>()
        else {
            continue;
        };
        let Ok(Some(mut values)) = node.op.eval_out_of_plan(inputs) else {
            continue;
        };
        let mut chain = vec![id];
        let mut last = node;
        while let Some(succ) = model.single_succ(last.id)? {
            if succ.inputs.len() != 1 || values.len() != 1 {
                break;
            }
            let Ok(Some(next)) = succ.op.eval_out_of_plan(values.clone()) else {
                break;
            };
            values = next;
            last = succ;
            chain.push(succ.id);
        }
        let bytes: usize = values
            .iter()
            .map(|t| t.volume() * t.datum_type().size_of())
            .sum();
        if values.len() != 1 || bytes > FOLD_MAX_BYTES {
            continue;
        }
        let (last_id, name) = (last.id, format!("{}.folded", last.name));
        let mut patch = TypedModelPatch::default();
        let wire = patch.add_const(name, values.remove(0).into_arc_tensor())?;
        patch.shunt_outside(model, last_id.into(), wire)?;
        patch.apply(model)?;
        consumed.extend(chain);
        folded += 1;
    }
    if folded > 0 {
        model.compact()?;
    }
    Ok(folded)
}

/// tract's ONNX parser with the quantized operators of `onnx_ops`
/// (onnxruntime's `QLinearAdd`, `QLinearGlobalAveragePool`) registered.
pub fn onnx_parser() -> tract_onnx::Onnx {
    let mut parser = tract_onnx::onnx();
    onnx_ops::register(&mut parser.op_register);
    parser
}

/// Parses, fixes the input shape, optimises and plans the ONNX model.
/// Also returns the bytes that widening FP16 weights added.
fn optimise(
    onnx: &Path,
    manifest: &Manifest,
    threads: usize,
    fp16: bool,
) -> Result<(Arc<TypedRunnableModel>, Option<multithread::Executor>, u64)> {
    let fail = |detail: String| Error::Model {
        path: onnx.to_path_buf(),
        detail,
    };
    let (typed, widened_bytes) = optimised_graph(onnx, manifest.input.shape, fp16)?;
    let out = typed
        .output_fact(0)
        .map_err(|e| fail(format!("model has no output: {e}")))?;
    let classes = out.shape.as_concrete().and_then(|s| s.last().copied());
    if classes != Some(manifest.labels.len()) {
        return Err(fail(format!(
            "model output shape is {:?} but the manifest has {} labels",
            out.shape,
            manifest.labels.len()
        )));
    }
    let executor = (threads > 1).then(|| multithread::Executor::multithread(threads));
    let options = RunOptions {
        executor: executor.clone(),
        ..RunOptions::default()
    };
    let plan = typed
        .into_runnable_with_options(&options)
        .map_err(|e| fail(format!("cannot plan: {e}")))?;
    Ok((plan, executor, widened_bytes))
}

/// The ONNX file parsed (with [`onnx_parser`]), its input fixed to `shape`,
/// FP16-on-disk weights widened, translated to FP16 arithmetic when `fp16`
/// (tract's `f32_to_f16` transform: the input and output become f16 too),
/// optimised by tract and its constant chains folded: the graph genrepi
/// runs. Also returns the bytes that widening added.
pub fn optimised_graph(onnx: &Path, shape: [usize; 4], fp16: bool) -> Result<(TypedModel, u64)> {
    let fail = |detail: String| Error::Model {
        path: onnx.to_path_buf(),
        detail,
    };
    let started = Instant::now();
    let phase =
        |what: &str| log::debug!("{what} at {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
    let mut model = onnx_parser()
        .model_for_path(onnx)
        .map_err(|e| fail(format!("not a loadable ONNX model: {e}")))?;
    let declared = model
        .input_fact(0)
        .map_err(|e| fail(format!("model has no input: {e}")))?
        .shape
        .as_concrete_finite()
        .ok()
        .flatten()
        .map(|s| s.to_vec());
    if let Some(declared) = declared
        && (declared.len() != 4 || declared[1..] != shape[1..])
    {
        return Err(fail(format!(
            "model input is {declared:?} but the manifest says {shape:?}"
        )));
    }
    model = model
        .with_input_fact(0, f32::fact(shape).into())
        .map_err(|e| fail(format!("cannot set input shape {shape:?}: {e}")))?;
    phase("parsed");
    let stored_f16 = f16_constant_bytes(model.nodes().iter().map(|n| n.op_as::<Const>()));
    let mut typed = model
        .into_typed()
        .map_err(|e| fail(format!("cannot type the model for input {shape:?}: {e}")))?;
    let widened = widen_f16_weights(&mut typed)
        .map_err(|e| fail(format!("cannot widen FP16 weights to FP32: {e}")))?;
    // Typing already folds the casts of small tensors; once no FP16
    // constant is left, every stored FP16 weight is now FP32 (twice the size).
    let left_f16 = f16_constant_bytes(typed.nodes().iter().map(|n| n.op_as::<Const>()));
    let widened_bytes = if stored_f16 > 0 && left_f16 == 0 {
        stored_f16
    } else {
        0
    };
    if widened_bytes > 0 {
        log::info!(
            "FP16 weights widened to FP32 at load: +{:.1} MB ({widened} large tensors by genrepi, \
             the rest as tract typed the model)",
            widened_bytes as f64 / 1e6
        );
    }
    if fp16 {
        let transform = tract_onnx::tract_core::transform::get_transform("f32_to_f16")
            .map_err(|e| fail(format!("tract's f32_to_f16 transform: {e}")))?
            .ok_or_else(|| fail("tract has no f32_to_f16 transform".into()))?;
        transform
            .transform(&mut typed)
            .map_err(|e| fail(format!("cannot translate to FP16: {e}")))?;
    }
    phase("typed");
    let mut typed = typed
        .into_optimized()
        .map_err(|e| fail(format!("cannot optimise for input {shape:?}: {e}")))?;
    phase("optimised");
    let folded = fold_constant_chains(&mut typed)
        .map_err(|e| fail(format!("cannot fold constants of the optimised plan: {e}")))?;
    phase(&format!("{folded} constant chain(s) folded"));
    Ok((typed, widened_bytes))
}

/// One worker's inference state: a tract state plus reusable buffers.
pub struct Classifier {
    model: Arc<Model>,
    state: TypedSimpleState,
    input: Arc<Tensor>,
    scratch: Vec<f32>,
    /// The FP32 input before its conversion, for an FP16 plan (else empty).
    staging: Vec<f32>,
    probs: Vec<f32>,
}

impl Classifier {
    /// The model this classifier runs.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Classifies one window (mel-major dB values); returns class
    /// probabilities in label order.
    pub fn classify(&mut self, window: &[f32]) -> Result<&[f32]> {
        let fail = |e: TractError| Error::Inference(e.to_string());
        // The previous run's value has been dropped, so this does not copy.
        let input = Arc::make_mut(&mut self.input);
        if self.staging.is_empty() {
            let mut view = input.to_plain_array_view_mut::<f32>().map_err(fail)?;
            let slice = view
                .as_slice_mut()
                .ok_or_else(|| Error::Inference("input tensor is not contiguous".into()))?;
            self.model.prepare_input(window, slice, &mut self.scratch);
        } else {
            self.model
                .prepare_input(window, &mut self.staging, &mut self.scratch);
            let mut view = input.to_plain_array_view_mut::<f16>().map_err(fail)?;
            for (o, &x) in view.iter_mut().zip(&self.staging) {
                *o = f16::from_f32(x);
            }
        }
        let input = TValue::from_const(Arc::clone(&self.input));
        let outputs = match &self.model.executor {
            // The whole plan on a pool thread, so that the pool's threads are
            // all there is: run from outside, the calling thread waits while
            // `threads` workers do the matrix products, and between them
            // (im2col, packing, the residual adds: a quarter of an INT8
            // ResNet-152) the idle workers spin beside it, one thread more
            // than the cores asked for. On 2 cores INT8 ran slower at 2
            // threads than at 1 that way.
            Some(multithread::Executor::MultiThread(pool)) => {
                let job = PoolJob((&mut self.state, input));
                pool.install(move || PoolJob(job.run())).0
            }
            _ => self.state.run(tvec![input]),
        }
        .map_err(fail)?;
        if outputs[0].datum_type() == f16::datum_type() {
            let view = outputs[0].to_plain_array_view::<f16>().map_err(fail)?;
            for (p, &x) in self.probs.iter_mut().zip(view.iter()) {
                *p = x.to_f32();
            }
        } else {
            let view = outputs[0].to_plain_array_view::<f32>().map_err(fail)?;
            for (p, &x) in self.probs.iter_mut().zip(view.iter()) {
                *p = x;
            }
        }
        check_output(&mut self.probs, self.model.manifest.output)?;
        Ok(&self.probs)
    }
}

/// One inference handed to the model's thread pool and its result handed
/// back. tract's state and values hold `Rc`s, so they are not `Send`; the
/// hand-over is sound because `ThreadPool::install` blocks the calling
/// thread until the job is done (its latch orders the two threads' accesses)
/// and nothing else holds the state meanwhile: no `Rc` is ever used by two
/// threads at once.
struct PoolJob<T>(T);

// SAFETY: see the type's documentation; only `Classifier::classify` makes
// these two: the job going to the pool and its result coming back.
unsafe impl Send for PoolJob<(&mut TypedSimpleState, TValue)> {}
unsafe impl Send for PoolJob<TractResult<TVec<TValue>>> {}

impl PoolJob<(&mut TypedSimpleState, TValue)> {
    /// Runs the plan (a method, so that the closure captures the whole
    /// `PoolJob` rather than its non-`Send` fields).
    fn run(self) -> TractResult<TVec<TValue>> {
        let (state, input) = self.0;
        state.run(tvec![input])
    }
}

/// How far a model's probabilities may stray from [0, 1] and from summing
/// to one (rounding in FP16 and INT8 arithmetic stays far inside it).
const PROBABILITY_TOLERANCE: f32 = 0.01;

/// Checks one window's raw model output and turns logits into
/// probabilities. NaN, infinity, or "probabilities" outside [0, 1] or not
/// summing to one are an error for this window: never a verdict.
pub fn check_output(probs: &mut [f32], kind: OutputKind) -> Result<()> {
    if let Some(x) = probs.iter().find(|x| !x.is_finite()) {
        return Err(Error::Inference(format!(
            "the model's output holds {x} (not a finite number)"
        )));
    }
    match kind {
        OutputKind::Logits => softmax(probs),
        OutputKind::Probabilities => {
            let t = PROBABILITY_TOLERANCE;
            let sum: f32 = probs.iter().sum();
            if let Some(p) = probs.iter().find(|&&p| !(-t..=1.0 + t).contains(&p)) {
                return Err(Error::Inference(format!(
                    "the model's output {p} is not a probability (manifest: output = \"probabilities\")"
                )));
            }
            if (sum - 1.0).abs() > t {
                return Err(Error::Inference(format!(
                    "the model's probabilities sum to {sum}, not 1 (manifest: output = \"probabilities\")"
                )));
            }
        }
    }
    Ok(())
}

/// In-place numerically stable softmax.
pub fn softmax(xs: &mut [f32]) {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in xs.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in xs.iter_mut() {
        *x /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_map_matches_pytorch_bilinear() {
        // torch.nn.functional.interpolate(x, size=4, mode="linear",
        // align_corners=False) on [0, 1]: [0, 0.25, 0.75, 1].
        let m = AxisMap::new(2, 4);
        let x = [0.0f32, 1.0];
        let y: Vec<f32> = (0..4)
            .map(|o| x[m.lo[o]] + (x[m.hi[o]] - x[m.lo[o]]) * m.frac[o])
            .collect();
        assert_eq!(y, vec![0.0, 0.25, 0.75, 1.0]);
        let same = AxisMap::new(5, 5);
        assert!(same.frac.iter().all(|&f| f == 0.0));
        assert_eq!(same.lo, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut xs = [1.0, 3.0, 2.0, -1000.0];
        softmax(&mut xs);
        assert!((xs.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(xs[1] > xs[2] && xs[2] > xs[0] && xs[3] >= 0.0);
    }
}
