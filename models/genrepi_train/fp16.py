"""FP16 on disk, FP32 in compute: every FP32 initializer W becomes an FP16
initializer `W.fp16` followed by a `Cast` to FP32 named W (see
models/tools/fp16_weights.py). Needs only onnx and numpy."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def fp16_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with its FP32 weights stored as FP16, each widened by a Cast."""
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
