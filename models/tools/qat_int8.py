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
section of models/REPORT.md (`--report-only`: from OUT/qat.json alone). models/pipeline.py calls
`finetune` for its own variant of the same name.
"""
import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models"))
import pipeline as P  # noqa: E402

QMIN, QMAX = -128, 127  # int8 activations, asymmetric (onnxruntime's QInt8)
WMAX = 127  # int8 weights, symmetric: [-127, 127]

# The static INT8 formats, as onnxruntime's quantize_static makes them.
# "qop-per-tensor" is what tract runs on integer kernels end to end
# (QLinearConv with per-tensor weights fuses its requantization into the
# int8 matmul; the residual additions are QLinearAdd, which genrepi
# registers with tract; the final Gemm stays float). "qdq-per-channel" is
# the earlier format: tract runs its convolutions in float between the
# quantize and dequantize nodes.
FORMATS = {
    "qop-per-tensor": {"qoperator": True, "per_channel": False,
                       "op_types": ["Conv", "Relu", "Add", "MaxPool", "GlobalAveragePool"]},
    "qdq-per-channel": {"qoperator": False, "per_channel": True, "op_types": None},
}
DEFAULT_FORMAT = "qop-per-tensor"
FORMAT_WORDS = {
    "qop-per-tensor": "QOperator format with per-tensor weights that tract runs on integer "
                      "kernels (convolutions, residual additions and pooling in int8, the "
                      "final Gemm in float)",
    "qdq-per-channel": "QDQ format with per-channel weights",
}


def widened(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with FP16-on-disk weights (Cast of an FP16 initializer)
    stored as FP32 initializers under the Cast's output name."""
    inits = {t.name: t for t in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        src = inits.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if src is not None and src.data_type == TensorProto.FLOAT16:
            w = numpy_helper.to_array(src).astype(np.float32)
            model.graph.initializer.remove(src)
            model.graph.initializer.append(numpy_helper.from_array(w, node.output[0]))
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class OnnxNet(torch.nn.Module):
    """Runs an ONNX CNN graph (Conv, Relu, Add, MaxPool, GlobalAveragePool,
    Flatten, Gemm) in PyTorch with its initializers as trainable parameters,
    optionally with int8 rounding simulated on the tensors in `ranges` and
    on the Conv/Gemm weights."""

    OPS = {"Conv", "Relu", "Add", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm"}

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        self.graph_nodes = [(n.op_type, list(n.input), list(n.output), attrs(n))
                            for n in model.graph.node]
        unknown = {op for op, *_ in self.graph_nodes} - self.OPS
        if unknown:
            raise SystemExit(f"error: qat_int8 cannot run operators {sorted(unknown)}")
        self.names = {t.name: f"w{i}" for i, t in enumerate(model.graph.initializer)}
        self.params = torch.nn.ParameterDict({
            self.names[t.name]: torch.nn.Parameter(torch.from_numpy(
                numpy_helper.to_array(t).astype(np.float32).copy()))
            for t in model.graph.initializer})
        self.input = model.graph.input[0].name
        self.output = model.graph.output[0].name
        self.ranges = {}  # tensor name -> (scale, zero point) while simulating int8
        self.fake = False
        self.per_channel = True  # weight scales per output channel, else per tensor
        self.weight_ops = {"Conv", "Gemm"}  # whose weights are rounded to int8

    def weight(self, name, axis, op):
        w = self.params[self.names[name]]
        if not self.fake or op not in self.weight_ops:
            return w
        if not self.per_channel:
            scale = max(float(w.detach().abs().max()) / WMAX, 1e-12)
            return torch.fake_quantize_per_tensor_affine(w, scale, 0, -WMAX, WMAX)
        dims = [d for d in range(w.dim()) if d != axis]
        scale = (w.detach().abs().amax(dim=dims) / WMAX).clamp(min=1e-12)
        zero = torch.zeros(w.shape[axis], dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, axis, -WMAX, WMAX)

    def simulate(self, fmt: str):
        """Rounds weights as format `fmt` of FORMATS does."""
        f = FORMATS[fmt]
        self.per_channel = f["per_channel"]
        self.weight_ops = {"Conv", "Gemm"} & set(f["op_types"] or {"Conv", "Gemm"})

    def forward(self, x, observe=None):
        env = {self.input: x}

        def put(name, t):
            if observe is not None:
                lo, hi = observe.get(name, (0.0, 0.0))
                observe[name] = (min(lo, float(t.min())), max(hi, float(t.max())))
            if self.fake and name in self.ranges:
                scale, zero = self.ranges[name]
                t = torch.fake_quantize_per_tensor_affine(t, scale, zero, QMIN, QMAX)
            env[name] = t

        put(self.input, x)
        for op, ins, outs, a in self.graph_nodes:
            v = [env.get(i) for i in ins]
            if op == "Conv":
                pads = a.get("pads", [0, 0, 0, 0])
                assert pads[:2] == pads[2:], "asymmetric Conv padding"
                bias = self.params[self.names[ins[2]]] if len(ins) > 2 else None
                y = F.conv2d(v[0], self.weight(ins[1], 0, op), bias, a.get("strides", 1), pads[:2],
                             a.get("dilations", 1), a.get("group", 1))
            elif op == "Relu":
                y = F.relu(v[0])
            elif op == "Add":
                y = v[0] + v[1]
            elif op == "MaxPool":
                pads = a.get("pads", [0, 0, 0, 0])
                assert pads[:2] == pads[2:], "asymmetric MaxPool padding"
                y = F.max_pool2d(v[0], a["kernel_shape"], a.get("strides"), pads[:2],
                                 ceil_mode=bool(a.get("ceil_mode", 0)))
            elif op == "GlobalAveragePool":
                y = v[0].mean(dim=(2, 3), keepdim=True)
            elif op == "Flatten":
                y = v[0].flatten(a.get("axis", 1))
            else:  # Gemm
                assert not a.get("transA", 0), "Gemm with transA"
                w = self.weight(ins[1], 0 if a.get("transB", 0) else 1, op)
                y = a.get("alpha", 1.0) * (v[0] @ (w.t() if a.get("transB", 0) else w))
                if len(ins) > 2:
                    y = y + a.get("beta", 1.0) * self.params[self.names[ins[2]]]
            put(outs[0], y)
        return env[self.output]

    def to_onnx(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """`model` (the widened graph) with this module's weights."""
        out = onnx.ModelProto()
        out.CopyFrom(model)
        for t in out.graph.initializer:
            t.CopyFrom(numpy_helper.from_array(
                self.params[self.names[t.name]].detach().numpy(), t.name))
        return out


def quantized_tensors(qdq: onnx.ModelProto):
    """The activation tensors onnxruntime's QDQ model quantizes, with its
    scale and zero point for each."""
    inits = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer}
    # A graph output keeps its name for the last DequantizeLinear's result:
    # the tensor quantized is then renamed "<name>_QuantizeLinear_Input".
    original = lambda name: name.removesuffix("_QuantizeLinear_Input")
    return {original(n.input[0]): (float(inits[n.input[1]]), int(inits[n.input[2]]))
            for n in qdq.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


def minmax_ranges(net: OnnxNet, calib: np.ndarray, names):
    """Per-tensor int8 scale and zero point from the calibration windows, as
    onnxruntime's MinMax calibrator and asymmetric QInt8 compute them."""
    seen = {}
    fake, net.fake = net.fake, False
    with torch.no_grad():
        for i in range(0, len(calib), 16):  # min and max over all windows, as batches
            net(torch.from_numpy(calib[i:i + 16]), observe=seen)
    net.fake = fake
    ranges = {}
    for name in names:
        lo, hi = seen[name]
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = (hi - lo) / (QMAX - QMIN) if hi > lo else 1.0
        ranges[name] = (scale, int(np.clip(round(QMIN - lo / scale), QMIN, QMAX)))
    return ranges


def quantize(fp32: Path, out: Path, calib: np.ndarray, fmt: str = DEFAULT_FORMAT,
             qdq: bool = False):
    """Static INT8 of `fp32` in format `fmt` (FORMATS), calibrated with
    onnxruntime's MinMax on `calib`. `qdq`: the same quantization written
    as QDQ nodes, whose tensor names say what the format rounds."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    f = FORMATS[fmt]
    quant_format = QuantFormat.QOperator if f["qoperator"] and not qdq else QuantFormat.QDQ
    quantize_static(fp32, out, P.Windows(calib), quant_format=quant_format,
                    per_channel=f["per_channel"], activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=f["op_types"])


def finetune(fp32: Path, out: Path, x_fit, y_fit, x_val, y_val, calib, epochs=10, lr=1e-4,
             batch=16, seed=0, ptq: Path = None, recalibrate=10, temperature=2.0,
             fmt: str = DEFAULT_FORMAT):
    """Fine-tunes the FP32 model `fp32` with int8 rounding simulated, to give
    the outputs the FP32 model gives (distillation: the target is FP32's
    behaviour, not the labels, which 50 clips would overfit), and saves the
    FP32 result at `out`. The activation ranges are recomputed from the
    calibration windows every `recalibrate` steps, as the quantizer will
    compute them. Keeps the epoch whose simulated INT8 agrees best with FP32
    on the validation windows (0 = unchanged) and returns the history.
    `ptq`: onnxruntime's static INT8 of `fp32` as QDQ nodes in format
    `fmt`, made here when not given, says which tensors to round."""
    model = widened(onnx.load(fp32))
    if ptq is None:
        ptq = out.with_name(out.stem + ".spec.onnx")
        quantize(fp32, ptq, calib, fmt, qdq=True)
    ort_ranges = quantized_tensors(onnx.load(ptq))
    net, teacher = OnnxNet(model), OnnxNet(model)
    net.simulate(fmt)
    teacher.requires_grad_(False)
    missing = set(ort_ranges) - {o for _, _, outs, _ in net.graph_nodes for o in outs} - {net.input}
    if missing:
        raise SystemExit(f"error: {ptq}: quantizes tensors the FP32 graph lacks: {sorted(missing)[:3]}")
    net.ranges = minmax_ranges(net, calib, ort_ranges)
    worst = max(abs(net.ranges[n][0] / ort_ranges[n][0] - 1) for n in ort_ranges)
    P.log(f"QAT: {len(ort_ranges)} activation tensors rounded to int8 (scales within "
          f"{100 * worst:.2f}% of onnxruntime's)")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    classes = int(y_fit.max()) + 1
    net.fake = True

    def logits(model, x):
        with torch.no_grad():
            return torch.cat([model(torch.from_numpy(x[s:s + 32])) for s in range(0, len(x), 32)])

    fp32_val = logits(teacher, x_val).argmax(1).numpy()

    def score(epoch, loss, seconds):
        sim = logits(net, x_val).argmax(1).numpy()
        e = {"epoch": epoch, "val_agreement": float((sim == fp32_val).mean()),
             "val_window_acc": float((sim == y_val).mean()), "loss": loss, "seconds": seconds}
        P.log(f"QAT epoch {epoch}: " + (f"loss {loss:.4f}, " if loss is not None else "")
              + f"simulated INT8 on the validation windows: same genre as FP32 "
              f"{e['val_agreement']:.3f}, accuracy {e['val_window_acc']:.3f} "
              f"(FP32 {float((fp32_val == y_val).mean()):.3f})")
        return e

    history = [score(0, None, 0.0)]
    rank = lambda e: (e["val_agreement"], e["val_window_acc"])
    best = (rank(history[0]), {k: v.detach().clone() for k, v in net.params.items()})
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    steps = epochs * (len(x_fit) // batch)
    # A warm-up first: at full rate from the start, the first steps knock the
    # network far off FP32 (simulated-INT8 agreement 50% -> 17% after epoch 1).
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                pct_start=0.2)
    xt, yt = torch.from_numpy(x_fit), torch.from_numpy(y_fit)
    step = 0
    for epoch in range(1, epochs + 1):
        t0, losses = time.time(), []
        order = torch.randperm(len(xt))
        for s in range(0, len(order) - batch + 1, batch):
            idx = order[s:s + batch]
            xb, _ = P.augment(xt[idx], yt[idx], classes, rng)
            with torch.no_grad():
                target = torch.softmax(teacher(xb) / temperature, 1)
            loss = F.kl_div(torch.log_softmax(net(xb) / temperature, 1), target,
                            reduction="batchmean") * temperature ** 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            step += 1
            if step % recalibrate == 0:
                net.ranges = minmax_ranges(net, calib, ort_ranges)
        net.ranges = minmax_ranges(net, calib, ort_ranges)
        history.append(score(epoch, float(np.mean(losses)), time.time() - t0))
        if rank(history[-1]) > best[0]:
            best = (rank(history[-1]), {k: v.detach().clone() for k, v in net.params.items()})
    for k, v in best[1].items():
        net.params[k].data.copy_(v)
    onnx.save(net.to_onnx(model), out)
    return history


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
    x, y, clip, meta = P.features(args.data, args.out)
    data = P.Data(x, y, clip, meta)
    fold_of = P.stratified_folds(data.clip_labels, args.folds, args.seed, data.tracks)
    fit, val, test = P.fold_split(data, fold_of, 0, args.seed)
    if sorted(field("held_out")) != sorted(data.names(test)):
        raise SystemExit(f"error: {args.model}: its held-out clips are not fold 0 of this split")
    fsel, vsel = data.sel(fit), data.sel(val)
    calib = x[fsel][:: max(1, int(fsel.sum()) // args.calib)]  # the pipeline's choice
    held_out = P.held_out_folder(data, test, args.out)

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
        rows.append(P.evaluate_now(name, manifest, path, held_out, data, test, lambda xs: xs,
                                   args.out, None, None))
        P.log(json.dumps(rows[-1]))
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
    P.log(f"wrote {path}")

if __name__ == "__main__":
    main()
