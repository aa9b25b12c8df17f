"""Quantization-aware fine-tuning for static INT8, simulating exactly the rounding onnxruntime's
quantizer gives the shipped format, and that quantizer's call."""
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, numpy_helper

from .common import Windows, log
from .train import augment

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
    quantize_static(fp32, out, Windows(calib), quant_format=quant_format,
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
    log(f"QAT: {len(ort_ranges)} activation tensors rounded to int8 (scales within "
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
        log(f"QAT epoch {epoch}: " + (f"loss {loss:.4f}, " if loss is not None else "")
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
            xb, _ = augment(xt[idx], yt[idx], classes, rng)
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
