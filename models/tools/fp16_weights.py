#!/usr/bin/env python3
"""Store an ONNX model's FP32 weights as FP16 on disk, computing in FP32.

    python3 models/tools/fp16_weights.py IN.onnx OUT.onnx

Every FP32 initializer W becomes an FP16 initializer `W.fp16` followed by a
`Cast` to FP32 named W, so every operator still sees FP32 weights and runs
its FP32 kernels. The file is half the size; the only change in the results
is the rounding of each weight to FP16. genrepi widens these weights back to
FP32 once, at load (tract's own constant folding leaves them as casts, see
`widen_f16_weights` in src/model/mod.rs), so latency and memory are those
of the FP32 model. onnxruntime folds the casts at session start likewise.

This is the "FP16 on disk, widened at load" option for CPUs without FP16
arithmetic (x86, the Pi 4's Cortex-A72), where computing in FP16 is slow.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def fp16_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    initializers, casts = [], []
    for t in graph.initializer:
        if t.data_type != TensorProto.FLOAT:
            initializers.append(t)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name + ".fp16")
        initializers.append(half)
        casts.append(helper.make_node("Cast", [half.name], [t.name], to=TensorProto.FLOAT,
                                      name=t.name + ".widen"))
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    onnx.save(fp16_weights(onnx.load(sys.argv[1])), sys.argv[2])
