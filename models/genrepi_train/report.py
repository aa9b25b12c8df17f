"""models/REPORT.md, its pictures, and shipping the chosen variant as models/default.toml."""
import json
import os
import shutil
from pathlib import Path

import numpy as np

from .common import ROOT, STATE, bench_ratio_lines, log, machine_words, write_atomic, write_manifest
from .evaluate import cv_metrics, cv_section
from .train import second_stage_words
from .variants import (
    DYN, FP16, FP16W, FP32, PRUNED, QOP, SEED_IN, STATIC, STATIC7, STATIC_MIXED, STATIC_QAT,
    STATIC_RAW)


# ---------------------------------------------------------------- ship
SHIP_VARIANT = STATIC_QAT  # the default: INT8 on tract's integer kernels


# The FP16-on-disk FP32 file of the same weights (116 MB) is written to OUT
# but not copied into models/: INT8 alone keeps a model change small enough
# to land (58.5 MB added; the committed model files stay <= 200 MB in all).
# PIPELINE_SHIP_FP16W=1 ships it too, as variants fp32 and fp16.
SHIP_ALSO = FP16W


def ship(rows, provenance, folds, k, name, labels, out):
    """Copies the INT8 model into models/ and writes models/default.toml with
    it as the default, its held-out accuracy and the cross-validated
    accuracy in the provenance. With PIPELINE_SHIP_FP16W=1 the FP16-on-disk
    FP32 model of the same weights ships beside it as variants fp32 and
    fp16 (derived at load on CPUs with FP16 arithmetic)."""
    by = {r["variant"]: r for r in rows}
    acc = lambda r, engine="tract": (
        f"held-out fold 0 ({engine}): clip {100 * r[engine + '_clip_acc']:.1f}%, "
        f"window {100 * r[engine + '_window_acc']:.1f}%")
    int8 = by[SHIP_VARIANT]
    tags = [("int8", int8)]
    if os.environ.get("PIPELINE_SHIP_FP16W") == "1":
        tags.append(("fp16w", by[SHIP_ALSO]))
    files = {}
    for tag, row in tags:
        files[tag] = ROOT / "models" / f"{name}.{tag}.onnx"
        shutil.copyfile(out / row["file"], files[tag])
    variants = [("int8", files["int8"], "int8", acc(int8))]
    if "fp16w" in files:
        fp16 = by.get(FP16, {})
        fp16_acc = ("computed in FP16 from the fp32 variant's weights at load; "
                    + (acc(fp16, "ort") if fp16.get("ort_clip_acc") is not None
                       else "not evaluated")
                    + "; checked on the Pi 5's CPU by cross/verify-aarch64.sh")
        variants += [("fp32", files["fp16w"], "fp32", acc(by[SHIP_ALSO])),
                     ("fp16", files["fp16w"], "fp16", fp16_acc)]
    metrics = (acc(int8) + " (INT8); " + cv_metrics(folds, k) + " (FP32 recipe)")
    write_manifest(files["int8"], name, labels, "1x128x130",
                   dict(provenance, variant=SHIP_VARIANT, metrics=metrics,
                        report="models/REPORT.md"),
                   manifest=ROOT / "models/default.toml", variants=variants)
    log(f"shipped {', '.join(f.name for f in files.values())} as models/default.toml "
        f"({metrics})")
    return {"file": files["int8"].name, "metrics": metrics}


# ---------------------------------------------------------------- report
SEED = {  # the seed project's Table 1: full GTZAN, 80/20 split, 3x299x299
    FP32: "74% val., 89% train; 256 MB (modified baseline 78%)",
    FP16: "78%, 116 MB; on the Pi 77.21%",
    DYN: "77.5%, 59 MB; on the Pi 76.34%",
    STATIC: "6%, 60.1 MB (broken)",
    PRUNED: "74%, 235 MB (\"0.5%-pruned\")",
}


def shipped_section(out: Path, rows, pics: Path, report_dir: Path, data):
    """Per-genre recall and the confusion matrix of the shipped variant on
    its held-out tracks, from its `genrepi eval --report` JSON (tract), with
    full clips and short excerpts apart, and a heatmap of the matrix."""
    name = name_of(rows, SHIP_VARIANT)
    path = out / f"{name}.eval.json"
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    labels = r["labels"]
    short = {Path(c).name: s is not None for c, s in zip(data.meta["clips"],
                                                           data.meta.get("clip_short", []))}
    parts = {"full clips": [], "excerpts": []}
    for c in r["clips"]:
        parts["excerpts" if short.get(Path(c["file"]).name) else "full clips"].append(c)
    pct = lambda a, b: f"{100 * a / b:.0f}% ({a}/{b})" if b else "–"
    L = ["## The shipped model on its held-out tracks",
         f"*{SHIP_VARIANT}* in tract (`genrepi eval --report`, the source of truth: "
         f"`{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}`), "
         f"fold 0's {len(r['clips'])} held-out clips, which no training step saw. Recall per "
         "genre (clips whose verdict is their genre):", "",
         "| genre | full clips | excerpts | all |", "|---|---|---|---|"]
    for g in labels:
        cells = []
        for part in ("full clips", "excerpts"):
            cs = [c for c in parts[part] if c["label"] == g]
            cells.append(pct(sum(c["predicted"] == g for c in cs), len(cs)))
        cs = [c for c in r["clips"] if c["label"] == g]
        cells.append(pct(sum(c["predicted"] == g for c in cs), len(cs)))
        L.append(f"| {g} | " + " | ".join(cells) + " |")
    totals = []
    for cs in (parts["full clips"], parts["excerpts"], r["clips"]):
        totals.append(pct(sum(c["predicted"] == c["label"] for c in cs), len(cs)))
    L.append("| **all** | " + " | ".join(f"**{t}**" for t in totals) + " |")
    conf = np.array(r["confusion"])
    L += ["", "Confusion matrix (clips; rows: true genre, columns: predicted):", "",
          "| true genre | " + " | ".join(g[:4] for g in labels) + " |",
          "|---|" + "---|" * len(labels)]
    for g, row in zip(labels, conf):
        L.append(f"| {g} | " + " | ".join(str(v) if v else "·" for v in row) + " |")
    png = pics / "confusion.png"
    if plot_confusion(conf, labels, png, f"Shipped model: INT8 QOperator, QAT (tract)\n"
                      f"{len(r['clips'])} held-out clips of fold 0"):
        L += ["", f"![confusion matrix of the shipped model]({png.relative_to(report_dir)})"]
    return L


def pyplot(picture: str):
    """matplotlib's pyplot on a file-only backend, or None (logged) when
    matplotlib is not installed: the report is then written without
    `picture`."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log(f"matplotlib missing: no {picture} picture")
        return None
    return plt


def plot_confusion(conf, labels, png: Path, title: str) -> bool:
    """A heatmap of `conf` (rows true, columns predicted), row-normalised
    colour with the counts written in; False when matplotlib is missing."""
    plt = pyplot("confusion-matrix")
    if plt is None:
        return False
    rows = conf.sum(1, keepdims=True)
    frac = np.divide(conf, rows, out=np.zeros(conf.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=100)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(conf.shape[0]):
        for j in range(conf.shape[1]):
            if conf[i, j]:
                ax.text(j, i, str(conf[i, j]), ha="center", va="center",
                        color="white" if frac[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted genre")
    ax.set_ylabel("true genre")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true genre's clips")
    fig.tight_layout()
    save_png(fig, png)
    plt.close(fig)
    return True


def save_png(fig, png: Path):
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    write_atomic(png, buf.getvalue())


def tradeoff_plot(rows, png: Path, title: str) -> bool:
    """Accuracy against tract latency, one point per variant tract ran
    (clip accuracy filled, window accuracy hollow)."""
    plt = pyplot("accuracy-latency")
    if plt is None:
        return False
    pts = [r for r in rows if r.get("tract_ms") is not None and not r.get("tract_clips")]
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=100)
    markers = "osD^vP*Xhp<>"
    for i, r in enumerate(pts):
        c, m = plt.cm.tab20(i % 20), markers[i % len(markers)]
        ax.scatter(r["tract_ms"], 100 * r["tract_clip_acc"], color=c, marker=m, s=70,
                   label=f"{r['variant']} ({r['size_mb']:.0f} MB)")
        ax.scatter(r["tract_ms"], 100 * r["tract_window_acc"], facecolors="none",
                   edgecolors=c, marker=m, s=70)
        ax.plot([r["tract_ms"]] * 2, [100 * r["tract_window_acc"], 100 * r["tract_clip_acc"]],
                color=c, lw=0.8)
    ax.set_xlabel("tract ms per window (median, one thread)")
    ax.set_ylabel("held-out accuracy, % (filled: clip, hollow: window)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    save_png(fig, png)
    plt.close(fig)
    return True


def shown(path: Path) -> str:
    """A path as the report names it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def bench_section(out: Path, command: str = None, fp32_is: str = None):
    """tract against onnxruntime on the shipped files, from OUT/bench.json
    (`models/tools/bench_table.py --model OUT/bench.toml --json OUT/bench.json`,
    run on the idle machine; `command` names another run that wrote it, and
    `fp32_is` what its fp32 row is)."""
    path = out / "bench.json"
    if not path.exists():
        return []
    rows = json.loads(path.read_text())
    rounds = max((len(r.get("rounds", [])) for r in rows), default=0)
    command = command or (f"python3 models/tools/bench_table.py --model {shown(out)}/bench.toml "
                          + (f"--rounds {rounds} " if rounds > 1 else "")
                          + f"--json {shown(out)}/bench.json")
    fp32_is = fp32_is or "the FP16-on-disk file of the same weights, widened at load"
    L = ["## INT8 on tract's integer kernels: speed and memory",
         f"`{command}` on the idle machine (" + machine_words() + "): `genrepi "
         "bench` for tract, then onnxruntime on the same files, each row its own process, one "
         "window of 1×128×130 at a time after a warm-up"
         + (f", {rounds} rounds alternating the engines (median ms: the median of the rounds; "
            "p95 and peak RSS: the largest)" if rounds > 1 else "")
         + f". The fp32 row is {fp32_is}. `fma`: the TRACT_AVX512_FMA_UNITS an int8 row ran "
         "with (1: tract's 8×8 int8 kernel, 2: its 16×16); `--variant auto` runs the faster.",
         "",
         "| engine | variant | threads | fma | load ms | median ms | p95 ms | peak RSS MiB | kernels |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['engine']} | {r['variant']} | {r['threads']} | {r.get('fma_units') or '-'} | "
                 f"{r['load_ms']:.0f} | {r['median_ms']:.1f} | {r['p95_ms']:.1f} | "
                 f"{r['peak_rss'] / 2**20:.0f} | {' '.join(r.get('kernels', [])) or ''} |")
    L.append("")
    L += bench_ratio_lines(rows, markdown=True)
    return L + [""]


def bench_manifest(rows, provenance, name, labels, out: Path):
    """OUT/bench.toml: the shipped INT8 file and the FP16-on-disk FP32 file of
    the same weights as variants int8 and fp32 (for bench_table.py)."""
    by = {r["variant"]: r for r in rows}
    if SHIP_VARIANT not in by or SHIP_ALSO not in by:
        return None
    i8, f16w = out / by[SHIP_VARIANT]["file"], out / by[SHIP_ALSO]["file"]
    return write_manifest(i8, name, labels, "1x128x130", dict(provenance, variant="bench"),
                          manifest=out / "bench.toml",
                          variants=[("int8", i8, "int8", "see models/REPORT.md"),
                                    ("fp32", f16w, "fp32", "see models/REPORT.md")])


def write_report(path: Path, args, data, split, results, shipped):
    fit, val, test = split
    rows, compare, folds = results["rows"], results["compare"], results["folds"]
    pct = lambda v: "–" if v is None or v != v else f"{100 * v:.1f}%"
    num = lambda v, f="{:.1f}": "–" if v is None or v != v else f.format(v)
    by = {r["variant"]: r for r in rows}
    runs = "once" if len(folds) == 1 else f"{len(folds)} times"
    given = [f"--{k.replace('_', '-')} {getattr(args, k)}"
             for k in ("recipe", "qat_epochs", "prune_epochs", "compare_epochs", "cv_limit")
             if getattr(args, k) not in (None, "loop")]
    if Path(args.out).resolve() != ROOT / "models/work":
        given.append(f"--out {shown(args.out)}")
    cmd = " ".join(["python3 models/pipeline.py"] + (["--quick"] if args.quick else []) + given
                   + (["--ship"] if args.ship else []))
    h = results["history"]
    cached = results.get("cached_training_minutes", 0.0)
    fit_val = bool(results["recipe"].get("fit_val"))
    # A fit_val recipe trains on its validation clips too and keeps its last
    # epoch; --report-only's split lists them apart.
    trained = len(set(data.names(fit)) | set(data.names(val))) if fit_val else len(fit)
    best = len(h) if fit_val else int(np.argmax([e["val_window_acc"] for e in h])) + 1
    L = [
        "# genrepi model report",
        "",
        f"Generated by `{cmd}` ({results['minutes']:.0f} min on this machine: "
        f"{os.cpu_count()} CPU cores, no GPU"
        + (f"; it loaded {cached:.0f} min of training from its cache, networks that earlier "
           f"runs trained with the same data and settings, so from scratch it takes about "
           f"{results['minutes'] + cached:.0f} min" if cached >= 1 else "")
        + "). Everything below is measured in that run"
        + (" (the text rewritten from its results with `--report-only`)." if args.report_only
           else "."),
        "",
        "## Data and split",
        f"- {', '.join(f'`{d}`' for d in args.data)}: **{len(data.meta['clips'])} real GTZAN "
        f"clips of {len(set(data.tracks))} tracks**, {int(data.short.sum())} of them shorter "
        f"than one window (made into one by `short_input = \"{STATE.short_input}\"`) "
        f"({len(data.y)} windows of 3 s from `genrepi features`). "
        "This is a small subset of GTZAN's 1000 clips, so these accuracies are **not comparable "
        "to full-GTZAN figures** such as the seed's; run the same command on the full set for those.",
        f"- Split by track, stratified by genre, seed {args.seed}, into {args.folds} folds. The "
        f"shipped model holds out fold 0 (**{len(test)} clips**, never seen in training); of the "
        + (f"rest, all {trained} clips train; {len(val)} of them also serve as validation "
           "clips (logged only: the last epoch's weights are kept)." if fit_val else
           f"rest, {len(fit)} clips train and {len(val)} validate (early stopping)."),
        "- Clip accuracy: argmax of the mean of a clip's window probabilities. Window accuracy: "
        "each 3-s window on its own.",
        f"- Training: {results['recipe']['arch']} from scratch (no pretrained weights), 1×128×130 "
        f"input, AdamW lr {args.lr} one-cycle, batch {args.batch}, "
        + second_stage_words(results["recipe"]) + "time shift, gain, SpecAugment "
        f"masks and mixup; {len(h)} epochs run"
        + (f", weights of epoch {best} kept (the last)." if fit_val else
           f" (at most {results['recipe']['epochs']}, patience "
           f"{results['recipe'].get('patience', args.patience)}), weights of epoch {best} kept "
           "(best validation)."),
        "",
        "## Variants of the shipped model (held-out fold 0)",
        "Latency: median per window, one thread, one window at a time, on this machine ("
        + machine_words() + "), measured as each variant was evaluated; other work shared the "
        "machine at times, so compare speeds in the idle benchmark below (when it is there), not "
        "across these rows. Peak RSS: the whole `genrepi eval` process. Agreement: "
        "windows where tract and onnxruntime pick the same genre; Δp: the largest difference "
        "of any probability between them.",
        "",
        "| variant | MB on disk | MB zipped | window acc tract | clip acc tract | window acc ORT "
        "| clip acc ORT | tract ≡ ORT argmax | max Δp | tract ms | ORT ms | tract peak RSS MB "
        "| seed's Table 1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows + list(compare.values()):
        sub = f" ({r['tract_clips']} clips)" if r.get("tract_clips") else ""
        L.append(
            f"| {r['variant']}{sub} | {r['size_mb']:.1f} | {r['zipped_mb']:.1f} | "
            f"{pct(r.get('tract_window_acc'))} | {pct(r.get('tract_clip_acc'))} | "
            f"{pct(r['ort_window_acc'])} | {pct(r['ort_clip_acc'])} | {pct(r.get('agreement'))} | "
            f"{num(r.get('max_prob_diff'), '{:.4f}')} | {num(r.get('tract_ms'))} | "
            f"{num(r['ort_ms'])} | {num(r.get('tract_peak_rss_mb'), '{:.0f}')} | "
            f"{SEED.get(r['variant'], '' if r['variant'] != SEED_IN else 'the seed input')} |")
    for r in rows:
        if "tract_error" in r:
            L.append(f"\n{r['variant']}, tract: {r['tract_error']}.")
        if r.get("tract_clips"):
            L.append(f"\n{r['variant']}: tract evaluated on {r['tract_clips']} of the "
                     f"{len(test)} held-out clips only ({r.get('windows', '?')} windows): its "
                     f"dynamic int8 path runs at {num(r.get('tract_ms'), '{:.0f}')} ms per "
                     "window here (DynamicQuantizeLinear and requantization around every "
                     "matmul). onnxruntime's columns cover all clips; the agreement columns "
                     "compare the two on the same windows.")
    L += [""] + cv_section(folds, args.folds, (
        f"The same recipe trained {runs}, each time holding out one fold "
        "(PyTorch FP32, which agrees with tract's FP32 above). Fold 0 is the shipped model's "
        "FP32 weights, before quantization. `--cv-only --recipes ...` compares recipes on "
        "the same folds (OUT/CV.md)."))
    pics = path.parent / "report"
    L += [""] + shipped_section(args.out, rows, pics, path.parent, data)
    if tradeoff_plot(rows + list(compare.values()), pics / "accuracy-latency.png",
                     f"Variants of the shipped weights on fold 0's {len(test)} held-out clips "
                     f"(tract)\n{machine_words()}"):
        L += ["", "## Accuracy against latency",
              "Every variant tract ran on all held-out clips (the table above): clip accuracy "
              "filled, window accuracy hollow, against tract's median time per window on one "
              "thread.", "",
              f"![accuracy against latency]({(pics / 'accuracy-latency.png').relative_to(path.parent)})"]
    L += [""] + bench_section(args.out)
    st, fp = by.get(STATIC, {}), by.get(FP32, {})
    if fp.get("tract_clip_acc") is not None:
        L += ["", "## Static INT8 against FP32",
              f"On the same {len(test)} held-out clips (tract; onnxruntime in brackets), "
              f"calibrated on {results['calib']} real training windows, differences from FP32 "
              "in points (within 2 points means at most 2 points worse):", ""]
        within = {}
        for v in (STATIC, QOP, STATIC_QAT, STATIC_MIXED, STATIC7):
            r = by.get(v, {})
            if r.get("tract_clip_acc") is None:
                continue
            d_clip = 100 * (r["tract_clip_acc"] - fp["tract_clip_acc"])
            d_win = 100 * (r["tract_window_acc"] - fp["tract_window_acc"])
            d_ort = 100 * (r["ort_window_acc"] - fp["ort_window_acc"])
            ok = within[v] = d_clip >= -2 and d_win >= -2
            L.append(f"- {v} ({r['size_mb']:.0f} MB): clip {d_clip:+.1f}, window {d_win:+.1f} "
                     f"({d_ort:+.1f}): " + ("**within 2 points**" if ok else "**not within 2 points**"))
        qat = by.get(STATIC_QAT, {})
        if within.get(STATIC) is False and STATIC_QAT in within:
            qh = results.get("qat_history") or []
            L += ["", "Post-training static INT8 of every layer loses more than 2 points: the "
                  "rounding of every convolution input piles up through the residual blocks. "
                  "Quantization-aware fine-tuning (models/genrepi_train/qat.py) trains the FP32 "
                  f"network for {max(0, len(qh) - 1)} epoch(s) on the training clips with that "
                  "rounding simulated, exactly where and how onnxruntime's quantizer applies it "
                  "in the format tract runs on integer kernels (QOperator: per-tensor int8 "
                  "activations and weights, residual additions in int8, the final Gemm in "
                  "float), keeps the epoch whose simulated INT8 agrees best with FP32 on the "
                  "validation clips" + (" (which this recipe also trained on: agreement with "
                                        "FP32 needs no unseen clips)" if fit_val else "")
                  + f", and quantizes the result in that format: {pct(qat.get('tract_window_acc'))} window, "
                  f"{pct(qat.get('tract_clip_acc'))} clip accuracy in tract, "
                  + ("**within 2 points of FP32** with every layer in INT8."
                     if within[STATIC_QAT] else "still **not within 2 points** of FP32.")]
        elif within.get(STATIC) is False and within.get(STATIC_MIXED):
            L += ["", "Quantizing every layer of this ResNet-152 costs far more than 2 points: "
                  "the error of 151 quantized convolution inputs piles up through the 50 residual "
                  "blocks. "
                  "Keeping layer3 (36 of the 50 blocks) in FP32 removes it; keeping only its "
                  "first 1×1, its 3×3 or its last 1×1 convolutions, or its second half, in FP32 "
                  "did not (models/tools/int8_sensitivity.py; figures in the closing note of "
                  "issue 4). That model keeps ~70% "
                  "of its weights in FP32, so it saves little; a smaller FP32 set or "
                  "quantization-aware fine-tuning is the next step."]
    s7 = by.get(STATIC7, {})
    if st.get("agreement") is not None and s7.get("agreement") is not None:
        L += ["", f"tract and onnxruntime pick the same genre in {pct(st['agreement'])} of the "
              f"windows for static INT8 (largest probability difference "
              f"{st['max_prob_diff']:.3f}), against {pct(fp.get('agreement'))} for FP32. tract "
              "runs a QDQ model's convolutions in float between Quantize and Dequantize, which "
              "is exactly the arithmetic the quantized model defines. onnxruntime runs each "
              "convolution in integers and requantizes its output with a fixed-point multiplier, "
              "so it rounds differently. On x86 CPUs without VNNI it also multiplies u8 "
              "activations by s8 weights with VPMADDUBSW, whose int16 pair sums can saturate (a "
              "documented limit; OpenVINO calls it the saturation issue), which 7-bit weights "
              "(`reduce_range`) rule out: agreement with them is "
              f"{pct(s7['agreement'])} (Δp {s7['max_prob_diff']:.3f}) on this machine ("
              + machine_words() + "). The rest is the different rounding, compounded over 50 "
              "residual blocks in a model whose margins are small. Accuracy with 7-bit "
              f"weights in tract: {pct(s7.get('tract_window_acc'))} window, "
              f"{pct(s7.get('tract_clip_acc'))} clip."]
    raw = by.get(STATIC_RAW, {})
    L += ["", "## Why the seed's static INT8 scored 6%",
          "Static INT8 fixes every activation's range ahead of time from calibration data. 6% is "
          "below chance (10%): the seed's model answered nearly one genre for everything, the "
          "signature of activations clipped or rounded to a constant. The seed does not say how "
          "it calibrated; the usual causes are calibration inputs that are not what the model "
          "sees at inference (another normalisation, or no real data), no calibration pass at "
          "all (default ranges), or per-tensor weight scales over channels with very different "
          "ranges. The pipeline avoids all three: it calibrates on real training windows, "
          "normalised exactly as at inference, with per-channel weight scales, and compares "
          "with FP32 on the same held-out clips.",
          f"The row *{STATIC_RAW}* reproduces the first cause on purpose: the same quantizer, "
          "calibrated on the same windows before normalisation (dB around −40 instead of "
          f"mean 0, sd 1). It scores {pct(raw.get('tract_window_acc'))} window / "
          f"{pct(raw.get('tract_clip_acc'))} clip accuracy in tract and "
          f"{pct(raw.get('ort_window_acc'))} / {pct(raw.get('ort_clip_acc'))} in onnxruntime, "
          f"against {pct(fp.get('tract_window_acc'))} / {pct(fp.get('tract_clip_acc'))} for FP32."]
    if compare:
        s, n = compare.get("3x299x299", {}), compare.get("1x128x130", {})
        L += ["", "## The seed's 3×299×299 input against the native 1×128×130",
              f"Both trained the same way for {results['compare_epochs']} epoch(s) only (a small, "
              "equal budget: at 299×299 an epoch costs "
              f"{num(s.get('epoch_seconds'), '{:.0f}')} s here against "
              f"{num(n.get('epoch_seconds'), '{:.0f}')} s), so their accuracies are those of "
              f"barely trained models ({pct(s.get('tract_clip_acc'))} against "
              f"{pct(n.get('tract_clip_acc'))} clip accuracy) and say little; the cost is the "
              "robust part: per window "
              f"{num(s.get('tract_ms'))} ms against {num(n.get('tract_ms'))} ms in tract, and "
              f"{num(s.get('ort_ms'))} against {num(n.get('ort_ms'))} ms in onnxruntime. genrepi "
              "resizes the window itself for such a model (manifest input [1, 3, 299, 299]); the "
              "agreement column checks that its resize matches PyTorch's."]
    w16, dy = by.get(FP16W, {}), by.get(DYN, {})
    if shipped:
        L += ["", "## What ships", f"`models/default.toml` → `models/{shipped['file']}`: "
              f"*{SHIP_VARIANT}*. {shipped['metrics']}."]
    qat = by.get(STATIC_QAT, {})
    L += ["", "## The trade-off, and the choice",
          "tract is the runtime that ships. It runs onnxruntime's QOperator format with "
          "per-tensor weights on its integer matrix kernels end to end (AVX-512 VNNI or AVX2 "
          "here, SMLAL on a Pi 4, SDOT on a Pi 5; genrepi registers the Microsoft-domain "
          "QLinearAdd and QLinearGlobalAveragePool, README \"INT8 on integer kernels\"), while "
          "its QDQ and dynamic INT8 paths compute around float and are slower than FP32 (the "
          "latency column). So:",
          "",
          f"- **INT8, QOperator per-tensor, quantization-aware fine-tuned** (shipped): "
          f"{num(qat.get('size_mb'))} MB on disk, faster than FP32 in tract on one thread (the "
          "idle benchmark above has the ratio on this machine), "
          f"{num(qat.get('tract_peak_rss_mb'), '{:.0f}')} MB peak RSS against "
          f"{num(fp.get('tract_peak_rss_mb'), '{:.0f}')} MB, and "
          f"{pct(qat.get('tract_window_acc'))} window / {pct(qat.get('tract_clip_acc'))} clip "
          f"accuracy against FP32's {pct(fp.get('tract_window_acc'))} / "
          f"{pct(fp.get('tract_clip_acc'))}; tract and onnxruntime pick the same genre on "
          f"{pct(qat.get('agreement'))} of the held-out windows.",
          f"- **FP16 on disk, widened at load**: the same weights in FP32 arithmetic, "
          f"{num(w16.get('size_mb'))} MB, FP32's latency and memory (largest "
          "window-probability difference from FP32 in tract: "
          f"{num(results.get('fp16w_vs_fp32'), '{:.4f}')}); written to `{shown(args.out)}/` "
          "(`PIPELINE_SHIP_FP16W=1` ships it beside the INT8 file as variants fp32 and fp16).",
          f"- **INT8 static QDQ** ({num(st.get('size_mb'))} MB): fast in onnxruntime "
          f"({num(st.get('ort_ms'))} ms) but {num(st.get('tract_ms'))} ms in tract, whose "
          "QDQ convolutions still run in float (tract PR #2725 proposes the fusion).",
          f"- **INT8 dynamic**: {num(dy.get('size_mb'))} MB, "
          f"{num(dy.get('tract_ms'), '{:.0f}')} ms per window in tract on this CPU.",
          "- **FP16 compute**: only worth it on CPUs with FP16 arithmetic (Pi 5's Cortex-A76); "
          "genrepi derives it at load from an FP32 file (`arithmetic = \"fp16\"`).",
          "- **50% pruned**: unstructured zeros do not make a dense runtime faster or smaller "
          "in memory; they only compress (MB zipped column).",
          "", "## Training history (shipped model)",
          "| epoch | loss | validation window acc | seconds |", "|---|---|---|---|"]
    for e in h:
        L.append(f"| {e['epoch']} | {e['loss']:.3f} | {pct(e['val_window_acc'])} | "
                 f"{e['seconds']:.0f} |")
    write_atomic(path, "\n".join(L) + "\n")
    log(f"wrote {path}")


def name_of(rows, variant):
    r = next((r for r in rows if r["variant"] == variant), None)
    return Path(r["file"]).stem if r else "?"
