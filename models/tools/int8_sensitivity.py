#!/usr/bin/env python3
"""Which layers break static INT8? Quantize the pipeline's FP32 model with
some nodes kept FP32 and evaluate it in tract on the held-out clips.

    python3 models/tools/int8_sensitivity.py NAME OPS METHOD WINDOWS [EXCLUDE_REGEX,...]

NAME: output stem (in /tmp/int8-sensitivity); OPS: `all` or op types to
quantize (`Conv,Gemm`); METHOD: MinMax, Percentile or Entropy; WINDOWS:
calibration windows (from fold 0's training clips); EXCLUDE_REGEX: node
names kept FP32, e.g. '^/layer3/'. Needs a finished `models/pipeline.py` run
(models/work). Prints tract's window and clip accuracy.
"""
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models"))
from genrepi_train.common import GENREPI, Windows  # noqa: E402
from genrepi_train.data import Data, fold_split, stratified_folds  # noqa: E402

WORK = ROOT / "models/work"
OUT = Path("/tmp/int8-sensitivity")


def main():
    name, ops, method, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    exclude = sys.argv[5].split(",") if len(sys.argv) > 5 else []
    d = np.load(WORK / "features.npz")
    meta = json.loads((WORK / "features.json").read_text())
    data = Data(d["x"].astype(np.float32), d["y"].astype(np.int64), d["clip"].astype(np.int64),
                  meta)
    fit, _, _ = fold_split(data, stratified_folds(data.clip_labels, 4, 0, data.tracks), 0, 0)
    x = data.x[data.sel(fit)]
    fp32 = WORK / "resnet152-gtzan-81.onnx"
    nodes = [nd.name for nd in onnx.load(fp32).graph.node
             if any(re.search(e, nd.name) for e in exclude)]
    OUT.mkdir(exist_ok=True)
    out = OUT / f"{name}.onnx"
    quantize_static(fp32, out, Windows(x[:: max(1, len(x) // n)]), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    op_types_to_quantize=None if ops == "all" else ops.split(","),
                    calibrate_method=getattr(CalibrationMethod, method), nodes_to_exclude=nodes)
    toml = (WORK / "resnet152-gtzan-81.toml").read_text()
    toml = toml.replace('model = "resnet152-gtzan-81.onnx"', f'model = "{out.name}"')
    toml = re.sub(r'sha256 = "[0-9a-f]+"',
                  f'sha256 = "{hashlib.sha256(out.read_bytes()).hexdigest()}"', toml)
    (OUT / f"{name}.toml").write_text(toml)
    report = OUT / f"{name}.json"
    subprocess.run([str(GENREPI), "--model", str(OUT / f"{name}.toml"), "eval",
                    str(WORK / "held-out"), "--jobs", "1", "--report", str(report)],
                   check=True, capture_output=True)
    r = json.loads(report.read_text())
    print(f"{name}: {len(nodes)} nodes kept FP32, {out.stat().st_size / 1e6:.0f} MB: tract window "
          f"{100 * r['window_accuracy']:.1f}%, clip {100 * r['clip_accuracy']:.1f}%")


if __name__ == "__main__":
    main()
