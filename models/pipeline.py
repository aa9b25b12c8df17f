#!/usr/bin/env python3
"""genrepi's model pipeline: features -> train -> export -> quantize -> evaluate -> report.

    python3 models/pipeline.py --cv-only --recipes loop,before   # choose a recipe by CV
    python3 models/pipeline.py --recipe loop --ship              # the full run, shipped
    python3 models/pipeline.py --quick                           # smoke test, minutes

Dependencies: models/requirements.txt. `--data` takes any GTZAN-layout
folder (DIR/<genre>/<clip>) and can be repeated; the default is
../shared/gtzan-mini plus ../shared/gtzan-excerpts.

1. Features come from `genrepi features` (never from Python feature code),
   one run per folder: non-overlapping 1x128x130 windows, normalised as the
   manifest says; a recording shorter than a window becomes one as the
   recipe's `short_input` says (silence padding or looping), exactly as
   genrepi will treat it once the manifest says so. Recipes with random
   crops also read windows cut every 0.5 s.
2. Tracks (a file name without its extension: GTZAN's `genre.00042`) are
   dealt into k folds stratified by genre (fixed seed): every cut of one
   track lands in one fold. The shipped model holds out fold 0; the rest is
   split again by track into training and validation (early stopping).
3. torchvision's ResNet-152 (1-channel conv1) trains from scratch with
   random crops, time shift, gain, SpecAugment masks and mixup, AdamW
   one-cycle (on a GPU when PyTorch sees one).
4. Export to ONNX with a genrepi manifest (labels, features, short-input
   policy, normalisation, checksum, provenance), then the variants: FP16 on
   disk widened at load, FP16, INT8 dynamic, INT8 static per-channel, INT8
   QOperator per-tensor after quantization-aware fine-tuning
   (models/tools/qat_int8.py), 50% pruned and fine-tuned, and the seed's
   3x299x299 input at an equal small budget.
5. Every variant is evaluated with `genrepi eval` (tract) and onnxruntime on
   the same held-out windows, with their agreement; the other folds give
   the cross-validated accuracy.
6. models/REPORT.md is written; with --ship the chosen variant becomes
   models/default.toml.

Trained networks are cached in OUT/checkpoints under a hash of everything that
decides them, so a rerun (or an interrupted run) only trains what is missing.
`--cv-only` trains and evaluates every fold of every recipe in `--recipes`
on the same folds and writes OUT/CV.md (full clips and short excerpts apart),
which is how the shipped recipe is chosen.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models/tools"))
import qat_int8  # noqa: E402  (models/tools/qat_int8.py; it imports this module back)
GENREPI = ROOT / "target/release/genrepi"
FEATURES_MANIFEST = ROOT / "models/default.toml"


def log(msg):
    print(f"[pipeline {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


# ---------------------------------------------------------------- features
# How each recipe turns a recording shorter than one window into a window
# (the manifest's [features] short_input): genrepi's features, replay, eval
# and listen all follow the shipped manifest, so training sees what they do.
SHORT_INPUT = "pad"


def features_manifest(out: Path, policy: str) -> Path:
    """A manifest for `genrepi features` with the shipped front-end and
    normalisation and `short_input = policy`. It runs the tiny test model
    (the features do not depend on the network; it loads in milliseconds)."""
    tiny = ROOT / "models/tiny/tiny.toml"
    text = tiny.read_text()
    text = text.replace('model = "tiny.onnx"', f'model = {json.dumps(str(tiny.parent / "tiny.onnx"))}')
    text = text.replace("top_db = 80.0", f'top_db = 80.0\nshort_input = "{policy}"')
    path = out / f"features-{policy}.toml"
    path.write_text(text)
    return path


def features(data_dirs, out: Path, policy: str = None, hop: float = None):
    """Windows of every clip in `data_dirs` (GTZAN-layout folders) from
    `genrepi features`, one run per folder, concatenated: non-overlapping
    windows, or every `hop` seconds. Short recordings become a window as
    `policy` says."""
    if not GENREPI.exists():
        run(["cargo", "build", "--release", "--bin", "genrepi"], cwd=ROOT)
    policy = policy or SHORT_INPUT
    manifest = features_manifest(out, policy)
    xs, ys, clips, meta = [], [], [], None
    for i, data in enumerate(data_dirs if isinstance(data_dirs, (list, tuple)) else [data_dirs]):
        tag = f"{policy}-{i}" + (f"-hop{hop}" if hop else "")
        npz = out / f"features-{tag}.npz"
        cmd = [GENREPI, "--model", manifest, "features", data, "--out", npz]
        run(cmd + (["--hop", str(hop)] if hop else []))
        d = np.load(npz)
        m = json.loads(npz.with_suffix(".json").read_text())
        offset = len(meta["clips"]) if meta else 0
        xs.append(d["x"].astype(np.float32))
        ys.append(d["y"].astype(np.int64))
        clips.append(d["clip"].astype(np.int64) + offset)
        if meta is None:
            meta = m
        else:
            if m["labels"] != meta["labels"]:
                sys.exit(f"error: {data}: its genres differ from {data_dirs[0]}'s")
            for key in ("clips", "clip_seconds", "clip_short", "failed"):
                meta[key] = meta[key] + m[key]
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(clips), meta


def track_of(path: str) -> str:
    """A clip's track: its file name without the extension (GTZAN's
    `genre.00042`), so every cut of one track lands in the same fold."""
    return Path(path).stem


def split_clips(clip_labels: np.ndarray, test_fraction: float, seed: int, tracks=None):
    """Stratified split of clip indices by track: per genre, a fixed-seed
    shuffle of the tracks; every clip of a track goes where its track goes."""
    tracks = np.asarray(tracks if tracks is not None else np.arange(len(clip_labels)))
    rng = np.random.default_rng(seed)
    train, test = [], []
    for g in np.unique(clip_labels):
        ids = sorted(set(tracks[clip_labels == g].tolist()))
        rng.shuffle(ids)
        n_test = max(1, int(round(len(ids) * test_fraction)))
        chosen = set(ids[:n_test])
        for c in np.flatnonzero(clip_labels == g):
            (test if tracks[c] in chosen else train).append(int(c))
    return sorted(train), sorted(test)


class Data:
    """Windows from `genrepi features`, with each clip's genre and track."""

    def __init__(self, x, y, clip, meta):
        self.x, self.y, self.clip, self.meta = x, y, clip, meta
        self.clip_labels = np.array([y[clip == c][0] for c in range(len(meta["clips"]))])
        self.tracks = np.array([track_of(c) for c in meta["clips"]])
        # Recordings shorter than one window (GTZAN excerpts): reported apart.
        self.short = np.array([s is not None for s in meta.get("clip_short",
                                                                [None] * len(meta["clips"]))])

    def sel(self, clips):
        return np.isin(self.clip, clips)

    def names(self, clips):
        return [Path(self.meta["clips"][c]).name for c in clips]


def stratified_folds(clip_labels: np.ndarray, k: int, seed: int, tracks=None) -> np.ndarray:
    """The fold of each clip, by track: per genre, a fixed-seed shuffle of
    its tracks dealt round-robin; every clip of a track shares its fold."""
    tracks = np.asarray(tracks if tracks is not None else np.arange(len(clip_labels)))
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(clip_labels), np.int64)
    for g in np.unique(clip_labels):
        ids = sorted(set(tracks[clip_labels == g].tolist()))
        rng.shuffle(ids)
        fold = {t: i % k for i, t in enumerate(ids)}
        for c in np.flatnonzero(clip_labels == g):
            fold_of[c] = fold[tracks[c]]
    return fold_of


def fold_split(data: Data, fold_of: np.ndarray, fold: int, seed: int):
    """Fold `fold` is held out; the rest is split again into training clips
    and validation clips (for early stopping), stratified, by track."""
    test = np.flatnonzero(fold_of == fold).tolist()
    rest = np.flatnonzero(fold_of != fold)
    fit, val = split_clips(data.clip_labels[rest], 0.15, seed + 1 + fold, data.tracks[rest])
    fit, val = rest[fit].tolist(), rest[val].tolist()
    assert not (set(fit) | set(val)) & set(test)
    assert not set(data.tracks[fit]) & set(data.tracks[test])
    return fit, val, test


# ---------------------------------------------------------------- model
class SeedInput(torch.nn.Module):
    """The seed project's input: the mel window resized to 299x299 and
    repeated to 3 channels, inside the graph so genrepi feeds it the same
    1x128x130 window as every other model."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear",
                                            align_corners=False)
        return self.net(x.expand(-1, 3, -1, -1))


def make_net(arch: str, classes: int, input: str = "1x128x130") -> torch.nn.Module:
    net = getattr(torchvision.models, arch)(weights=None, num_classes=classes)
    if input == "3x299x299":
        return SeedInput(net)
    net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def augment(x: torch.Tensor, y: torch.Tensor, classes: int, rng: np.random.Generator):
    """Time shift, gain, SpecAugment masks and mixup on normalised windows."""
    n, _, h, w = x.shape
    x = x.clone()
    for i in range(n):
        x[i] = torch.roll(x[i], int(rng.integers(-w // 4, w // 4 + 1)), dims=-1)
        x[i] += float(rng.normal(0, 0.3))  # gain: a dB offset, normalised
        f0, fw = int(rng.integers(0, h)), int(rng.integers(0, h // 8))
        t0, tw = int(rng.integers(0, w)), int(rng.integers(0, w // 8))
        x[i, :, f0:f0 + fw, :] = 0
        x[i, :, :, t0:t0 + tw] = 0
    target = torch.nn.functional.one_hot(y, classes).float()
    lam = float(rng.beta(0.4, 0.4))
    perm = torch.randperm(n)
    return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]


def cpu_has_bf16() -> bool:
    """bf16 autocast only pays off with native bf16 arithmetic (AVX-512 BF16,
    AMX); without it PyTorch emulates bf16 and a step is several times slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def device_of(precision_or_recipe=None) -> str:
    """`cuda` when PyTorch sees a GPU (a lent device machine), else `cpu`;
    PIPELINE_DEVICE overrides. Nothing here needs a GPU."""
    return os.environ.get("PIPELINE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def train(net, x_tr, y_tr, x_va, y_va, epochs, batch, lr, patience, seed, classes, precision,
          groups=None, per_group=None):
    """AdamW with a one-cycle schedule; keeps the weights of the best
    validation epoch and stops after `patience` epochs without improvement.

    Random crops: with `groups` (the clip of each training window, cut
    every fraction of a window) and `per_group` (how many windows to draw
    from each clip per epoch), every epoch sees a fresh random set of crops
    of each clip, as many as its non-overlapping windows; a clip with one
    window (a short excerpt) gives it every epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = device_of()
    net.to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    pools = None
    if groups is not None:
        pools = [np.flatnonzero(groups == g) for g in np.unique(groups)]
        per_epoch = sum(per_group(len(p)) for p in pools)
    else:
        per_epoch = len(x_tr)
    steps = epochs * sum(1 for s in range(0, per_epoch, batch) if per_epoch - s >= 2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps),
                                                pct_start=0.2)
    best, best_state, waited, history = -1.0, None, 0, []
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    bf16 = precision == "bf16"
    log(f"training on {per_epoch} windows an epoch (of {len(xt)}), batch {batch}, "
        f"{'bf16 autocast' if bf16 else 'fp32'}, {dev}")
    for epoch in range(epochs):
        net.train()
        if pools is None:
            order = torch.randperm(len(xt))
        else:
            chosen = np.concatenate([rng.choice(p, per_group(len(p)),
                                                replace=per_group(len(p)) > len(p))
                                     for p in pools])
            order = torch.from_numpy(rng.permutation(chosen))
        t0, losses = time.time(), []
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            if len(idx) < 2:
                continue
            xb, tb = augment(xt[idx], yt[idx], classes, rng)
            xb, tb = xb.to(dev), tb.to(dev)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
                out = net(xb)
            loss = torch.nn.functional.cross_entropy(out.float(), tb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        acc = accuracy(net, x_va, y_va)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_window_acc": acc,
                         "seconds": time.time() - t0})
        log(f"epoch {epoch + 1}: loss {np.mean(losses):.3f}, validation window accuracy {acc:.3f} "
            f"({time.time() - t0:.0f} s)")
        if acc > best:
            best, waited = acc, 0
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            waited += 1
            if waited >= patience:
                log(f"early stop: no improvement for {patience} epochs")
                break
    net.cpu()
    net.load_state_dict(best_state)
    return history


@torch.no_grad()
def predict(net, x, batch=32):
    net.eval()
    dev = next(net.parameters()).device
    out = [torch.softmax(net(torch.from_numpy(x[s:s + batch]).to(dev)), 1).cpu().numpy()
           for s in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def accuracy(net, x, y):
    return float((predict(net, x).argmax(1) == y).mean()) if len(y) else float("nan")


def cached_net(cache: Path, key: dict, classes: int, fit):
    """The network `key` describes: trained now by `fit(net) -> history`, or
    loaded when a run with the same key trained it already. The key holds
    everything that decides the result (architecture, input, settings, seed
    and the exact clips), so a changed setting or split trains anew."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"{key['arch']}-{key['input']}-{digest}.pt"
    net = make_net(key["arch"], classes, key["input"])
    if path.exists():
        saved = torch.load(path)
        net.load_state_dict(saved["state"])
        log(f"loaded {path.name} (trained earlier with the same data and settings)")
        return net, saved["history"]
    history = fit(net)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"state": net.state_dict(), "history": history, "key": key}, path)
    return net, history


# Training recipes, chosen by the cross-validation mean (--cv-only --recipes).
# `train_on`: "all" clips, or only "full" ones (a window or longer);
# `short_input`: how a short recording becomes a window (in training, eval
# and the shipped manifest alike); `crop_hop`: train on random crops cut
# every that many seconds (None: the non-overlapping windows only);
# `repeat_short`: how many times a short clip's window is drawn an epoch;
# `patience`, when given, replaces --patience (`loop14`: never stop early, so
# the one-cycle schedule always anneals to its end; the best validation
# epoch's weights are still the ones kept).
RECIPES = {
    "before": {"train_on": "full", "short_input": "pad", "crop_hop": None, "repeat_short": 1},
    "loop": {"train_on": "all", "short_input": "loop", "crop_hop": 0.5, "repeat_short": 1},
    "pad": {"train_on": "all", "short_input": "pad", "crop_hop": 0.5, "repeat_short": 1},
    "loop-x2": {"train_on": "all", "short_input": "loop", "crop_hop": 0.5, "repeat_short": 2},
    "loop14": {"train_on": "all", "short_input": "loop", "crop_hop": 0.5, "repeat_short": 1,
               "patience": 14},
}


class Crops:
    """Every `crop_hop` seconds of windows of the same clips, for random crops."""

    def __init__(self, data_dirs, out, policy, hop):
        x, y, clip, meta = features(data_dirs, out, policy, hop)
        self.x, self.y, self.clip, self.meta, self.hop = x, y, clip, meta, hop


def fit_fold(data: Data, fold_of, fold: int, recipe: dict, out: Path, crops: "Crops" = None):
    """Trains `recipe` with fold `fold` held out (cached). `data` holds the
    non-overlapping windows (validation, evaluation); `crops`, when the
    recipe uses random crops, the overlapping ones of the same clips."""
    fit, val, test = fold_split(data, fold_of, fold, recipe["seed"])
    if recipe.get("train_on") == "full":
        fit = [c for c in fit if not data.short[c]]
    log(f"fold {fold} ({recipe.get('name', recipe['input'])}, up to {recipe['epochs']} epochs): "
        f"train {len(fit)} clips, validation {len(val)}, held out {len(test)}")
    key = dict(recipe, fit=data.names(fit), val=data.names(val))
    classes = len(data.meta["labels"])
    x_va, y_va = data.x[data.sel(val)], data.y[data.sel(val)]
    if crops is not None and recipe.get("crop_hop"):
        assert crops.meta["clips"] == data.meta["clips"], "crops and windows of other clips"
        sel = np.isin(crops.clip, fit)
        window_s = 3.0883  # one 130-frame window at 22050 Hz
        stride = window_s / recipe["crop_hop"]
        repeat = recipe.get("repeat_short", 1)
        # A clip cut every crop_hop gives n windows; draw as many as it has
        # non-overlapping ones (a single-window clip: `repeat` times).
        per_group = lambda n: min(n, max(1, int(round(n / stride)))) if n > 1 else repeat
        train_on = lambda net: train(net, crops.x[sel], crops.y[sel], x_va, y_va,
                                     recipe["epochs"], recipe["batch"], recipe["lr"],
                                     recipe["patience"], recipe["seed"], classes,
                                     recipe["precision"], groups=crops.clip[sel],
                                     per_group=per_group)
    else:
        train_on = lambda net: train(net, data.x[data.sel(fit)], data.y[data.sel(fit)], x_va,
                                     y_va, recipe["epochs"], recipe["batch"], recipe["lr"],
                                     recipe["patience"], recipe["seed"], classes,
                                     recipe["precision"])
    net, history = cached_net(out / "checkpoints", key, classes, train_on)
    return net, history, (fit, val, test), key


def prune_and_finetune(base, base_key, data, fit, val, amount, epochs, out):
    """Global magnitude pruning of `amount` of all conv and dense weights,
    then `epochs` of fine-tuning with the mask fixed (cached)."""
    from torch.nn.utils import prune
    key = dict(base_key, prune=amount, prune_epochs=epochs)
    classes = len(data.meta["labels"])

    def fit_pruned(net):
        net.load_state_dict(base.state_dict())
        params = [(m, "weight") for m in net.modules()
                  if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
        history = train(net, data.x[data.sel(fit)], data.y[data.sel(fit)], data.x[data.sel(val)],
                        data.y[data.sel(val)], epochs, base_key["batch"], base_key["lr"] / 3,
                        epochs, base_key["seed"] + 7, classes, base_key["precision"])
        for m, name in params:
            prune.remove(m, name)
        return history

    return cached_net(out / "checkpoints", key, classes, fit_pruned)


QAT_LR = 1e-4  # measured on the shipped model: models/REPORT.md


def qat_finetune(fp32: Path, data, fit, val, calib, epochs):
    """Quantization-aware fine-tuning of the exported FP32 model (cached
    beside it under the hash of the model and the settings): the FP32
    result is OUT/<name>.qat-fp32.onnx, ready for the static quantizer."""
    tuned = sibling(fp32, "qat-fp32")
    key = {"fp32": hashlib.sha256(fp32.read_bytes()).hexdigest(), "epochs": epochs,
           "lr": QAT_LR, "format": qat_int8.DEFAULT_FORMAT, "fit": data.names(fit), "val": data.names(val), "calib": len(calib)}
    done = tuned.with_suffix(".json")
    if tuned.exists() and done.exists() and json.loads(done.read_text())["key"] == key:
        log(f"{tuned.name}: fine-tuned earlier (same model and settings)")
        return json.loads(done.read_text())["history"]
    history = qat_int8.finetune(fp32, tuned, data.x[data.sel(fit)], data.y[data.sel(fit)],
                                data.x[data.sel(val)], data.y[data.sel(val)], calib, epochs,
                                QAT_LR, fmt=qat_int8.DEFAULT_FORMAT)
    done.write_text(json.dumps({"key": key, "history": history}))
    return history


# ---------------------------------------------------------------- export
def input_shape(input: str):
    return [1] + [int(d) for d in input.split("x")]


def write_manifest(onnx_path: Path, name: str, labels, input: str, provenance: dict,
                   manifest: Path = None, variants=()):
    """A genrepi manifest for `onnx_path` (beside it unless `manifest`).
    `variants`: (name, file, arithmetic, accuracy) for its [[variant]]
    tables; `onnx_path` must be one of the files."""
    manifest = manifest or onnx_path.with_suffix(".toml")
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    base = FEATURES_MANIFEST.read_text()
    features = base[base.index("[features]"):].split("\n\n")[0].strip()
    features = "\n".join(l for l in features.splitlines() if not l.startswith("short_input"))
    features += f'\nshort_input = "{SHORT_INPUT}"'
    prov = "\n".join(f"{k} = {json.dumps(v, ensure_ascii=False)}"
                     for k, v in provenance.items())
    model = os.path.relpath(onnx_path, manifest.parent)
    tables = "".join(
        f"""
[[variant]]
name = "{vname}"
model = "{os.path.relpath(vfile, manifest.parent)}"
sha256 = "{hashlib.sha256(vfile.read_bytes()).hexdigest()}"
arithmetic = "{arith}"
accuracy = {json.dumps(acc, ensure_ascii=False)}
""" for vname, vfile, arith, acc in variants)
    manifest.write_text(f"""# Made by models/pipeline.py
name = "{name}"
model = "{model}"
sha256 = "{digest}"
labels = [{", ".join(json.dumps(l) for l in labels)}]
output = "logits"

[input]
shape = {input_shape(input)}

[normalize]
mean = -40.0
std = 20.0

{features}

{tables}
[provenance]
{prov}
""")
    return manifest


def export(net, path: Path, input: str):
    net.eval()
    inner = net.net if isinstance(net, SeedInput) else net  # genrepi resizes for the seed input
    torch.onnx.export(inner, torch.zeros(*input_shape(input)), path, input_names=["input"],
                      output_names=["logits"], opset_version=17, dynamo=False)


class Windows(CalibrationDataReader):
    def __init__(self, x):
        self.it = iter([{"input": x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)


def sibling(path: Path, tag: str) -> Path:
    return path.with_name(f"{path.stem}.{tag}.onnx")


# Variant names, in table order.
FP32 = "FP32"
FP16W = "FP16 on disk, widened to FP32 at load"
FP16 = "FP16 (weights and compute)"
DYN = "INT8 dynamic"
STATIC = "INT8 static, per-channel, calibrated on training windows"
STATIC7 = "INT8 static, per-channel, 7-bit weights (reduce_range)"
STATIC_MIXED = "INT8 static, per-channel, layer3 kept FP32"
STATIC_RAW = "INT8 static, per-channel, calibrated on un-normalised windows"
QOP = "INT8 static, QOperator per-tensor (tract's integer kernels)"
STATIC_QAT = "INT8 static, QOperator per-tensor, quantization-aware fine-tuned"
PRUNED = "FP32, 50% pruned + fine-tuned"
SEED_IN = "FP32, seed's 3x299x299 input"
NATIVE_SAME = "FP32, 1x128x130 input"


def variants(fp32: Path, x_calib: np.ndarray):
    """FP16 and INT8 variants of the FP32 model, each beside it."""
    from onnxruntime.transformers import float16
    from fp16_weights import fp16_weights
    out = {FP32: fp32}
    out[FP16W] = sibling(fp32, "fp16w")
    onnx.save(fp16_weights(onnx.load(fp32)), out[FP16W])
    # The final Gemm stays FP32: tract rejects its mixed types otherwise (NOTES).
    out[FP16] = sibling(fp32, "fp16")
    onnx.save(float16.convert_float_to_float16(onnx.load(fp32), keep_io_types=True,
                                               op_block_list=["Gemm"]), out[FP16])
    out[DYN] = sibling(fp32, "int8-dynamic")
    quantize_dynamic(fp32, out[DYN], weight_type=QuantType.QInt8)
    # The format tract runs on integer kernels end to end (models/tools/qat_int8.py).
    out[QOP] = sibling(fp32, "int8-qop")
    qat_int8.quantize(fp32, out[QOP], x_calib, "qop-per-tensor")
    out[STATIC] = sibling(fp32, "int8-static")
    quantize_static(fp32, out[STATIC], Windows(x_calib), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    # 7-bit weights: onnxruntime's x86 int8 kernels without VNNI add u8 x s8
    # pairs into saturating int16 (VPMADDUBSW); reduce_range avoids that.
    out[STATIC7] = sibling(fp32, "int8-static-7bit")
    quantize_static(fp32, out[STATIC7], Windows(x_calib), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    # Mixed precision: ResNet-152's layer3 (36 bottlenecks, ~70% of the
    # weights) is where quantization error piles up; it stays FP32 here.
    out[STATIC_MIXED] = sibling(fp32, "int8-static-mixed")
    model = onnx.load(fp32)
    quantize_static(fp32, out[STATIC_MIXED], Windows(x_calib), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "Gemm"],
                    nodes_to_exclude=[n.name for n in model.graph.node
                                      if n.name.startswith("/layer3/")])
    # The same, calibrated on the windows before normalisation (dB values
    # around -40 instead of ~N(0, 1)): calibration data that is not what the
    # model sees at inference, one way a static INT8 model collapses.
    out[STATIC_RAW] = sibling(fp32, "int8-static-raw")
    quantize_static(fp32, out[STATIC_RAW], Windows(x_calib * 20.0 - 40.0),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


# ---------------------------------------------------------------- evaluation
def held_out_folder(data: Data, test_clips, out: Path) -> Path:
    """A GTZAN-layout folder of symlinks to the held-out clips."""
    d = out / "held-out"
    shutil.rmtree(d, ignore_errors=True)
    for c in test_clips:
        src = Path(data.meta["clips"][c])
        (d / src.parent.name).mkdir(parents=True, exist_ok=True)
        (d / src.parent.name / src.name).symlink_to(src.resolve())
    return d


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


def subset_folder(held_out: Path, n: int) -> Path:
    """The first `n` clips of `held_out`, one genre after another."""
    d = held_out.with_name(f"{held_out.name}-{n}")
    shutil.rmtree(d, ignore_errors=True)
    clips = sorted(held_out.glob("*/*"))
    for c in clips[:: max(1, len(clips) // n)][:n]:
        (d / c.parent.name).mkdir(parents=True, exist_ok=True)
        (d / c.parent.name / c.name).symlink_to(c.resolve())
    return d


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



def cv_only(args, data_dirs, base, started):
    """Every recipe of --recipes on the same k folds by track: each fold
    trained (cached in OUT/checkpoints) and evaluated on its held-out tracks
    in PyTorch FP32, full clips and short excerpts apart. Writes OUT/cv.json
    and OUT/CV.md after every fold, so a stopped run keeps what it did."""
    recipes = args.recipes.split(",")
    limit = min(args.folds, args.cv_limit or args.folds)
    results = {}
    cv_json, cv_md = args.out / "cv.json", args.out / "CV.md"
    if cv_json.exists():
        results = {r: v for r, v in json.loads(cv_json.read_text()).get("recipes", {}).items()
                   if r in recipes}

    def publish():
        minutes = (time.time() - started) / 60
        cv_json.write_text(json.dumps({"folds": args.folds, "data": [str(d) for d in args.data],
                                       "minutes": minutes, "recipes": results}, indent=1))
        cv_md.write_text("\n".join(cv_table(results, args.folds, args)) + "\n")
        log(f"wrote {cv_md}")

    for name in recipes:
        recipe = dict(base, name=name, **RECIPES[name])
        x, y, clip, meta = features(data_dirs, args.out, recipe["short_input"])
        data = Data(x, y, clip, meta)
        fold_of = stratified_folds(data.clip_labels, args.folds, args.seed, data.tracks)
        crops = (Crops(data_dirs, args.out, recipe["short_input"], recipe["crop_hop"])
                 if recipe["crop_hop"] else None)
        done = {f["fold"] for f in results.get(name, {}).get("folds", [])}
        results.setdefault(name, {"recipe": recipe, "folds": []})
        for f in range(limit):
            if f in done:
                continue
            t0 = time.time()
            row = fold_result(data, f, fit_fold(data, fold_of, f, recipe, args.out, crops))
            row["wall_minutes"] = (time.time() - t0) / 60
            results[name]["folds"].append(row)
            log(f"CV {name} fold {f}: {json.dumps(row)}")
            publish()
    publish()


def mean_sd(values):
    v = [x for x in values if x is not None]
    if not v:
        return "–"
    sd = np.std(v, ddof=1) if len(v) > 1 else float("nan")
    return f"{100 * np.mean(v):.1f} ± {100 * sd:.1f}%"


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
    """The report's cross-validation section."""
    pct = lambda v: f"{100 * v:.1f}%"
    sd = lambda v: np.std(v, ddof=1) if len(v) > 1 else float("nan")
    cv_clip = [f["clip_acc"] for f in folds]
    cv_win = [f["window_acc"] for f in folds]
    L = [f"## Cross-validation ({len(folds)} of {k} folds)", how, "",
         "| fold | held-out clips | epochs run | window acc | clip acc |", "|---|---|---|---|---|"]
    for f in folds:
        L.append(f"| {f['fold']} | {f['clips']} | {f['epochs']} | {pct(f['window_acc'])} | "
                 f"{pct(f['clip_acc'])} |")
    if folds:
        L.append(f"| **mean ± sd** | | | {100 * np.mean(cv_win):.1f} ± {100 * sd(cv_win):.1f}% "
                 f"| **{100 * np.mean(cv_clip):.1f} ± {100 * sd(cv_clip):.1f}%** |")
    if len(folds) < k:
        L.append(f"\n**Incomplete:** {k - len(folds)} fold(s) not trained yet "
                 "(`--cv-limit`, or the run is still going or was stopped; a rerun trains only "
                 "what is missing).")
    return L

def quick_subset(data_dir: Path, out: Path, per_genre: int, index: int = 0) -> Path:
    """A GTZAN-layout folder of symlinks to the first clips of each genre."""
    d = out / f"quick-data-{index}"
    shutil.rmtree(d, ignore_errors=True)
    for genre in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        (d / genre.name).mkdir(parents=True)
        for clip in sorted(genre.iterdir())[:per_genre]:
            (d / genre.name / clip.name).symlink_to(clip.resolve())
    return d


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, action="append", default=None,
                    help="GTZAN-layout folder (DIR/<genre>/<clip>); repeat for several "
                         "(default: ../shared/gtzan-mini and ../shared/gtzan-excerpts)")
    ap.add_argument("--recipe", default="loop", choices=sorted(RECIPES),
                    help="the recipe trained for the shipped model (default loop)")
    ap.add_argument("--recipes", default="loop,before",
                    help="recipes --cv-only cross-validates, comma-separated "
                         f"(of {', '.join(sorted(RECIPES))})")
    ap.add_argument("--out", type=Path, default=ROOT / "models/work",
                    help="checkpoints, exported variants, evaluation reports")
    ap.add_argument("--report", type=Path, default=None,
                    help="default: models/REPORT.md (OUT/REPORT.md with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test in minutes: 4 clips per genre, ResNet-18, 2 epochs")
    ap.add_argument("--arch", default=None, help="torchvision ResNet (default resnet152)")
    ap.add_argument("--epochs", type=int, default=None, help="at most (default 14)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--patience", type=int, default=4, help="early stopping")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="training arithmetic; auto: bf16 autocast where the CPU has native "
                         "bf16 (AVX-512 BF16, AMX), else fp32. Part of the recipe: the shipped "
                         "model trained in fp32")
    ap.add_argument("--folds", type=int, default=4,
                    help="k for cross-validation; fold 0 is the shipped model's held-out set")
    ap.add_argument("--cv-limit", type=int, default=None,
                    help="train and evaluate only the first N folds (the report says so)")
    ap.add_argument("--prune-epochs", type=int, default=None, help="fine-tuning (default 2)")
    ap.add_argument("--qat-epochs", type=int, default=None,
                    help="quantization-aware fine-tuning for static INT8 (default 10)")
    ap.add_argument("--compare-epochs", type=int, default=None,
                    help="epochs for the 3x299x299 vs 1x128x130 comparison (default 2)")
    ap.add_argument("--slow-tract-clips", type=int, default=3,
                    help="held-out clips tract evaluates INT8 dynamic on (slow here)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report (and with --ship the manifest) from OUT/results.json")
    ap.add_argument("--cv-only", action="store_true",
                    help="cross-validation alone: every fold of every recipe in --recipes "
                         "trained (cached) and evaluated; writes OUT/CV.md and OUT/cv.json")
    ap.add_argument("--ship", action="store_true",
                    help="copy the chosen variant into models/ as genrepi's default model")
    args = ap.parse_args()
    if args.ship and args.quick:
        ap.error("--quick models are smoke tests: they are never shipped")
    if args.data is None:
        args.data = [p for p in (ROOT.parent / "shared/gtzan-mini",
                                 ROOT.parent / "shared/gtzan-excerpts") if p.is_dir()]
    for d in args.data:
        if not d.is_dir():
            ap.error(f"--data {d}: not a folder")
    unknown = [r for r in args.recipes.split(",") if r not in RECIPES]
    if unknown:
        ap.error(f"--recipes: unknown {', '.join(unknown)} (of {', '.join(sorted(RECIPES))})")
    arch = args.arch or ("resnet18" if args.quick else "resnet152")
    epochs = args.epochs or (2 if args.quick else 14)
    prune_epochs = args.prune_epochs or (1 if args.quick else 2)
    qat_epochs = args.qat_epochs or (1 if args.quick else 10)
    compare_epochs = args.compare_epochs or (1 if args.quick else 2)
    report_path = args.report or (args.out / "REPORT.md" if args.quick else ROOT / "models/REPORT.md")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    data_dirs = ([quick_subset(d, args.out, 4, i) for i, d in enumerate(args.data)]
                 if args.quick else args.data)
    base = {"arch": arch, "input": "1x128x130", "epochs": epochs, "batch": args.batch,
            "lr": args.lr, "patience": args.patience, "seed": args.seed,
            "precision": args.precision if args.precision != "auto" else (
                "bf16" if cpu_has_bf16() or device_of() == "cuda" else "fp32")}
    if args.cv_only:
        return cv_only(args, data_dirs, base, started)
    global SHORT_INPUT
    recipe = dict(base, name=args.recipe, **RECIPES[args.recipe])
    SHORT_INPUT = recipe["short_input"]
    if args.report_only:
        return report_only(args, report_path)
    x, y, clip, meta = features(data_dirs, args.out)
    labels = meta["labels"]
    data = Data(x, y, clip, meta)
    fold_of = stratified_folds(data.clip_labels, args.folds, args.seed, data.tracks)
    crops = Crops(data_dirs, args.out, SHORT_INPUT, recipe["crop_hop"]) if recipe["crop_hop"] else None

    # The model genrepi ships: fold 0 held out.
    first = fit_fold(data, fold_of, 0, recipe, args.out, crops)
    net, history, (fit, val, test), key = first
    held_out = held_out_folder(data, test, args.out)
    name = f"{arch}-gtzan-{len(meta['clips'])}"
    fp32 = args.out / f"{name}.onnx"
    export(net, fp32, "1x128x130")
    best = int(np.argmax([h["val_window_acc"] for h in history])) + 1
    provenance = {
        "trained": "models/pipeline.py" + (" --quick" if args.quick else ""),
        "data": f"GTZAN-layout folders {', '.join(d.name for d in args.data)}: "
                f"{len(meta['clips'])} clips of {len(set(data.tracks))} tracks "
                f"({int(data.short.sum())} shorter than a window)",
        "split": f"by track, stratified by genre, seed {args.seed}: fold 0 of {args.folds} held "
                 f"out ({len(test)} clips); {len(fit)} training and {len(val)} validation clips",
        "short_input": f"{SHORT_INPUT} (recipe {args.recipe})",
        "held_out": data.names(test),
        "arch": f"torchvision {arch}, 1-channel conv1, from scratch",
        "epochs": f"{len(history)} run, weights of epoch {best} (best validation)",
        "recipe": f"{args.recipe}: AdamW lr {args.lr} one-cycle, batch {args.batch}, "
                  + (f"random crops every {recipe['crop_hop']} s, " if recipe["crop_hop"] else "")
                  + f"time shift, gain, SpecAugment masks, mixup, {recipe['precision']} arithmetic",
        "torch": torch.__version__,
    }
    write_manifest(fp32, name, labels, "1x128x130", provenance)
    calib = x[data.sel(fit)][:: max(1, int(data.sel(fit).sum()) // 64)]
    same = lambda xs: xs
    rows = []
    paths = variants(fp32, calib)
    for vname, path in paths.items():
        manifest = write_manifest(path, name, labels, "1x128x130",
                                  dict(provenance, variant=vname))
        skip = ("skipped: tract computes FP16 ~250x slower than FP32 on CPUs without FP16 "
                "arithmetic (NOTES.md); PIPELINE_TRACT_FP16=1 runs it") if (
            vname == FP16 and not os.environ.get("PIPELINE_TRACT_FP16")) else None
        # tract's int8 matmul on this AVX2-only CPU runs ~60x slower than its
        # FP32 one (examples/profile_ops.rs): a subset keeps the run in hand.
        rows.append(evaluate(vname, manifest, path, held_out, data, test, same, args.out, skip,
                             tract_clips=args.slow_tract_clips if vname == DYN else None))
        log(json.dumps(rows[-1]))

    # Static INT8 after quantization-aware fine-tuning (models/tools/qat_int8.py).
    qat_history = qat_finetune(fp32, data, fit, val, calib, qat_epochs)
    path = sibling(fp32, "int8-qop-qat")
    qat_int8.quantize(sibling(fp32, "qat-fp32"), path, calib, qat_int8.DEFAULT_FORMAT)
    manifest = write_manifest(path, name, labels, "1x128x130",
                              dict(provenance, variant=STATIC_QAT))
    rows.append(evaluate(STATIC_QAT, manifest, path, held_out, data, test, same, args.out))
    log(json.dumps(rows[-1]))

    pruned, prune_history = prune_and_finetune(net, key, data, fit, val, 0.5, prune_epochs,
                                               args.out)
    path = sibling(fp32, "pruned50")
    export(pruned, path, "1x128x130")
    manifest = write_manifest(path, name, labels, "1x128x130", dict(provenance, variant=PRUNED))
    rows.append(evaluate(PRUNED, manifest, path, held_out, data, test, same, args.out))
    rows[-1]["zero_fraction"] = zero_fraction(path)
    log(json.dumps(rows[-1]))

    # The seed's resized input against the native one, at the same small budget.
    compare = {}
    for input, vname in [("3x299x299", SEED_IN), ("1x128x130", NATIVE_SAME)]:
        r = dict(recipe, input=input, epochs=compare_epochs, patience=compare_epochs)
        cnet, chist, _, _ = fit_fold(data, fold_of, 0, r, args.out, crops)
        path = sibling(fp32, f"{input}-{compare_epochs}ep")
        export(cnet, path, input)
        manifest = write_manifest(path, name, labels, input, dict(provenance, variant=vname))
        prep = (lambda xs: torch.nn.functional.interpolate(
            torch.from_numpy(xs), size=(299, 299), mode="bilinear",
            align_corners=False).expand(-1, 3, -1, -1).contiguous().numpy()) \
            if input == "3x299x299" else same
        row = evaluate(f"{vname}, {compare_epochs} epochs", manifest, path, held_out, data,
                       test, prep, args.out)
        row["epoch_seconds"] = float(np.mean([h["seconds"] for h in chist]))
        compare[input] = row
        log(json.dumps(row))

    results = {"recipe": recipe, "calib": len(calib), "compare_epochs": compare_epochs,
               "fp16w_vs_fp32": tract_max_diff(args.out, rows, FP32, FP16W),
               "history": history, "prune_history": prune_history, "rows": rows,
               "qat_history": qat_history,
               "compare": compare}

    def publish(folds):
        """Results, shipped manifest and report so far: rewritten after each
        cross-validation fold, so an interrupted run still leaves them."""
        results.update(folds=folds, minutes=(time.time() - started) / 60)
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        shipped = (ship(rows, provenance, folds, args.folds, name, labels, args.out)
                   if args.ship else None)
        write_report(report_path, args, data, (fit, val, test), results, shipped)

    cross_validate(data, fold_of, args.folds, args.cv_limit or args.folds, recipe, first,
                   args.out, publish, crops)


def report_only(args, report_path):
    """The report (and shipped manifest) again from the last run's results,
    after a change to the report's text: no training, no evaluation."""
    d = np.load(args.out / "features.npz")
    meta = json.loads((args.out / "features.json").read_text())
    data = Data(d["x"], d["y"].astype(np.int64), d["clip"].astype(np.int64), meta)
    results = json.loads((args.out / "results.json").read_text())
    split = fold_split(data, stratified_folds(data.clip_labels, args.folds, args.seed, data.tracks), 0,
                       args.seed)
    shipped = None
    if args.ship:
        manifest = (ROOT / "models/default.toml").read_text()
        model = next(l for l in manifest.splitlines() if l.startswith("model ="))
        metrics = next(l for l in manifest.splitlines() if l.startswith("metrics ="))
        shipped = {"file": json.loads(model.split("=", 1)[1]),
                   "metrics": json.loads(metrics.split("=", 1)[1])}
    write_report(report_path, args, data, split, results, shipped)


# ---------------------------------------------------------------- ship
SHIP_VARIANT = STATIC_QAT  # the default: INT8 on tract's integer kernels
SHIP_ALSO = FP16W  # FP32 arithmetic (and FP16 derived at load) from the same weights


def ship(rows, provenance, folds, k, name, labels, out):
    """Copies the INT8 model and the FP16-on-disk FP32 model into models/
    and writes models/default.toml: the INT8 file as the default, with
    variants int8, fp32 and fp16 (derived at load from the FP16-on-disk
    file on CPUs with FP16 arithmetic), each with its held-out accuracy,
    and the cross-validated accuracy in the provenance."""
    by = {r["variant"]: r for r in rows}
    acc = lambda r, engine="tract": (
        f"held-out fold 0 ({engine}): clip {100 * r[engine + '_clip_acc']:.1f}%, "
        f"window {100 * r[engine + '_window_acc']:.1f}%")
    int8, fp = by[SHIP_VARIANT], by[SHIP_ALSO]
    files = {}
    for tag, row in [("int8", int8), ("fp16w", fp)]:
        files[tag] = ROOT / "models" / f"{name}.{tag}.onnx"
        shutil.copyfile(out / row["file"], files[tag])
    fp16 = by.get(FP16, {})
    fp16_acc = ("computed in FP16 from the fp32 variant's weights at load; "
                + (acc(fp16, "ort") if fp16.get("ort_clip_acc") is not None else "not evaluated")
                + "; checked on the Pi 5's CPU by cross/verify-aarch64.sh")
    metrics = (acc(int8) + " (INT8); " + cv_metrics(folds, k) + " (FP32 recipe)")
    write_manifest(files["int8"], name, labels, "1x128x130",
                   dict(provenance, variant=SHIP_VARIANT, metrics=metrics,
                        report="models/REPORT.md"),
                   manifest=ROOT / "models/default.toml",
                   variants=[("int8", files["int8"], "int8", acc(int8)),
                             ("fp32", files["fp16w"], "fp32", acc(fp)),
                             ("fp16", files["fp16w"], "fp16", fp16_acc)])
    log(f"shipped {files['int8'].name} (default) and {files['fp16w'].name} as "
        f"models/default.toml ({metrics})")
    return {"file": files["int8"].name, "metrics": metrics}


# ---------------------------------------------------------------- report
SEED = {  # the seed project's Table 1: full GTZAN, 80/20 split, 3x299x299
    FP32: "74% val., 89% train; 256 MB (modified baseline 78%)",
    FP16: "78%, 116 MB; on the Pi 77.21%",
    DYN: "77.5%, 59 MB; on the Pi 76.34%",
    STATIC: "6%, 60.1 MB (broken)",
    PRUNED: "74%, 235 MB (\"0.5%-pruned\")",
}


def write_report(path: Path, args, data, split, results, shipped):
    fit, val, test = split
    rows, compare, folds = results["rows"], results["compare"], results["folds"]
    pct = lambda v: "–" if v is None or v != v else f"{100 * v:.1f}%"
    num = lambda v, f="{:.1f}": "–" if v is None or v != v else f.format(v)
    by = {r["variant"]: r for r in rows}
    runs = "once" if len(folds) == 1 else f"{len(folds)} times"
    cmd = "python3 models/pipeline.py" + (" --quick" if args.quick else "") + (
        f" --cv-limit {args.cv_limit}" if args.cv_limit else "") + (" --ship" if args.ship else "")
    h = results["history"]
    best = int(np.argmax([e["val_window_acc"] for e in h])) + 1
    L = [
        "# genrepi model report",
        "",
        f"Generated by `{cmd}` ({results['minutes']:.0f} min on this machine: "
        f"{os.cpu_count()} CPU cores, no GPU). Everything below is measured in that run"
        + (" (the text rewritten from its results with `--report-only`)." if args.report_only
           else "."),
        "",
        "## Data and split",
        f"- {', '.join(f'`{d}`' for d in args.data)}: **{len(data.meta['clips'])} real GTZAN "
        f"clips of {len(set(data.tracks))} tracks**, {int(data.short.sum())} of them shorter "
        f"than one window (made into one by `short_input = \"{SHORT_INPUT}\"`) "
        f"({len(data.y)} windows of 3 s from `genrepi features`). "
        "This is a small subset of GTZAN's 1000 clips, so these accuracies are **not comparable "
        "to full-GTZAN figures** such as the seed's; run the same command on the full set for those.",
        f"- Split by track, stratified by genre, seed {args.seed}, into {args.folds} folds. The "
        f"shipped model holds out fold 0 (**{len(test)} clips**, never seen in training); of the "
        f"rest, {len(fit)} clips train and {len(val)} validate (early stopping).",
        "- Clip accuracy: argmax of the mean of a clip's window probabilities. Window accuracy: "
        "each 3-s window on its own.",
        f"- Training: {results['recipe']['arch']} from scratch (no pretrained weights), 1×128×130 "
        f"input, AdamW lr {args.lr} one-cycle, batch {args.batch}, time shift, gain, SpecAugment "
        f"masks and mixup; {len(h)} epochs run (at most {results['recipe']['epochs']}, patience "
        f"{args.patience}), weights of epoch {best} kept.",
        "",
        "## Variants of the shipped model (held-out fold 0)",
        "Latency: median per window, one thread, one window at a time, on this machine (x86_64, "
        "AVX2, no FP16 arithmetic). Peak RSS: the whole `genrepi eval` process. Agreement: "
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
                     f"int8 matmul runs at {num(r.get('tract_ms'), '{:.0f}')} ms per window on "
                     "this AVX2-only CPU (no AVX-512 VNNI). onnxruntime's columns cover all "
                     "clips; the agreement columns compare the two on the same windows.")
    L += [""] + cv_section(folds, args.folds, (
        f"The same recipe trained {runs}, each time holding out one fold "
        "(PyTorch FP32, which agrees with tract's FP32 above). Fold 0 is the shipped model."))
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
                  "Quantization-aware fine-tuning (models/tools/qat_int8.py) trains the FP32 "
                  f"network for {max(0, len(qh) - 1)} epoch(s) on the training clips with that "
                  "rounding simulated, exactly where and how onnxruntime's quantizer applies it "
                  "in the format tract runs on integer kernels (QOperator: per-tensor int8 "
                  "activations and weights, residual additions in int8, the final Gemm in "
                  "float), keeps the epoch whose simulated INT8 agrees best with FP32 on the "
                  "validation clips, and quantizes the result in that format: {pct(qat.get('tract_window_acc'))} window, "
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
              "so it rounds differently, and on this CPU (AVX2, no VNNI) it multiplies u8 "
              "activations by s8 weights with VPMADDUBSW, whose int16 pair sums can saturate (a "
              "documented limit of int8 on x86 before VNNI; OpenVINO calls it the saturation "
              "issue). 7-bit weights (`reduce_range`) rule saturation out: agreement then is "
              f"{pct(s7['agreement'])} (Δp {s7['max_prob_diff']:.3f}), so saturation explains "
              "only part of the gap; the rest is most likely the different rounding, compounded "
              "over 50 residual blocks in a model whose margins are small. Accuracy with 7-bit "
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
    L += ["", "## The trade-off, and the choice",
          "tract is the runtime that ships. On CPUs without FP16 arithmetic (x86, the Pi 4's "
          "Cortex-A72) it computes FP16 about 250× slower than FP32, and its INT8 paths "
          "(dynamic: DynamicQuantizeLinear and requantisation around int8 matmuls; static QDQ: "
          "the convolutions still run in float between Quantize/Dequantize) are slower than "
          "FP32 too (see the latency column and ../shared/NOTES.md). So the weights are "
          "computed in FP32 and the question is only how they are stored:",
          "",
          f"- **FP16 on disk, widened at load** (shipped): half the download and the repository "
          f"space of FP32 ({num(w16.get('size_mb'))} MB against {num(fp.get('size_mb'))} MB), "
          f"FP32's latency ({num(w16.get('tract_ms'))} against {num(fp.get('tract_ms'))} ms) and "
          f"memory ({num(w16.get('tract_peak_rss_mb'), '{:.0f}')} against "
          f"{num(fp.get('tract_peak_rss_mb'), '{:.0f}')} MB peak RSS), because genrepi widens the "
          "weights once at load and nothing is cast per window, and FP32's accuracy up to the "
          "rounding of the weights (largest window-probability difference from FP32 in tract: "
          f"{num(results.get('fp16w_vs_fp32'), '{:.4f}')}).",
          f"- **INT8 static** stays a first-class option (`genrepi --model "
          f"models/work/{name_of(rows, STATIC)}.toml`, every manifest written by this "
          f"pipeline): {num(st.get('size_mb'))} MB on disk; in onnxruntime "
          f"{num(st.get('ort_ms'))} ms per window against FP32's {num(fp.get('ort_ms'))}, but in "
          f"tract today {num(st.get('tract_ms'))} ms against {num(fp.get('tract_ms'))}, with a "
          f"peak RSS of {num(st.get('tract_peak_rss_mb'), '{:.0f}')} MB (tract keeps float "
          "copies of the weights for its float convolutions). When tract fuses QDQ "
          "convolutions (tract PR #2725), it becomes the better choice for the Pi 4.",
          f"- **INT8 dynamic**: {num(dy.get('size_mb'))} MB, the smallest, but "
          f"{num(dy.get('tract_ms'), '{:.0f}')} ms per window in tract on this CPU.",
          "- **FP16 compute**: only worth it on CPUs with FP16 arithmetic (Pi 5's Cortex-A76); "
          "tract uses it there when the model is FP16.",
          "- **50% pruned**: unstructured zeros do not make a dense runtime faster or smaller "
          "in memory; they only compress (MB zipped column).",
          "", "## Training history (shipped model)",
          "| epoch | loss | validation window acc | seconds |", "|---|---|---|---|"]
    for e in h:
        L.append(f"| {e['epoch']} | {e['loss']:.3f} | {pct(e['val_window_acc'])} | "
                 f"{e['seconds']:.0f} |")
    path.write_text("\n".join(L) + "\n")
    log(f"wrote {path}")


def name_of(rows, variant):
    r = next((r for r in rows if r["variant"] == variant), None)
    return Path(r["file"]).stem if r else "?"


if __name__ == "__main__":
    main()
