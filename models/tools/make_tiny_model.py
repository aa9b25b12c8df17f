#!/usr/bin/env python3
"""Make genrepi's tiny test models (a few KB each, deterministic).

A small CNN with fixed random weights (numpy seed 0), built directly with
onnx.helper so no deep-learning framework is needed. It is NOT trained: its
predictions are meaningless, but it exercises the whole runtime (load,
checksum, shape checks, optimisation, inference) in milliseconds.

    python3 models/tools/make_tiny_model.py

writes models/tiny/tiny.onnx + tiny.toml (native 1x128x130 input: the model
the tests run) and
tests/fixtures/models/tiny-rgb.onnx + .toml (1x3x32x32, the resize path).

    python3 models/tools/make_tiny_model.py --slow DIR [--layers N]

writes DIR/slow.onnx + slow.toml instead: a deliberately slow model (N
full-resolution 3x3 convolutions with 32 channels that share one weight
tensor, so the file stays ~40 KB) for the live overload tests.

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

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["blues", "classical", "country", "disco", "hiphop",
          "jazz", "metal", "pop", "reggae", "rock"]


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
    graph = helper.make_graph(
        nodes, "genrepi-slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 128, 130])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(LABELS)])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="genrepi make_tiny_model.py --slow")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


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


def write(model: onnx.ModelProto, onnx_path: Path, name: str, shape, note: str) -> None:
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    onnx_path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    labels = ", ".join(f'"{l}"' for l in LABELS)
    onnx_path.with_suffix(".toml").write_text(f"""# {note}
# Made by models/tools/make_tiny_model.py: fixed random weights, NOT trained.
name = "{name}"
model = "{onnx_path.name}"
sha256 = "{digest}"
labels = [{labels}]
output = "logits"

[input]
shape = {list(shape)}

[normalize]
mean = -40.0
std = 20.0

[features]
sample_rate = 22050
n_fft = 2048
hop_length = 512
n_mels = 128
fmin = 0.0
fmax = 11025.0
frames = 130
top_db = 80.0

[provenance]
trained = "no: fixed random weights (numpy seed), for tests only"
script = "models/tools/make_tiny_model.py"
""")
    print(f"{onnx_path} ({len(data)} bytes, sha256 {digest})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slow", type=Path, help="write only the slow test model, into this folder")
    ap.add_argument("--layers", type=int, default=12, help="convolutions in the slow model")
    ap.add_argument("--wide", type=Path,
                    help="write only the wide test model and its FP16-weights copy, into this folder")
    args = ap.parse_args()
    if args.wide:
        sys.path.insert(0, str(Path(__file__).parent))
        from fp16_weights import fp16_weights
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
