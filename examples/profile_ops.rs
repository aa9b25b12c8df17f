//! Time per operator type of one inference, in tract's optimised plan.
//!
//!     cargo run --release --example profile_ops -- MODEL.onnx [C H W] [RUNS]
//!
//! Shows where a model's time goes (for instance why a quantized variant
//! is slower than FP32 in tract). Input is random, shape 1×C×H×W
//! (default 1×128×130). The plan is the one genrepi runs
//! (`genrepi::model::optimised_graph`: its quantized operators, FP16-on-disk
//! weights widened, constant chains folded), without a manifest.
//! `PROFILE_OPS_FP16=1` profiles it in FP16 arithmetic (tract's
//! `f32_to_f16`, what the `fp16` variant runs). `PROFILE_OPS_THREADS=N`
//! runs it as genrepi does with `--threads N`: the plan on tract's
//! multithread executor, each inference on its pool (`Classifier::classify`),
//! so an operator that does not share its work shows the same time at 1
//! and at N threads.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{SimpleState, eval};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or_else(|| anyhow::anyhow!("usage: MODEL.onnx [C H W] [RUNS]"))?;
    let dims: Vec<usize> = if args.len() >= 4 {
        args[1..4]
            .iter()
            .map(|a| a.parse())
            .collect::<Result<_, _>>()?
    } else {
        vec![1, 128, 130]
    };
    let runs: usize = args.get(4).map(|r| r.parse()).transpose()?.unwrap_or(3);
    let shape = [1, dims[0], dims[1], dims[2]];
    let (graph, _) = genrepi::model::optimised_graph(
        path.as_ref(),
        shape,
        std::env::var_os("PROFILE_OPS_FP16").is_some(),
    )?;
    let threads: usize = std::env::var("PROFILE_OPS_THREADS")
        .ok()
        .map(|t| t.parse())
        .transpose()?
        .unwrap_or(1);
    let executor = (threads > 1).then(|| multithread::Executor::multithread(threads));
    let options = RunOptions {
        executor: executor.clone(),
        ..RunOptions::default()
    };
    let plan = graph.into_runnable_with_options(&options)?;
    let input: Tensor = tract_ndarray::Array4::<f32>::from_shape_fn(shape, |(_, c, h, w)| {
        ((c * 31 + h * 7 + w * 3) % 17) as f32 / 8.0 - 1.0
    })
    .into();
    // An FP16 plan takes f16 input.
    let input = input
        .cast_to_dt(plan.model().input_fact(0)?.datum_type)?
        .into_owned();
    if std::env::var_os("PROFILE_OPS_DETAIL").is_some() {
        for node in plan.model().nodes() {
            if node.op().name() == "OptMatMul" {
                println!("{}: {:?}", node.name, node.op().info()?);
            }
            if node.op().name() == "OptMatMulPack" {
                let fact = plan.model().outlet_fact(node.inputs[0])?;
                println!("{}: {:?} on {fact:?}", node.name, node.op().info()?);
            }
        }
    }
    let job = Job {
        plan: &plan,
        input,
        runs,
    };
    let (by_op, total) = match executor {
        Some(multithread::Executor::MultiThread(pool)) => pool.install(move || job.run())?,
        _ => job.run()?,
    };
    let mut rows: Vec<_> = by_op.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.0));
    let per_run = total.as_secs_f64() * 1e3 / runs as f64;
    println!("{path}: {per_run:.1} ms per inference (mean of {runs}, {threads} thread(s))");
    for (op, (t, n)) in rows.iter().take(15) {
        let ms = t.as_secs_f64() * 1e3 / runs as f64;
        println!(
            "{:>9.1} ms {:>5.1}%  {:>4} x  {op}",
            ms,
            100.0 * ms / per_run,
            n / runs
        );
    }
    Ok(())
}

/// Time per operator type over `runs` inferences (after one warm-up).
type ByOp = BTreeMap<String, (Duration, usize)>;

fn profile(
    plan: &Arc<TypedRunnableModel>,
    input: Tensor,
    runs: usize,
) -> anyhow::Result<(ByOp, Duration)> {
    let mut state = SimpleState::new(plan)?;
    let mut by_op = ByOp::new();
    let mut total = Duration::ZERO;
    for run in 0..=runs {
        let started = Instant::now();
        let mut times = Vec::new();
        state.run_plan_with_eval(
            tvec!(input.clone().into()),
            |ctx, op_state, node, inputs| {
                let t = Instant::now();
                let r = eval(ctx, op_state, node, inputs);
                times.push((node.op().name().to_string(), t.elapsed()));
                r
            },
        )?;
        // The first run warms caches and lazy packing; it is not counted.
        if run > 0 {
            total += started.elapsed();
            for (op, t) in times {
                let e = by_op.entry(op).or_default();
                e.0 += t;
                e.1 += 1;
            }
        }
    }
    Ok((by_op, total))
}

/// The profiling run handed to the executor's pool: tract's plan holds
/// `Rc`s, so it is not `Send`, but `ThreadPool::install` blocks this thread
/// until the job is done, so no `Rc` is used by two threads at once (the
/// same hand-over as `Classifier::classify`). Its result is `Send` as it is.
struct Job<'a> {
    plan: &'a Arc<TypedRunnableModel>,
    input: Tensor,
    runs: usize,
}

// SAFETY: see the type's documentation.
unsafe impl Send for Job<'_> {}

impl Job<'_> {
    fn run(self) -> anyhow::Result<(ByOp, Duration)> {
        profile(self.plan, self.input, self.runs)
    }
}
