//! Model formats genrepi loads beyond plain FP32 ONNX.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use common::{genrepi, python, repo, skip_without_python, temp_dir};

/// A fresh folder with the test models `make_tiny_model.py FLAG` writes;
/// `None` (the test skipped, with a message) without python3 and onnx.
fn tiny_models(flag: &str, tag: &str) -> Option<std::path::PathBuf> {
    let dir = temp_dir(tag);
    let made = Command::new(python())
        .arg(repo("models/tools/make_tiny_model.py"))
        .arg(flag)
        .arg(&dir)
        .output()
        .is_ok_and(|o| o.status.success());
    if !made {
        skip_without_python(&format!("python3 with onnx (make_tiny_model.py {flag})"));
        return None;
    }
    Some(dir)
}

/// Probabilities of each window that `replay --json` prints, with the
/// matrix products on `threads` threads.
fn replay_probs(manifest: &Path, clip: &Path, threads: usize) -> Vec<Vec<f64>> {
    let out = genrepi()
        .arg("--model")
        .arg(manifest)
        .args(["--threads", &threads.to_string(), "replay", "--json"])
        .arg(clip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            common::GTZAN_GENRES
                .iter()
                .map(|g| v["probs"][g].as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// `info`'s memory plan line and the log of loading.
fn info(manifest: &Path) -> (String, String) {
    let out = genrepi()
        .env("RUST_LOG", "info")
        .arg("--model")
        .arg(manifest)
        .arg("info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let plan = stdout
        .lines()
        .find(|l| l.starts_with("memory:"))
        .unwrap_or_else(|| panic!("no memory line in {stdout}"));
    let plan = plan.split(" = ").next().unwrap().to_string();
    (plan, String::from_utf8_lossy(&out.stderr).to_string())
}

/// A model whose weights are stored as FP16, each cast to FP32 (made by
/// models/tools/fp16_weights.py), is widened once at load: it classifies
/// like its FP32 original (up to the FP16 rounding of the weights), and its
/// memory plan counts the weights at FP32 size, with no cast left to run
/// per window (the live tensors are those of the FP32 model).
#[test]
fn fp16_weights_are_widened_to_fp32_at_load() {
    let Some(dir) = tiny_models("--wide", "fp16-weights") else {
        return;
    };
    let (fp32, fp16) = (dir.join("wide.toml"), dir.join("wide-fp16.toml"));
    let size = |m: &str| std::fs::metadata(dir.join(m)).unwrap().len();
    assert!(
        size("wide-fp16.onnx") * 10 < size("wide.onnx") * 6,
        "not half size"
    );

    let (plan32, log32) = info(&fp32);
    let (plan16, log16) = info(&fp16);
    assert!(!log32.contains("widened"), "{log32}");
    assert!(
        log16.contains("FP16 weights widened to FP32 at load: +2.1 MB (1 large tensors by genrepi"),
        "{log16}"
    );
    assert_eq!(plan16, plan32, "memory plans differ");

    let Some(gtzan) = common::gtzan_mini() else {
        return;
    };
    let clip = gtzan.join("rock/rock.00003.wav");
    let (a, b) = (replay_probs(&fp32, &clip, 1), replay_probs(&fp16, &clip, 1));
    assert!(!a.is_empty());
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(diff < 5e-3, "FP16 weights moved a probability by {diff}");
    assert!(diff > 0.0, "identical: were the weights rounded at all?");
}

/// An int8 model in onnxruntime's QOperator format, with the Microsoft-domain
/// operators tract does not know (`QLinearAdd`, `QLinearGlobalAveragePool`),
/// loads and runs on integer operators (genrepi's `QAdd`, tract's int8
/// im2col and matmul), and classifies exactly like the same arithmetic
/// written as float operators between quantize/dequantize pairs, which tract
/// runs without any of genrepi's operators.
#[test]
fn int8_qoperator_model_runs_on_integer_ops_like_its_qdq_twin() {
    let Some(dir) = tiny_models("--qop", "int8-qop") else {
        return;
    };
    let (qop, qdq) = (dir.join("qop.toml"), dir.join("qdq.toml"));
    let plan = |manifest: &Path| {
        let out = genrepi()
            .arg("--model")
            .arg(manifest)
            .arg("info")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let (int_plan, float_plan) = (plan(&qop), plan(&qdq));
    for op in ["x QAdd", "x Im2col"] {
        assert!(int_plan.contains(op), "no {op} in {int_plan}");
        assert!(
            !float_plan.contains(op),
            "{op} in the float twin: {float_plan}"
        );
    }
    // The 1x1 integer convolution is one matrix product over H·W: its
    // activation packed as one matrix, not as a batch of H rows of W
    // (vendor/README.md, the einsum axis merge).
    use tract_onnx::prelude::OutletId;
    let (graph, _) =
        genrepi::model::optimised_graph(&dir.join("qop.onnx"), [1, 1, 128, 130], false).unwrap();
    let packs: Vec<_> = graph
        .nodes()
        .iter()
        .filter(|n| n.op().name() == "OptMatMulPack")
        .map(|n| {
            let fact = graph.outlet_fact(OutletId::new(n.id, 0)).unwrap();
            (n.name.clone(), fact.shape.as_concrete().unwrap().to_vec())
        })
        .collect();
    assert!(!packs.is_empty(), "no packed activation in the plan");
    for (name, batch) in &packs {
        assert_eq!(
            batch.iter().product::<usize>(),
            1,
            "{name} packs a batch {batch:?}"
        );
    }

    let Some(gtzan) = common::gtzan_mini() else {
        return;
    };
    let clip = gtzan.join("rock/rock.00003.wav");
    let (a, b) = (replay_probs(&qop, &clip, 1), replay_probs(&qdq, &clip, 1));
    assert!(a.len() > 20);
    assert_eq!(a.len(), b.len());
    // Integer arithmetic: the same to the bit when the whole plan runs on
    // the 2-thread pool (Classifier::classify).
    assert_eq!(replay_probs(&qop, &clip, 2), a, "2 threads differ from 1");
    let diff = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(diff < 1e-3, "integer and float paths differ by {diff}");
    let spread = a
        .iter()
        .flatten()
        .fold((1.0f64, 0.0f64), |(lo, hi), &p| (lo.min(p), hi.max(p)));
    assert!(
        spread.1 - spread.0 > 0.05,
        "all probabilities alike: {spread:?}"
    );
}

/// A manifest with variants: `--variant auto` picks INT8 where the CPU has
/// int8 kernels (x86_64 with AVX2, any aarch64) and says why, `--variant`
/// forces one and names the others when asked for one that is not there,
/// and once `bench` has measured them on this CPU, `auto` follows the
/// measurements (here doctored so the FP32 variant is the faster).
#[test]
fn variants_are_chosen_per_cpu_then_by_bench_measurements() {
    let Some(dir) = tiny_models("--qop", "variants") else {
        return;
    };
    let sha = |f: &str| genrepi::model::sha256_file(&dir.join(f)).unwrap().0;
    let base = std::fs::read_to_string(dir.join("qop.toml")).unwrap();
    let manifest = dir.join("variants.toml");
    std::fs::write(
        &manifest,
        format!(
            "{}\n[[variant]]\nname = \"int8\"\nmodel = \"qop.onnx\"\nsha256 = \"{}\"\n\
             arithmetic = \"int8\"\naccuracy = \"untrained\"\n\n[[variant]]\nname = \"fp32\"\n\
             model = \"qdq.onnx\"\nsha256 = \"{}\"\narithmetic = \"fp32\"\n",
            &base[..base.find("[provenance]").unwrap()],
            sha("qop.onnx"),
            sha("qdq.onnx")
        ),
    )
    .unwrap();
    let cache = dir.join("cache");
    let run = |args: &[&str]| {
        let mut cmd = genrepi();
        if common::needs_qemu() {
            cmd.env("GENREPI_BENCH_WRAPPER", "qemu-aarch64");
        }
        let out = cmd
            .env("GENREPI_CACHE_DIR", &cache)
            .arg("--model")
            .arg(&manifest)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let variant_line = |stdout: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with("variant:"))
            .unwrap_or_default()
            .to_string()
    };

    let (code, out, err) = run(&["info"]);
    assert_eq!(code, Some(0), "{err}");
    let line = variant_line(&out);
    assert!(
        line.starts_with("variant:    int8 (int8): static rule"),
        "{line}"
    );
    assert!(
        out.contains("fp32       fp32  qdq.onnx (native here"),
        "{out}"
    );

    let (code, out, _) = run(&["--variant", "fp32", "info"]);
    assert_eq!(code, Some(0));
    assert!(
        variant_line(&out).starts_with("variant:    fp32 (fp32): asked for with --variant"),
        "{out}"
    );
    let (code, _, err) = run(&["--variant", "int4", "info"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no variant \"int4\"") && err.contains("int8, fp32"),
        "{err}"
    );

    let (code, out, err) = run(&["bench", "--windows", "3"]);
    assert_eq!(code, Some(0), "{err}");
    for v in ["int8", "fp32"] {
        assert!(
            out.lines().any(|l| l.starts_with(v) && l.contains(" 1 ")),
            "no {v} row at 1 thread in {out}"
        );
    }
    assert!(out.contains("_i32_"), "no int8 kernel in {out}");
    let cached: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(cached.len(), 1, "one cache file");
    let path = cached[0].path();
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for row in m["rows"].as_array_mut().unwrap() {
        let fast = row["variant"] == "fp32";
        row["median_ms"] = (if fast { 1.0 } else { 50.0 }).into();
    }
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    let (code, out, _) = run(&["info"]);
    assert_eq!(code, Some(0));
    assert!(
        variant_line(&out).starts_with(
            "variant:    fp32 (fp32): measured by `genrepi bench` on this CPU: 1.0 ms"
        ),
        "{out}"
    );
}

/// The shipped INT8 ResNet-152 on 2 threads: its im2cols (large enough to be
/// shared among the pool's threads) and matrix products give the same
/// integer results as on 1. Not under qemu, where it takes minutes.
#[test]
fn shipped_int8_model_gives_the_same_results_on_two_threads() {
    if common::needs_qemu() {
        eprintln!("skipped under qemu-aarch64: the ResNet-152 twice is too slow there");
        return;
    }
    let dir = temp_dir("int8-threads");
    let clip = common::noise_wav(&dir, "noise.wav", 4.0, 7);
    let manifest = repo("models/default.toml");
    let one = replay_probs(&manifest, &clip, 1);
    assert!(!one.is_empty());
    assert_eq!(
        replay_probs(&manifest, &clip, 2),
        one,
        "2 threads differ from 1"
    );
}
