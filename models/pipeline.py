#!/usr/bin/env python3
"""genrepi's model pipeline: features -> train -> export -> quantize -> evaluate -> report.

    python3 models/pipeline.py --data ../shared/gtzan-mini [--quick] [--out models/work]

WORK IN PROGRESS (issue 4). What runs today:

- features come from `genrepi features` (never from Python feature code):
  non-overlapping 1x128x130 windows in the model's input layout;
- a split by clip, stratified by genre, with a fixed seed (20% of the clips
  held out; their windows never reach training);
- training with augmentation (time shift, gain, SpecAugment masks, mixup)
  and early stopping on a validation split of the training clips;
- export to ONNX (opset 17) with a genrepi manifest, and the variants
  FP16 (weights and activations, I/O kept FP32), INT8 dynamic and INT8
  static QDQ per-channel calibrated on real training windows;
- every variant evaluated on the held-out clips with `genrepi eval`
  (tract) and with onnxruntime on the same windows, and REPORT.md written.

Not done yet: k-fold cross-validation, the 50%-pruned variant, the seed's
3x299x299 comparison, the full ResNet-152 run and shipping the result as
models/default.toml. `--quick` uses ResNet-18 for two epochs, as a smoke
test of the whole chain in a few minutes.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)

ROOT = Path(__file__).resolve().parents[1]
GENREPI = ROOT / "target/release/genrepi"
FEATURES_MANIFEST = ROOT / "models/default.toml"


def log(msg):
    print(f"[pipeline {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


# ---------------------------------------------------------------- features
def features(data: Path, out: Path):
    if not GENREPI.exists():
        run(["cargo", "build", "--release", "--bin", "genrepi"], cwd=ROOT)
    npz = out / "features.npz"
    run([GENREPI, "--model", FEATURES_MANIFEST, "features", data, "--out", npz])
    d = np.load(npz)
    meta = json.loads(npz.with_suffix(".json").read_text())
    return d["x"].astype(np.float32), d["y"].astype(np.int64), d["clip"].astype(np.int64), meta


def split_clips(clip_labels: np.ndarray, test_fraction: float, seed: int):
    """Stratified split of clip indices: per genre, a fixed-seed shuffle."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for g in np.unique(clip_labels):
        ids = np.flatnonzero(clip_labels == g)
        rng.shuffle(ids)
        n_test = max(1, int(round(len(ids) * test_fraction)))
        test += ids[:n_test].tolist()
        train += ids[n_test:].tolist()
    return sorted(train), sorted(test)


# ---------------------------------------------------------------- model
def make_net(arch: str, classes: int) -> torch.nn.Module:
    net = getattr(torchvision.models, arch)(weights=None, num_classes=classes)
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


def train(net, x_tr, y_tr, x_va, y_va, epochs, batch, lr, patience, seed, classes):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    best, best_state, waited, history = -1.0, None, 0, []
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    bf16 = cpu_has_bf16()
    log(f"training on {len(xt)} windows, batch {batch}, {'bf16 autocast' if bf16 else 'fp32'}")
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(xt))
        t0, losses = time.time(), []
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            if len(idx) < 2:
                continue
            xb, tb = augment(xt[idx], yt[idx], classes, rng)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = net(xb)
            loss = torch.nn.functional.cross_entropy(out.float(), tb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        acc = accuracy(net, x_va, y_va)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_window_acc": acc,
                         "seconds": time.time() - t0})
        log(f"epoch {epoch + 1}: loss {np.mean(losses):.3f}, validation window accuracy {acc:.3f} "
            f"({time.time() - t0:.0f} s)")
        if acc > best:
            best, waited = acc, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            waited += 1
            if waited >= patience:
                log(f"early stop: no improvement for {patience} epochs")
                break
    net.load_state_dict(best_state)
    return history


@torch.no_grad()
def predict(net, x, batch=32):
    net.eval()
    out = [torch.softmax(net(torch.from_numpy(x[s:s + batch])), 1).numpy()
           for s in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def accuracy(net, x, y):
    return float((predict(net, x).argmax(1) == y).mean()) if len(y) else float("nan")


# ---------------------------------------------------------------- export
def write_manifest(onnx_path: Path, name: str, labels, provenance: dict):
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    base = FEATURES_MANIFEST.read_text()
    features = base[base.index("[features]"):base.index("[provenance]")].strip()
    prov = "\n".join(f"{k} = {json.dumps(v)}" for k, v in provenance.items())
    onnx_path.with_suffix(".toml").write_text(f"""# Made by models/pipeline.py
name = "{name}"
model = "{onnx_path.name}"
sha256 = "{digest}"
labels = [{", ".join(json.dumps(l) for l in labels)}]
output = "logits"

[input]
shape = [1, 1, 128, 130]

[normalize]
mean = -40.0
std = 20.0

{features}

[provenance]
{prov}
""")


def export(net, path: Path):
    net.eval()
    torch.onnx.export(net, torch.zeros(1, 1, 128, 130), path, input_names=["input"],
                      output_names=["logits"], opset_version=17, dynamo=False)


class Windows(CalibrationDataReader):
    def __init__(self, x):
        self.it = iter([{"input": x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)


def variants(fp32: Path, x_calib: np.ndarray):
    out = {"FP32": fp32}
    from onnxruntime.transformers import float16
    # The final Gemm stays FP32: tract rejects its mixed types otherwise (NOTES).
    m = float16.convert_float_to_float16(onnx.load(fp32), keep_io_types=True,
                                         op_block_list=["Gemm"])
    p = fp32.with_name(fp32.stem + ".fp16.onnx")
    onnx.save(m, p)
    out["FP16"] = p
    p = fp32.with_name(fp32.stem + ".int8-dynamic.onnx")
    quantize_dynamic(fp32, p, weight_type=QuantType.QInt8)
    out["INT8 dynamic"] = p
    p = fp32.with_name(fp32.stem + ".int8-static.onnx")
    quantize_static(fp32, p, Windows(x_calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    out["INT8 static (QDQ, per-channel)"] = p
    return out


# ---------------------------------------------------------------- evaluation
def held_out_folder(meta, test_clips, labels, out: Path) -> Path:
    """A GTZAN-layout folder of symlinks to the held-out clips."""
    d = out / "held-out"
    shutil.rmtree(d, ignore_errors=True)
    for c in test_clips:
        src = Path(meta["clips"][c])
        genre = src.parent.name
        (d / genre).mkdir(parents=True, exist_ok=True)
        (d / genre / src.name).symlink_to(src.resolve())
    return d


def evaluate(name, onnx_path, labels, held_out, x_te, y_te, clip_te, out):
    manifest = onnx_path.with_suffix(".toml")
    if not manifest.exists():
        text = onnx_path.parent.joinpath(onnx_path.name.split(".")[0] + ".toml").read_text()
        digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
        lines = [f'model = "{onnx_path.name}"' if l.startswith("model =") else
                 f'sha256 = "{digest}"' if l.startswith("sha256 =") else l
                 for l in text.splitlines()]
        manifest.write_text("\n".join(lines) + "\n")
    report = out / (onnx_path.stem + ".eval.json")
    row = {"variant": name, "size_mb": onnx_path.stat().st_size / 1e6}
    try:
        if name == "FP16" and not os.environ.get("PIPELINE_TRACT_FP16"):
            raise ValueError("skipped: tract runs FP16 ~250x slower than FP32 on CPUs without "
                             "FP16 arithmetic (set PIPELINE_TRACT_FP16=1 to run it)")
        t = subprocess.run(["/usr/bin/time", "-f", "%M", str(GENREPI), "--model", str(manifest),
                            "eval", str(held_out), "--report", str(report), "--jobs", "1"],
                           capture_output=True, text=True, check=True)
        r = json.loads(report.read_text())
        row.update(tract_window_acc=r["window_accuracy"], tract_clip_acc=r["clip_accuracy"],
                   tract_ms=r["latency_ms"]["median"],
                   tract_peak_rss_mb=int(t.stderr.strip().splitlines()[-1]) / 1024)
        tract_clip = {Path(c["file"]).name: [c["probs"][l] for l in labels] for c in r["clips"]}
    except (subprocess.CalledProcessError, KeyError, ValueError) as e:
        row["tract_error"] = ((getattr(e, "stderr", "") or str(e)).strip().splitlines() or ["?"])[-1]
        tract_clip = {}
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    t0 = time.time()
    probs = np.concatenate([
        torch.softmax(torch.from_numpy(sess.run(None, {"input": x_te[i:i + 1]})[0]), 1).numpy()
        for i in range(len(x_te))])
    row["ort_ms"] = (time.time() - t0) / max(1, len(x_te)) * 1e3
    row["ort_window_acc"] = float((probs.argmax(1) == y_te).mean())
    clips = sorted(set(clip_te.tolist()))
    mean = {c: probs[clip_te == c].mean(0) for c in clips}
    truth = {c: y_te[clip_te == c][0] for c in clips}
    row["ort_clip_acc"] = float(np.mean([mean[c].argmax() == truth[c] for c in clips]))
    return row, mean


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/gtzan-mini",
                    help="GTZAN-layout folder (DIR/<genre>/<clip>)")
    ap.add_argument("--out", type=Path, default=ROOT / "models/work")
    ap.add_argument("--quick", action="store_true", help="ResNet-18, 2 epochs: a smoke test")
    ap.add_argument("--arch", default=None, help="torchvision ResNet (default resnet152)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    arch = args.arch or ("resnet18" if args.quick else "resnet152")
    epochs = args.epochs or (2 if args.quick else 30)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    x, y, clip, meta = features(args.data, args.out)
    labels = meta["labels"]
    clip_labels = np.array([y[clip == c][0] for c in range(len(meta["clips"]))])
    train_clips, test_clips = split_clips(clip_labels, 0.2, args.seed)
    fit_clips, val_clips = split_clips(clip_labels[train_clips], 0.15, args.seed + 1)
    fit_clips = [train_clips[i] for i in fit_clips]
    val_clips = [train_clips[i] for i in val_clips]
    sel = lambda cs: np.isin(clip, cs)
    log(f"{len(meta['clips'])} clips, {len(y)} windows; train {len(fit_clips)} clips, "
        f"validation {len(val_clips)}, held out {len(test_clips)} (split by clip, stratified, seed {args.seed})")
    assert not set(test_clips) & set(train_clips)

    net = make_net(arch, len(labels))
    history = train(net, x[sel(fit_clips)], y[sel(fit_clips)], x[sel(val_clips)], y[sel(val_clips)],
                    epochs, args.batch, args.lr, args.patience, args.seed, len(labels))
    name = f"{arch}-gtzan-{len(meta['clips'])}"
    fp32 = args.out / f"{name}.onnx"
    export(net, fp32)
    write_manifest(fp32, name, labels, {
        "data": str(args.data), "clips": len(meta["clips"]),
        "split": f"by clip, stratified, seed {args.seed}: {len(fit_clips)} train, "
                 f"{len(val_clips)} validation, {len(test_clips)} held out",
        "held_out": [Path(meta["clips"][c]).name for c in test_clips],
        "epochs": len(history), "arch": arch, "trained": "models/pipeline.py",
    })
    calib = x[sel(fit_clips)][:: max(1, int(sel(fit_clips).sum()) // 64)]
    held_out = held_out_folder(meta, test_clips, labels, args.out)
    rows = []
    for vname, path in variants(fp32, calib).items():
        row, _ = evaluate(vname, path, labels, held_out, x[sel(test_clips)], y[sel(test_clips)],
                          clip[sel(test_clips)], args.out)
        rows.append(row)
        log(json.dumps(row))
    (args.out / "results.json").write_text(json.dumps({"history": history, "rows": rows}, indent=1))
    report(args, arch, meta, fit_clips, val_clips, test_clips, history, rows)


def report(args, arch, meta, fit, val, test, history, rows):
    pct = lambda v: "–" if v is None or v != v else f"{100 * v:.1f}%"
    lines = [
        "# Model report (generated by `python3 models/pipeline.py" + (" --quick" if args.quick else "") + "`)",
        "",
        f"Data: `{args.data}`, {len(meta['clips'])} clips. Split by clip, stratified by genre, seed "
        f"{args.seed}: {len(fit)} train, {len(val)} validation (early stopping), {len(test)} held out. "
        "Accuracy is on the held-out clips only; with this little data it is not comparable to "
        "full-GTZAN figures.",
        f"Model: {arch}, {len(history)} epochs.",
        "",
        "| variant | size MB | window acc (tract) | clip acc (tract) | window acc (ORT) | clip acc (ORT) "
        "| tract ms/window | ORT ms/window | tract peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['size_mb']:.1f} | {pct(r.get('tract_window_acc'))} | "
            f"{pct(r.get('tract_clip_acc'))} | {pct(r['ort_window_acc'])} | {pct(r['ort_clip_acc'])} | "
            f"{r.get('tract_ms', float('nan')):.1f} | {r['ort_ms']:.1f} | "
            f"{r.get('tract_peak_rss_mb', float('nan')):.0f} |"
            + (f" tract: {r['tract_error']}" if "tract_error" in r else ""))
    (args.out / "REPORT.md").write_text("\n".join(lines) + "\n")
    log(f"wrote {args.out / 'REPORT.md'}")


if __name__ == "__main__":
    main()
