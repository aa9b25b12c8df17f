#!/usr/bin/env python3
"""The FP32 timing twin of a shipped INT8 model, and a manifest to bench both.

    python3 models/tools/fp32_twin.py [MANIFEST] [--out DIR]
    cargo run --release -- --model DIR/bench.toml bench
    python3 models/tools/bench_table.py --model DIR/bench.toml

MANIFEST (default models/default.toml) names an INT8 variant in
onnxruntime's QOperator format (QuantizeLinear, QLinearConv, QLinearAdd,
QLinearGlobalAveragePool, DequantizeLinear). The twin is the same graph in
FP32: every QLinearConv becomes a Conv with its weights and bias
dequantized (followed by a Relu where the INT8 output's zero point is the
int8 minimum, i.e. where onnxruntime folded a Relu into it), QLinearAdd an
Add (Relu likewise), the pools their float ops, Quantize/DequantizeLinear
identities. Same shapes, operators and weights as the FP32 ResNet-152 the
INT8 one was quantized from, so tract and onnxruntime spend the same time on
it; its outputs are close to, not equal to, that model's (the QAT weights
are not the FP32 ones), so it is for timing, not accuracy.

DIR (default target/fp32-twin) gets `<name>.fp32-twin.onnx`, a link to the
INT8 file and `bench.toml`: the manifest with the twin added as variant
`fp32`. The pipeline's own FP32 file (models/work/, PIPELINE_SHIP_FP16W=1)
serves as well where it exists; this needs only the shipped files.
"""
import argparse
import hashlib
import os
import tomllib
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
INT8_MIN = -128


def attributes(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def fp32_twin(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    weights = {}
    nodes = []

    def f(name):  # the float tensor standing for a quantized one
        return name + ".f"

    def relu_if_clamped(node, out):
        """Output `out`, through a Relu when the INT8 op's zero point clamps at 0."""
        if int(init[node.input[7]]) == INT8_MIN:
            nodes.append(helper.make_node("Relu", [out + ".pre"], [out]))
            return out + ".pre"
        return out

    for n in g.node:
        i = list(n.input)
        if n.op_type == "QuantizeLinear":
            nodes.append(helper.make_node("Identity", [i[0]], [f(n.output[0])]))
        elif n.op_type == "DequantizeLinear":
            nodes.append(helper.make_node("Identity", [f(i[0])], [n.output[0]]))
        elif n.op_type == "QLinearConv":
            w_scale = init[i[4]].astype(np.float32)
            w_zero = init[i[5]].astype(np.float32)
            per_channel = (-1, 1, 1, 1)
            w = init[i[3]].astype(np.float32)
            w = (w - w_zero.reshape(per_channel if w_zero.ndim else ())) * w_scale.reshape(
                per_channel if w_scale.ndim else ()
            )
            bias = init[i[8]].astype(np.float32) * float(init[i[1]]) * w_scale
            weights[i[3] + ".w"], weights[i[8] + ".b"] = w, bias
            conv_out = len(nodes)
            out = relu_if_clamped(n, f(n.output[0]))
            nodes.insert(
                conv_out,
                helper.make_node(
                    "Conv", [f(i[0]), i[3] + ".w", i[8] + ".b"], [out], **attributes(n)
                ),
            )
        elif n.op_type == "QLinearAdd":
            add_out = len(nodes)
            out = relu_if_clamped(n, f(n.output[0]))
            nodes.insert(add_out, helper.make_node("Add", [f(i[0]), f(i[3])], [out]))
        elif n.op_type == "QLinearGlobalAveragePool":
            nodes.append(helper.make_node("GlobalAveragePool", [f(i[0])], [f(n.output[0])]))
        elif n.op_type == "MaxPool":
            nodes.append(
                helper.make_node("MaxPool", [f(i[0])], [f(n.output[0])], **attributes(n))
            )
        elif n.domain in ("", "ai.onnx") and not n.op_type.startswith("QLinear"):
            # Float ops after the DequantizeLinear (Flatten, Gemm).
            nodes.append(helper.make_node(n.op_type, i, list(n.output), **attributes(n)))
            weights.update({x: init[x] for x in i if x in init})
        else:
            raise SystemExit(f"fp32_twin: no float counterpart for {n.domain}:{n.op_type}")
    graph = helper.make_graph(
        nodes,
        g.name + "-fp32-twin",
        list(g.input),
        list(g.output),
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    twin = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    twin.ir_version = model.ir_version
    onnx.checker.check_model(twin)
    return twin


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", nargs="?", default=str(ROOT / "models/default.toml"))
    ap.add_argument("--out", default=str(ROOT / "target/fp32-twin"))
    args = ap.parse_args()
    manifest_path = Path(args.manifest).resolve()
    text = manifest_path.read_text()
    manifest = tomllib.loads(text)
    int8 = next(
        (v for v in manifest.get("variant", []) if v.get("arithmetic") == "int8"), None
    )
    if int8 is None:
        raise SystemExit(f"fp32_twin: {manifest_path} has no int8 variant")
    if any(v["name"] == "fp32" for v in manifest["variant"]):
        raise SystemExit(f"fp32_twin: {manifest_path} has an fp32 variant already")
    src = manifest_path.parent / int8["model"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    twin_name = Path(int8["model"]).name.replace(".int8", "").replace(".onnx", "") + ".fp32-twin.onnx"
    tmp = out / (twin_name + ".tmp")
    onnx.save(fp32_twin(onnx.load(src)), tmp)
    os.replace(tmp, out / twin_name)
    link = out / Path(int8["model"]).name
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(src)
    sha = hashlib.sha256((out / twin_name).read_bytes()).hexdigest()
    variant = (
        f'[[variant]]\nname = "fp32"\nmodel = "{twin_name}"\nsha256 = "{sha}"\n'
        f'arithmetic = "fp32"\naccuracy = "timing twin of {int8["model"]} (fp32_twin.py)"\n\n'
    )
    at = text.index("[provenance]") if "[provenance]" in text else len(text)
    (out / "bench.toml.tmp").write_text(text[:at] + variant + text[at:])
    os.replace(out / "bench.toml.tmp", out / "bench.toml")
    print(f"{out / twin_name} ({(out / twin_name).stat().st_size / 1e6:.1f} MB), {out / 'bench.toml'}")


if __name__ == "__main__":
    main()
