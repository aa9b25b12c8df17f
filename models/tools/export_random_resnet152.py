#!/usr/bin/env python3
"""Export a random-weight ResNet-152 to ONNX, with a genrepi manifest.

For benchmarks only (inference cost does not depend on the weights): the
file is ~230 MB and is never committed (.gitignore: *.random.onnx).

    python3 models/tools/export_random_resnet152.py               # 1x1x128x130
    python3 models/tools/export_random_resnet152.py --shape 3 299 299

writes models/random/resnet152-<C>x<H>x<W>.random.onnx and .toml.
"""
import argparse
import hashlib
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["blues", "classical", "country", "disco", "hiphop",
          "jazz", "metal", "pop", "reggae", "rock"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=[1, 128, 130], metavar=("C", "H", "W"))
    args = ap.parse_args()
    c, h, w = args.shape
    torch.manual_seed(0)
    net = torchvision.models.resnet152(weights=None, num_classes=len(LABELS))
    if c != 3:
        net.conv1 = torch.nn.Conv2d(c, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.eval()
    out = ROOT / f"models/random/resnet152-{c}x{h}x{w}.random.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, torch.zeros(1, c, h, w), out, input_names=["input"],
                      output_names=["logits"], opset_version=17, dynamo=False)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    labels = ", ".join(f'"{l}"' for l in LABELS)
    out.with_suffix("").with_suffix(".toml").write_text(f"""# Random-weight ResNet-152 for benchmarks (made by models/tools/export_random_resnet152.py)
name = "resnet152-random-{c}x{h}x{w}"
model = "{out.name}"
sha256 = "{digest}"
labels = [{labels}]
output = "logits"

[input]
shape = [1, {c}, {h}, {w}]

[normalize]
mean = -40.0
std = 20.0
""")
    print(out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
