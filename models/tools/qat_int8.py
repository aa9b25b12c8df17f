#!/usr/bin/env python3
"""Quantization-aware fine-tuning for static INT8: the shipped model, made
robust to the rounding that onnxruntime's static quantizer gives it.

    python3 models/tools/qat_int8.py [--model models/default.toml] [--epochs 10] [--lr 1e-4] [--report | --report-only]

Post-training static INT8 of the shipped ResNet-152 (models/REPORT.md) loses
far more than 2 points, because the rounding of 151 convolution inputs piles
up through 50 residual blocks. This fine-tunes the FP32 network with that
rounding simulated in the forward pass (straight-through gradients), so
the weights settle where the rounding costs little, then quantizes it with
the pipeline's static INT8 settings:

1. The manifest's model (FP32, or FP16 on disk: widened here) becomes a
   PyTorch module that runs the ONNX graph itself, so the weights it trains
   are exactly the ones that are quantized (batch norm is already folded).
2. onnxruntime's `quantize_static` on the FP32 model says which tensors it
   quantizes; their per-tensor int8 ranges come from the calibration windows
   (MinMax, as onnxruntime computes them) and are recomputed every 10
   steps. Weights: per-channel symmetric int8, recomputed every step.
3. Fine-tuning on fold 0's training clips (the ones the model trained on:
   the held-out clips are never used) towards the FP32 model's outputs
   (distillation), one-cycle learning rate, keeping the epoch whose
   simulated INT8 agrees best with FP32 on the validation clips (epoch 0 is
   the model unchanged).
4. The result is quantized exactly as the pipeline's static INT8 variant and
   evaluated with `genrepi eval` (tract) and onnxruntime on the held-out
   clips, beside the FP32 model and plain post-training static INT8.

Writes OUT/qat.json (default models/work/qat) and the INT8 model's manifest
OUT/int8-static-qat.toml; `--report` also rewrites the "quantization-aware"
section of models/REPORT.md (`--report-only`: from OUT/qat.json alone). The fine-tuning itself is
models/genrepi_train/qat.py, which models/pipeline.py uses for its own
variant of the same name.
"""

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models"))
from genrepi_train.common import log  # noqa: E402
from genrepi_train.data import (  # noqa: E402
    Data, features, fold_split, held_out_folder, stratified_folds)
from genrepi_train.evaluate import evaluate_now  # noqa: E402
from genrepi_train.qat import (  # noqa: E402
    DEFAULT_FORMAT, FORMAT_WORDS, FORMATS, finetune, quantize, widened)


# ---------------------------------------------------------------- standalone
def manifest_for(onnx_path: Path, base: Path, variant: str) -> Path:
    """`base`'s manifest pointing at `onnx_path` (beside it)."""
    text = base.read_text()
    model = next(l for l in text.splitlines() if l.startswith("model ="))
    sha = next(l for l in text.splitlines() if l.startswith("sha256 ="))
    variant_line = next((l for l in text.splitlines() if l.startswith("variant =")), None)
    text = text.replace(model, f"model = {json.dumps(onnx_path.name)}")
    text = text.replace(sha, f'sha256 = "{hashlib.sha256(onnx_path.read_bytes()).hexdigest()}"')
    if variant_line:
        text = text.replace(variant_line, f"variant = {json.dumps(variant)}")
    path = onnx_path.with_suffix(".toml")
    path.write_text(text)
    return path


SECTION = "## Static INT8, quantization-aware fine-tuned"


def section(result) -> list:
    """The report's section on the fine-tuned static INT8 model."""
    by = {r["variant"]: r for r in result["rows"]}
    fp, ptq, qat = by["FP32"], by["INT8 static (post-training)"], by["INT8 static, QAT"]
    pct = lambda v: f"{100 * v:.1f}%"
    d = lambda r, k: f"{100 * (r[k] - fp[k]):+.1f}"
    ok = (qat["tract_clip_acc"] - fp["tract_clip_acc"] >= -0.02
          and qat["tract_window_acc"] - fp["tract_window_acc"] >= -0.02)
    h = result["history"]
    best = max(h, key=lambda e: (e["val_agreement"], e["val_window_acc"]))
    L = [SECTION,
         f"Written by `{result['command']}` ({result['minutes']:.0f} min). The model "
         f"`{result['model']}` fine-tuned for {len(h) - 1} epoch(s) on fold 0's {result['fit']} "
         "training clips with int8 rounding simulated where and as onnxruntime's static "
         "quantizer applies it in the " + FORMAT_WORDS[result.get("format", "qdq-per-channel")]
         + " (per-tensor activations, ranges recomputed from the calibration windows as "
         "training goes), learning to give FP32's "
         f"outputs (distillation, lr {result['lr']}). Kept: the epoch whose simulated INT8 "
         f"picks FP32's genre most often on the {result['val']} validation clips (epoch "
         f"{best['epoch']}: {pct(best['val_agreement'])}, against "
         f"{pct(h[0]['val_agreement'])} unchanged; epoch 0 is the model unchanged). Then "
         "quantized in that format and evaluated on the same "
         f"{result['held_out']} held-out clips:", "",
         "| model | MB on disk | window acc tract | clip acc tract | window acc ORT "
         "| clip acc ORT | tract ≡ ORT argmax | vs FP32 in tract (window, clip) | tract ms "
         "| ORT ms | tract peak RSS MB |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (fp, ptq, qat):
        L.append(f"| {r['variant']} | {r['size_mb']:.1f} | {pct(r['tract_window_acc'])} | "
                 f"{pct(r['tract_clip_acc'])} | {pct(r['ort_window_acc'])} | "
                 f"{pct(r['ort_clip_acc'])} | {pct(r['agreement']) if 'agreement' in r else '–'} "
                 f"| {d(r, 'tract_window_acc')}, {d(r, 'tract_clip_acc')} | "
                 f"{r['tract_ms']:.1f} | {r['ort_ms']:.1f} | {r['tract_peak_rss_mb']:.0f} |")
    L += ["", "Quantization-aware fine-tuned static INT8 is " + (
        "**within 2 points of FP32** in tract on these clips." if ok else
        "**still not within 2 points of FP32** in tract on these clips.") +
        f" Latency (median per window, one thread) and memory measured in the same run on "
        f"{result.get('machine', machine())}, not the machine of the table above. "
        f"Its manifest: `{result.get('manifest', 'models/work/qat/int8-static-qat.toml')}` "
        "(`genrepi --model … replay FILE`)."]
    return L


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models/default.toml")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/gtzan-mini")
    ap.add_argument("--out", type=Path, default=ROOT / "models/work/qat")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib", type=int, default=64, help="calibration windows (about)")
    ap.add_argument("--format", choices=sorted(FORMATS), default=DEFAULT_FORMAT,
                    help="the static INT8 format to simulate and make (default %(default)s)")
    ap.add_argument("--report", action="store_true",
                    help=f"rewrite the '{SECTION[3:]}' section of models/REPORT.md")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report's section from OUT/qat.json (no training)")
    args = ap.parse_args()
    if args.report_only:
        return write_section(section(json.loads((args.out / "qat.json").read_text())))
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    text = args.model.read_text()
    field = lambda key: json.loads(next(l for l in text.splitlines()
                                        if l.startswith(f"{key} =")).split("=", 1)[1])
    x, y, clip, meta = features(args.data, args.out)
    data = Data(x, y, clip, meta)
    fold_of = stratified_folds(data.clip_labels, args.folds, args.seed, data.tracks)
    fit, val, test = fold_split(data, fold_of, 0, args.seed)
    if sorted(field("held_out")) != sorted(data.names(test)):
        raise SystemExit(f"error: {args.model}: its held-out clips are not fold 0 of this split")
    fsel, vsel = data.sel(fit), data.sel(val)
    calib = x[fsel][:: max(1, int(fsel.sum()) // args.calib)]  # the pipeline's choice
    held_out = held_out_folder(data, test, args.out)

    src = args.model.parent / field("model")
    fp32 = args.out / "fp32.onnx"
    onnx.save(widened(onnx.load(src)), fp32)
    tag = "" if args.format == DEFAULT_FORMAT else f"-{args.format}"
    ptq = args.out / f"int8-static{tag}.onnx"
    quantize(fp32, ptq, calib, args.format)
    tuned = args.out / f"qat-fp32{tag}.onnx"
    history = finetune(fp32, tuned, x[fsel], y[fsel], x[vsel], y[vsel], calib, args.epochs,
                       args.lr, seed=args.seed, fmt=args.format)
    qat = args.out / f"int8-static-qat{tag}.onnx"
    quantize(tuned, qat, calib, args.format)
    rows = []
    for name, path, variant in [("FP32", fp32, "FP32 (the shipped weights widened)"),
                                ("INT8 static (post-training)", ptq, f"INT8 static, {args.format}"),
                                ("INT8 static, QAT", qat,
                                 f"INT8 static, {args.format}, quantization-aware")]:
        manifest = manifest_for(path, args.model, variant)
        rows.append(evaluate_now(name, manifest, path, held_out, data, test, lambda xs: xs,
                                   args.out, None, None))
        log(json.dumps(rows[-1]))
    result = {"command": "python3 models/tools/qat_int8.py" + (
                  f" --epochs {args.epochs}" if args.epochs != 10 else "") + (
                  f" --lr {args.lr}" if args.lr != 1e-4 else "") + (
                  f" --format {args.format}" if args.format != DEFAULT_FORMAT else "") + " --report",
              "machine": machine(),
              "model": str(args.model.relative_to(ROOT)) if args.model.is_relative_to(ROOT)
              else str(args.model),
              "fit": len(fit), "val": len(val), "held_out": len(test), "lr": args.lr,
              "calib": len(calib), "format": args.format, "history": history, "rows": rows,
              "minutes": (time.time() - started) / 60}
    (args.out / "qat.json").write_text(json.dumps(result, indent=1))
    lines = section(result)
    print("\n".join(lines))
    if args.report:
        write_section(lines)


def machine() -> str:
    flags = Path("/proc/cpuinfo").read_text()
    return (f"this x86_64 machine ({os.cpu_count()} cores, "
            + ("AVX-512" if "avx512f" in flags else "AVX2") + ")")


def write_section(lines):
    """Puts `lines` into models/REPORT.md, after the static INT8 section."""
    path = ROOT / "models/REPORT.md"
    report = path.read_text()
    block = "\n".join(lines) + "\n\n"
    if SECTION in report:
        start = report.index(SECTION)
        end = report.find("\n## ", start)
        report = report[:start] + block + (report[end + 1:] if end >= 0 else "")
    else:
        at = report.index("\n## ", report.index("## Static INT8 against FP32")) + 1
        report = report[:at] + block + report[at:]
    path.write_text(report)
    log(f"wrote {path}")

if __name__ == "__main__":
    main()
