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
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genrepi_train.fp16 import fp16_weights  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    onnx.save(fp16_weights(onnx.load(sys.argv[1])), sys.argv[2])
