"""Export to ONNX and the FP16 and INT8 variants of a trained model."""
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (QuantFormat, QuantType, quantize_dynamic,
                                      quantize_static)

from .common import STATE, Windows, input_shape, log, sibling
from .qat import DEFAULT_FORMAT, finetune, quantize
from .train import SeedInput


QAT_LR = 1e-4  # measured on the shipped model: models/REPORT.md


def qat_finetune(fp32: Path, data, fit, val, calib, epochs):
    """Quantization-aware fine-tuning of the exported FP32 model (cached
    beside it under the hash of the model and the settings): the FP32
    result is OUT/<name>.qat-fp32.onnx, ready for the static quantizer."""
    tuned = sibling(fp32, "qat-fp32")
    key = {"fp32": hashlib.sha256(fp32.read_bytes()).hexdigest(), "epochs": epochs,
           "lr": QAT_LR, "format": DEFAULT_FORMAT, "fit": data.names(fit), "val": data.names(val), "calib": len(calib)}
    done = tuned.with_suffix(".json")
    if tuned.exists() and done.exists() and json.loads(done.read_text())["key"] == key:
        log(f"{tuned.name}: fine-tuned earlier (same model and settings)")
        history = json.loads(done.read_text())["history"]
        STATE.cached_minutes += sum(e.get("seconds", 0) for e in history) / 60
        return history
    history = finetune(fp32, tuned, data.x[data.sel(fit)], data.y[data.sel(fit)],
                                data.x[data.sel(val)], data.y[data.sel(val)], calib, epochs,
                                QAT_LR, fmt=DEFAULT_FORMAT)
    done.write_text(json.dumps({"key": key, "history": history}))
    return history


def export(net, path: Path, input: str):
    net.eval()
    inner = net.net if isinstance(net, SeedInput) else net  # genrepi resizes for the seed input
    torch.onnx.export(inner, torch.zeros(*input_shape(input)), path, input_names=["input"],
                      output_names=["logits"], opset_version=17, dynamo=False)


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
    from .fp16 import fp16_weights
    out = {FP32: fp32}
    out[FP16W] = sibling(fp32, "fp16w")
    onnx.save(fp16_weights(onnx.load(fp32)), out[FP16W])
    # The final Gemm stays FP32: tract rejects its mixed types otherwise (NOTES).
    out[FP16] = sibling(fp32, "fp16")
    onnx.save(float16.convert_float_to_float16(onnx.load(fp32), keep_io_types=True,
                                               op_block_list=["Gemm"]), out[FP16])
    out[DYN] = sibling(fp32, "int8-dynamic")
    quantize_dynamic(fp32, out[DYN], weight_type=QuantType.QInt8)
    # The format tract runs on integer kernels end to end (models/genrepi_train/qat.py).
    out[QOP] = sibling(fp32, "int8-qop")
    quantize(fp32, out[QOP], x_calib, "qop-per-tensor")
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
