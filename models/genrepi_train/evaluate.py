"""tract (`genrepi eval`) and onnxruntime on the same held-out windows; cross-validation."""
import hashlib
import json
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from .common import GENREPI, log
from .data import subset_folder
from .train import fit_fold, predict


def zipped_mb(path: Path) -> float:
    """Size after zlib (level 1): what pruning's zeros save in a download."""
    z, n = zlib.compressobj(1), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            n += len(z.compress(block))
    return (n + len(z.flush())) / 1e6


def zero_fraction(path: Path) -> float:
    m = onnx.load(path)
    w = [onnx.numpy_helper.to_array(t) for t in m.graph.initializer if len(t.dims) >= 2]
    return float(sum((a == 0).sum() for a in w) / max(1, sum(a.size for a in w)))


def tract_eval(manifest: Path, held_out: Path, report: Path):
    """`genrepi eval` (tract, one worker, one thread): its report and peak RSS."""
    t = subprocess.run(["/usr/bin/time", "-f", "%M", str(GENREPI), "--model", str(manifest),
                        "eval", str(held_out), "--report", str(report), "--jobs", "1"],
                       capture_output=True, text=True)
    if t.returncode != 0:
        errors = [l for l in t.stderr.splitlines() if "error" in l] or t.stderr.splitlines() or ["?"]
        raise RuntimeError(errors[0])
    return json.loads(report.read_text()), int(t.stderr.strip().splitlines()[-1]) / 1024


def ort_probs(onnx_path: Path, x: np.ndarray):
    """onnxruntime on one thread, one window at a time: probabilities and ms/window."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    probs, times = [], []
    for i in range(len(x)):
        t0 = time.perf_counter()
        logits = sess.run(None, {"input": x[i:i + 1]})[0]
        times.append(time.perf_counter() - t0)
        probs.append(torch.softmax(torch.from_numpy(logits), 1).numpy()[0])
    return np.array(probs), float(np.median(times) * 1e3)


def clip_accuracy(probs, y, clip):
    clips = sorted(set(clip.tolist()))
    return float(np.mean([probs[clip == c].mean(0).argmax() == y[clip == c][0] for c in clips]))


def evaluate(name, manifest, onnx_path, held_out, data, test, ort_input, out, skip_tract=None,
             tract_clips=None):
    """One table row: tract through `genrepi eval` and onnxruntime on the same
    held-out windows, and how far the two runtimes agree window by window.
    `tract_clips` limits tract to that many of the clips (for variants tract
    runs too slowly to evaluate on all of them here)."""
    key = json.dumps([name, hashlib.sha256(onnx_path.read_bytes()).hexdigest(), data.names(test),
                      skip_tract, tract_clips, GENREPI.stat().st_mtime])
    cached = out / "evals" / (hashlib.sha256(key.encode()).hexdigest()[:16] + ".json")
    if cached.exists():
        log(f"{name}: evaluated earlier (same file, clips and genrepi binary)")
        return json.loads(cached.read_text())
    row = evaluate_now(name, manifest, onnx_path, held_out, data, test, ort_input, out,
                       skip_tract, tract_clips)
    cached.parent.mkdir(exist_ok=True)
    cached.write_text(json.dumps(row))
    return row


def evaluate_now(name, manifest, onnx_path, held_out, data, test, ort_input, out, skip_tract,
                 tract_clips):
    sel = data.sel(test)
    y, clip = data.y[sel], data.clip[sel]
    row = {"variant": name, "file": onnx_path.name, "size_mb": onnx_path.stat().st_size / 1e6,
           "zipped_mb": zipped_mb(onnx_path)}
    probs, row["ort_ms"] = ort_probs(onnx_path, ort_input(data.x[sel]))
    row["ort_window_acc"] = float((probs.argmax(1) == y).mean())
    row["ort_clip_acc"] = clip_accuracy(probs, y, clip)
    if skip_tract:
        row["tract_error"] = skip_tract
        return row
    if tract_clips:
        held_out = subset_folder(held_out, tract_clips)
        row["tract_clips"] = tract_clips
    try:
        r, row["tract_peak_rss_mb"] = tract_eval(manifest, held_out,
                                                 out / f"{onnx_path.stem}.eval.json")
    except RuntimeError as e:
        row["tract_error"] = str(e)
        return row
    row.update(tract_window_acc=r["window_accuracy"], tract_clip_acc=r["clip_accuracy"],
               tract_ms=r["latency_ms"]["median"])
    # Window by window: the features export and eval cut the same windows.
    by_name = {Path(c["file"]).name: np.array(c["window_probs"]) for c in r["clips"]}
    agree, diff, n = 0, 0.0, 0
    for c in sorted(set(clip.tolist())):
        t = by_name.get(Path(data.meta["clips"][c]).name)
        if t is None:
            continue
        o = probs[clip == c]
        k = min(len(t), len(o))
        agree += int((t[:k].argmax(1) == o[:k].argmax(1)).sum())
        diff = max(diff, float(np.abs(t[:k] - o[:k]).max()))
        n += k
    row.update(agreement=agree / max(1, n), max_prob_diff=diff, windows=n)
    return row


def tract_max_diff(out: Path, rows, a: str, b: str):
    """Largest difference of any window probability between two variants in tract."""
    def probs(variant):
        row = next((r for r in rows if r["variant"] == variant and "tract_ms" in r), None)
        if row is None:
            return None
        r = json.loads((out / (Path(row["file"]).stem + ".eval.json")).read_text())
        return {Path(c["file"]).name: np.array(c["window_probs"]) for c in r["clips"]}
    pa, pb = probs(a), probs(b)
    if not pa or not pb:
        return None
    return float(max(np.abs(pa[k] - pb[k]).max() for k in pa if k in pb))


def fold_result(data, f, trained):
    """Accuracy of a `fit_fold` result on its held-out fold (PyTorch FP32)."""
    net, history, (_, _, test), _ = trained
    sel = data.sel(test)
    probs = predict(net, data.x[sel])
    y, clip = data.y[sel], data.clip[sel]
    row = {"fold": f, "clips": len(test), "epochs": len(history),
           "train_minutes": sum(h.get("seconds", 0) for h in history) / 60,
           "window_acc": float((probs.argmax(1) == y).mean()),
           "clip_acc": clip_accuracy(probs, y, clip)}
    # Full clips and short excerpts apart (an excerpt is one window).
    for part, keep in (("full", ~data.short), ("short", data.short)):
        chosen = [c for c in test if keep[c]]
        m = np.isin(clip, chosen)
        row[f"{part}_clips"] = len(chosen)
        row[f"{part}_window_acc"] = float((probs[m].argmax(1) == y[m]).mean()) if m.any() else None
        row[f"{part}_clip_acc"] = clip_accuracy(probs[m], y[m], clip[m]) if m.any() else None
    return row


def cross_validate(data, fold_of, k, limit, recipe, first, out, publish, crops=None):
    """Clip and window accuracy of `recipe` on each held-out fold (PyTorch
    FP32), handing the folds so far to `publish` after each. Fold 0 is
    `first`, the model already trained."""
    folds = []
    for f in range(min(k, limit)):
        folds.append(fold_result(data, f, first if f == 0 else
                                 fit_fold(data, fold_of, f, recipe, out, crops)))
        log(f"CV fold {f}: {json.dumps(folds[-1])}")
        publish(folds)
    return folds


def mean_sd(values):
    v = [x for x in values if x is not None]
    if not v:
        return "–"
    if len(v) == 1:
        return f"{100 * v[0]:.1f}% (one fold)"
    return f"{100 * np.mean(v):.1f} ± {100 * np.std(v, ddof=1):.1f}%"


def cv_table(results, k, args):
    """OUT/CV.md: each recipe's mean ± sd over its folds, then every fold."""
    L = [f"# Cross-validation: {k} folds by track",
         f"Data: {', '.join(str(d) for d in args.data)}. Written by "
         f"`models/pipeline.py --cv-only --recipes {args.recipes}`; PyTorch FP32 on each "
         "fold's held-out tracks (never trained on). Full clips and short excerpts are "
         "reported apart.", "",
         "| recipe | folds | full clips: window | full clips: clip | excerpts | all tracks: clip "
         "| training min/fold |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        fs = r["folds"]
        L.append(f"| {name} | {len(fs)} of {k} | {mean_sd([f['full_window_acc'] for f in fs])} | "
                 f"{mean_sd([f['full_clip_acc'] for f in fs])} | "
                 f"{mean_sd([f['short_clip_acc'] for f in fs])} | "
                 f"{mean_sd([f['clip_acc'] for f in fs])} | "
                 f"{np.mean([f['train_minutes'] for f in fs]):.1f} |" if fs else
                 f"| {name} | 0 of {k} | | | | | |")
    L += ["", "| recipe | fold | full clips | excerpts | full: window | full: clip | excerpts "
          "| epochs | training min |", "|---|---|---|---|---|---|---|---|---|"]
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}%"
    for name, r in results.items():
        for f in r["folds"]:
            L.append(f"| {name} | {f['fold']} | {f['full_clips']} | {f['short_clips']} | "
                     f"{pct(f['full_window_acc'])} | {pct(f['full_clip_acc'])} | "
                     f"{pct(f['short_clip_acc'])} | {f['epochs']} | {f['train_minutes']:.1f} |")
    return L


def cv_metrics(folds, k):
    """The cross-validation part of the shipped manifest's metrics."""
    cv = [f["clip_acc"] for f in folds]
    if len(cv) < k:
        return f"cross-validation not finished ({len(cv)} of {k} folds trained)"
    return f"{k}-fold CV clip accuracy {100 * np.mean(cv):.1f} ± {100 * np.std(cv, ddof=1):.1f}%"


def cv_section(folds, k, how):
    """The report's cross-validation section: all held-out tracks, then full
    clips and short excerpts apart."""
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}%"
    L = [f"## Cross-validation ({len(folds)} of {k} folds)", how, "",
         "| fold | held-out clips (full + excerpts) | epochs run | window acc | clip acc "
         "| full clips: window | full clips: clip | excerpts |",
         "|---|---|---|---|---|---|---|---|"]
    for f in folds:
        L.append(f"| {f['fold']} | {f['clips']} ({f.get('full_clips', '?')} + "
                 f"{f.get('short_clips', '?')}) | {f['epochs']} | {pct(f['window_acc'])} | "
                 f"{pct(f['clip_acc'])} | {pct(f.get('full_window_acc'))} | "
                 f"{pct(f.get('full_clip_acc'))} | {pct(f.get('short_clip_acc'))} |")
    if folds:
        col = lambda key: mean_sd([f.get(key) for f in folds])
        L.append(f"| **mean ± sd** | | | {col('window_acc')} | **{col('clip_acc')}** | "
                 f"{col('full_window_acc')} | **{col('full_clip_acc')}** | "
                 f"**{col('short_clip_acc')}** |")
    if len(folds) < k:
        L.append(f"\n**Incomplete:** {k - len(folds)} fold(s) not trained yet "
                 "(`--cv-limit`, or the run is still going or was stopped; a rerun trains only "
                 "what is missing).")
    return L
