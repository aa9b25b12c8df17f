#!/usr/bin/env python3
"""Make genrepi's tiny test models (a few KB each, deterministic).

A small CNN with fixed random weights (numpy seed 0), built directly with
onnx.helper so no deep-learning framework is needed. It is NOT trained: its
predictions are meaningless, but it exercises the whole runtime (load,
checksum, shape checks, optimisation, inference) in milliseconds.

    python3 models/tools/make_tiny_model.py

writes models/tiny/tiny.onnx + tiny.toml (native 1x128x130 input: the model
the tests run),
tests/fixtures/models/tiny-rgb.onnx + .toml (1x3x32x32, the resize path) and
tests/fixtures/models/nan-out.onnx + .toml (every output NaN).

    python3 models/tools/make_tiny_model.py --slow DIR [--layers N]

writes DIR/slow.onnx + slow.toml instead: a deliberately slow model (N
full-resolution 3x3 convolutions with 32 channels that share one weight
tensor, so the file stays ~40 KB) for the live overload tests.

    python3 models/tools/make_tiny_model.py --qop DIR

writes DIR/qop.onnx + qop.toml: a small int8 network in onnxruntime's
QOperator format (QuantizeLinear, QLinearConv with ReLU folded into the
output zero point, int8 MaxPool, com.microsoft QLinearAdd and
QLinearGlobalAveragePool, a float Gemm: the shape of genrepi's INT8
ResNet) and DIR/qdq.onnx + .toml, the same arithmetic written as float
operators between QuantizeLinear/DequantizeLinear pairs, which tract runs
without any of genrepi's operators: the reference for the integer path.

    python3 models/tools/make_tiny_model.py --wide DIR

writes DIR/wide.onnx + wide.toml (a dense layer with 1.1 M weights, larger
than tract folds on its own) and DIR/wide-fp16.onnx + .toml, the same model
with its weights stored as FP16 (models/tools/fp16_weights.py), for the test
of genrepi's widening at load.
"""
import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genrepi_train.manifest import GTZAN_LABELS, manifest_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LABELS = GTZAN_LABELS


def build(channels: int, height: int, width: int, seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((8, channels, 5, 5)) * 0.2).astype(np.float32)
    b1 = (rng.standard_normal(8) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)
    b2 = (rng.standard_normal(16) * 0.1).astype(np.float32)
    w3 = (rng.standard_normal((len(LABELS), 16)) * 0.5).astype(np.float32)
    b3 = (rng.standard_normal(len(LABELS)) * 0.1).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (w3, "w3"), (b3, "b3")]]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], strides=[4, 4], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "genrepi-tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, channels, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(LABELS)])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="genrepi make_tiny_model.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def native_model(nodes, inits, name: str, flag: str) -> onnx.ModelProto:
    """A checked opset-17 model from `nodes`: genrepi's native 1x128x130
    input in, one logit per label out."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 128, 130])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(LABELS)])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="genrepi make_tiny_model.py" + flag)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_nan() -> onnx.ModelProto:
    """A model whose every output is NaN (a NaN bias after a mean), for the
    test that such output is an error and never a verdict."""
    w = np.ones((len(LABELS), 1), np.float32)
    b = np.full(len(LABELS), np.nan, np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w", "b"], ["logits"], transB=1),
    ]
    return native_model(nodes, inits, "genrepi-nan", "")


def build_slow(layers: int, seed: int) -> onnx.ModelProto:
    """1x128x130 in; `layers` 3x3 convs at full resolution, 32 channels."""
    rng = np.random.default_rng(seed)
    c = 32
    w0 = (rng.standard_normal((c, 1, 3, 3)) * 0.3).astype(np.float32)
    w = (rng.standard_normal((c, c, 3, 3)) * (1.0 / np.sqrt(9 * c))).astype(np.float32)
    b = np.zeros(c, np.float32)
    wf = (rng.standard_normal((len(LABELS), c)) * 0.5).astype(np.float32)
    bf = np.zeros(len(LABELS), np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w0, "w0"), (w, "w"), (b, "b"), (wf, "wf"), (bf, "bf")]]
    nodes = [helper.make_node("Conv", ["input", "w0", "b"], ["h0"], pads=[1, 1, 1, 1])]
    for i in range(layers):
        nodes.append(helper.make_node("Conv", [f"h{i}", "w", "b"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"h{i + 1}"]))
    nodes += [
        helper.make_node("GlobalAveragePool", [f"h{layers}"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1),
    ]
    return native_model(nodes, inits, "genrepi-slow", " --slow")


def build_wide(seed: int) -> onnx.ModelProto:
    """1x128x130 in; flatten, a 16640x64 dense layer (4.3 MB in FP32, above
    tract's 4 MiB constant-folding budget), ReLU, then 64x10."""
    rng = np.random.default_rng(seed)
    n = 128 * 130
    w1 = (rng.standard_normal((n, 64)) / np.sqrt(n)).astype(np.float32)
    w2 = (rng.standard_normal((64, len(LABELS))) * 0.5).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["f"], axis=1),
         helper.make_node("MatMul", ["f", "w1"], ["h"]),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["logits"])],
        "genrepi-wide",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 128, 130])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(LABELS)])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="genrepi make_tiny_model.py --wide")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_quantized(seed: int, qoperator: bool) -> onnx.ModelProto:
    """The int8 test network (see the module docs), as QOperator integer
    ops or as its QDQ float twin. Scales are set by hand for inputs of the
    size genrepi's normalised windows have (about -2..2)."""
    rng = np.random.default_rng(seed)
    i8 = lambda a: np.clip(np.round(a), -127, 127).astype(np.int8)

    def weights(shape, std):
        w = rng.standard_normal(shape) * std
        scale = np.float32(np.abs(w).max() / 127)
        return i8(w / scale), scale

    # (scale, zero point) of each activation; -128 folds a ReLU.
    q = {"x": (4 / 255, 0), "c1": (4 / 255, -128), "c2": (4 / 255, -128),
         "c3": (8 / 255, 0), "a": (6 / 255, -128), "p": (3 / 255, -128)}
    convs = {  # name: (input, weight shape, weight std, pads, strides)
        "c1": ("x", (8, 1, 5, 5), 0.2, [2, 2, 2, 2], [4, 4]),
        "c2": ("m", (8, 8, 3, 3), 1 / np.sqrt(72), [1, 1, 1, 1], [1, 1]),
        "c3": ("c2", (8, 8, 1, 1), 1 / np.sqrt(8), [0, 0, 0, 0], [1, 1]),
    }
    wf = (rng.standard_normal((len(LABELS), 8)) * 0.5).astype(np.float32)
    bf = (rng.standard_normal(len(LABELS)) * 0.1).astype(np.float32)
    inits = [numpy_helper.from_array(wf, "wf"), numpy_helper.from_array(bf, "bf")]
    for t, (scale, zero) in q.items():
        inits += [numpy_helper.from_array(np.array(scale, np.float32), f"{t}_s"),
                  numpy_helper.from_array(np.array(zero, np.int8), f"{t}_z")]
    nodes = [helper.make_node("QuantizeLinear", ["input", "x_s", "x_z"], ["xq"])]
    source = {"x": "xq", "m": "mq", "c2": "c2q"}
    qtensor = {"m": "c1"}  # MaxPool keeps its input's quantization
    for name, (src, shape, std, pads, strides) in convs.items():
        w, ws = weights(shape, std)
        src_q = qtensor.get(src, src)
        bias = np.round(rng.standard_normal(shape[0]) * 0.1 / (q[src_q][0] * ws)).astype(np.int32)
        inits += [numpy_helper.from_array(w, f"{name}_w"),
                  numpy_helper.from_array(np.array(ws, np.float32), f"{name}_ws"),
                  numpy_helper.from_array(np.array(0, np.int8), f"{name}_wz"),
                  numpy_helper.from_array(bias, f"{name}_b")]
        if qoperator:
            nodes.append(helper.make_node(
                "QLinearConv", [source[src], f"{src_q}_s", f"{src_q}_z", f"{name}_w",
                                f"{name}_ws", f"{name}_wz", f"{name}_s", f"{name}_z",
                                f"{name}_b"], [f"{name}q"], pads=pads, strides=strides))
        else:
            inits.append(numpy_helper.from_array(
                np.array(q[src_q][0] * ws, np.float32), f"{name}_bs"))
            nodes += [
                helper.make_node("DequantizeLinear", [source[src], f"{src_q}_s", f"{src_q}_z"],
                                 [f"{name}_in"]),
                helper.make_node("DequantizeLinear", [f"{name}_w", f"{name}_ws", f"{name}_wz"],
                                 [f"{name}_wf"]),
                helper.make_node("DequantizeLinear", [f"{name}_b", f"{name}_bs"],
                                 [f"{name}_bf"]),
                helper.make_node("Conv", [f"{name}_in", f"{name}_wf", f"{name}_bf"],
                                 [f"{name}_f"], pads=pads, strides=strides),
                helper.make_node("QuantizeLinear", [f"{name}_f", f"{name}_s", f"{name}_z"],
                                 [f"{name}q"])]
        if name == "c1":
            nodes.append(helper.make_node("MaxPool", ["c1q"], ["mq"], kernel_shape=[3, 3],
                                          strides=[2, 2], pads=[1, 1, 1, 1]))
    if qoperator:
        ms = "com.microsoft"
        nodes += [
            helper.make_node("QLinearAdd", ["c3q", "c3_s", "c3_z", "mq", "c1_s", "c1_z",
                                            "a_s", "a_z"], ["aq"], domain=ms),
            helper.make_node("QLinearGlobalAveragePool", ["aq", "a_s", "a_z", "p_s", "p_z"],
                             ["pq"], domain=ms, channels_last=0)]
    else:
        dq = lambda t, tq, out: helper.make_node("DequantizeLinear", [tq, f"{t}_s", f"{t}_z"],
                                                 [out])
        nodes += [dq("c3", "c3q", "c3f"), dq("c1", "mq", "mf"),
                  helper.make_node("Add", ["c3f", "mf"], ["af"]),
                  helper.make_node("QuantizeLinear", ["af", "a_s", "a_z"], ["aq"]),
                  dq("a", "aq", "a_in"),
                  helper.make_node("GlobalAveragePool", ["a_in"], ["pf0"]),
                  helper.make_node("QuantizeLinear", ["pf0", "p_s", "p_z"], ["pq"])]
    nodes += [helper.make_node("DequantizeLinear", ["pq", "p_s", "p_z"], ["pf"]),
              helper.make_node("Flatten", ["pf"], ["f"], axis=1),
              helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "genrepi-int8-" + ("qop" if qoperator else "qdq"),
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 128, 130])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(LABELS)])],
        inits)
    opsets = [helper.make_opsetid("", 17)] + (
        [helper.make_opsetid("com.microsoft", 1)] if qoperator else [])
    model = helper.make_model(graph, opset_imports=opsets,
                              producer_name="genrepi make_tiny_model.py --qop")
    model.ir_version = 8
    if not qoperator:  # the checker does not know the com.microsoft ops
        onnx.checker.check_model(model)
    return model


def write(model: onnx.ModelProto, onnx_path: Path, name: str, shape, note: str) -> None:
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    onnx_path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    onnx_path.with_suffix(".toml").write_text(manifest_text(
        name, onnx_path.name, digest, LABELS, shape,
        {"trained": "no: fixed random weights (numpy seed), for tests only",
         "script": "models/tools/make_tiny_model.py"},
        comment=f"{note}\nMade by models/tools/make_tiny_model.py: fixed random weights, NOT trained."))
    print(f"{onnx_path} ({len(data)} bytes, sha256 {digest})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slow", type=Path, help="write only the slow test model, into this folder")
    ap.add_argument("--layers", type=int, default=12, help="convolutions in the slow model")
    ap.add_argument("--wide", type=Path,
                    help="write only the wide test model and its FP16-weights copy, into this folder")
    ap.add_argument("--qop", type=Path,
                    help="write only the int8 QOperator test model and its QDQ twin, into this folder")
    args = ap.parse_args()
    if args.qop:
        write(build_quantized(4, True), args.qop / "qop.onnx", "int8-qop-test", (1, 1, 128, 130),
              "Int8 test model in onnxruntime's QOperator format (com.microsoft ops included).")
        write(build_quantized(4, False), args.qop / "qdq.onnx", "int8-qdq-test", (1, 1, 128, 130),
              "The same int8 arithmetic as float ops between QuantizeLinear/DequantizeLinear.")
        raise SystemExit(0)
    if args.wide:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from genrepi_train.fp16 import fp16_weights
        write(build_wide(3), args.wide / "wide.onnx", "wide-test", (1, 1, 128, 130),
              "Wide test model: one 1.1 M-weight dense layer.")
        write(fp16_weights(build_wide(3)), args.wide / "wide-fp16.onnx", "wide-fp16-test",
              (1, 1, 128, 130), "The wide test model with its weights stored as FP16.")
        raise SystemExit(0)
    if args.slow:
        write(build_slow(args.layers, 2), args.slow / "slow.onnx", "slow-test",
              (1, 1, 128, 130), f"Deliberately slow test model ({args.layers} full-resolution convs).")
        raise SystemExit(0)
    write(build(1, 128, 130, 0), ROOT / "models/tiny/tiny.onnx", "tiny-test",
          (1, 1, 128, 130), "Tiny test model with genrepi's native 1x128x130 input.")
    write(build(3, 32, 32, 1), ROOT / "tests/fixtures/models/tiny-rgb.onnx", "tiny-rgb-test",
          (1, 3, 32, 32), "Tiny test model with a resized 3-channel input (seed-style layout).")
    write(build_nan(), ROOT / "tests/fixtures/models/nan-out.onnx", "nan-out-test",
          (1, 1, 128, 130), "Test model whose output is always NaN.")
