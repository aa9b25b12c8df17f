//! Model formats genrepi loads beyond plain FP32 ONNX.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use common::{genrepi, python, repo, skip_without_python, temp_dir};

/// Probabilities of each window that `replay --json` prints.
fn replay_probs(manifest: &Path, clip: &Path) -> Vec<Vec<f64>> {
    let out = genrepi()
        .arg("--model")
        .arg(manifest)
        .args(["replay", "--json"])
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
    let dir = temp_dir("fp16-weights");
    let made = Command::new(python())
        .arg(repo("models/tools/make_tiny_model.py"))
        .arg("--wide")
        .arg(&dir)
        .output()
        .is_ok_and(|o| o.status.success());
    if !made {
        return skip_without_python("python3 with onnx (make_tiny_model.py --wide)");
    }
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
    let (a, b) = (replay_probs(&fp32, &clip), replay_probs(&fp16, &clip));
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
    let dir = temp_dir("int8-qop");
    let made = Command::new(python())
        .arg(repo("models/tools/make_tiny_model.py"))
        .arg("--qop")
        .arg(&dir)
        .output()
        .is_ok_and(|o| o.status.success());
    if !made {
        return skip_without_python("python3 with onnx (make_tiny_model.py --qop)");
    }
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

    let Some(gtzan) = common::gtzan_mini() else {
        return;
    };
    let clip = gtzan.join("rock/rock.00003.wav");
    let (a, b) = (replay_probs(&qop, &clip), replay_probs(&qdq, &clip));
    assert!(a.len() > 20);
    assert_eq!(a.len(), b.len());
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
