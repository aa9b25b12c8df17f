"""Paths, logging, the one manifest writer and what every stage shares."""
import hashlib
import os
import subprocess
import time
from types import SimpleNamespace
from pathlib import Path

from onnxruntime.quantization import CalibrationDataReader

from .manifest import manifest_text


# How a recording shorter than one window becomes a window (the manifest's
# [features] short_input) in this run: set from the recipe by the command
# line; genrepi's features, replay, eval and listen all follow the shipped
# manifest, so training sees what they do. `cached_minutes`: the training
# time of the networks this run loaded from its cache instead of training
# (their epochs' seconds), for the report's from-scratch wall time.
STATE = SimpleNamespace(short_input="pad", cached_minutes=0.0)

ROOT = Path(__file__).resolve().parents[2]


GENREPI = ROOT / "target/release/genrepi"


FEATURES_MANIFEST = ROOT / "models/default.toml"


def log(msg):
    print(f"[pipeline {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


# ---------------------------------------------------------------- export
def input_shape(input: str):
    return [1] + [int(d) for d in input.split("x")]


def write_manifest(onnx_path: Path, name: str, labels, input: str, provenance: dict,
                   manifest: Path = None, variants=()):
    """A genrepi manifest for `onnx_path` (beside it unless `manifest`), with
    this run's short-input policy. `variants`: (name, file, arithmetic,
    accuracy) for its [[variant]] tables; `onnx_path` must be one of the
    files."""
    manifest = manifest or onnx_path.with_suffix(".toml")
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    base = FEATURES_MANIFEST.read_text()
    features = base[base.index("[features]"):].split("\n\n")[0].strip()
    features = "\n".join(l for l in features.splitlines() if not l.startswith("short_input"))
    features += f'\nshort_input = "{STATE.short_input}"'
    rel = lambda p: os.path.relpath(p, manifest.parent)
    manifest.write_text(manifest_text(
        name, rel(onnx_path), sha(onnx_path), labels, input_shape(input), provenance,
        features=features, comment="Made by models/pipeline.py",
        variants=[(v, rel(f), sha(f), arith, acc) for v, f, arith, acc in variants]))
    return manifest


class Windows(CalibrationDataReader):
    def __init__(self, x):
        self.it = iter([{"input": x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)


def sibling(path: Path, tag: str) -> Path:
    return path.with_name(f"{path.stem}.{tag}.onnx")


def machine_words() -> str:
    """This machine's CPU in the words the report's latencies need."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    isa = ("AVX-512 VNNI" if "avx512_vnni" in flags else "AVX-512" if "avx512f" in flags
           else "AVX2" if "avx2" in flags else os.uname().machine)
    fp16 = "FP16 arithmetic" if ("asimdhp" in flags or "avx512_fp16" in flags) else \
        "no FP16 arithmetic"
    return f"{os.uname().machine}, {os.cpu_count()} cores, {isa}, {fp16}"


def write_atomic(path: Path, data):
    """`data` (text or bytes) into `path` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    (tmp.write_bytes if isinstance(data, bytes) else tmp.write_text)(data)
    os.replace(tmp, path)


def bench_ratio_lines(rows, markdown=False):
    """The ratios the INT8 work is judged by, a line per thread count, from
    `genrepi bench`/onnxruntime rows (bench_table.py prints them, the report
    lists them with `markdown`): tract INT8 over tract FP32 with the faster
    int8 tile (and per tile where more than one was measured), then tract
    INT8 over onnxruntime INT8 on the same file and over onnxruntime FP32,
    where those rows exist."""
    lines = []
    for t in sorted({r["threads"] for r in rows}):
        best = lambda engine, arith: min((r["median_ms"] for r in rows if r["engine"] == engine
                                          and r["arithmetic"] == arith and r["threads"] == t),
                                         default=None)
        i8, f32 = best("tract", "int8"), best("tract", "fp32")
        if not (i8 and f32):
            continue
        o8, o32 = best("onnxruntime", "int8"), best("onnxruntime", "fp32")
        tiles = [f"{r['median_ms'] / f32:.2f} with fma {r['fma_units']}" for r in rows
                 if r["engine"] == "tract" and r["arithmetic"] == "int8" and r["threads"] == t
                 and r.get("fma_units")]
        ratio = f"**{i8 / f32:.2f}**" if markdown else f"{i8 / f32:.2f}"
        lines.append(("- " if markdown else "")
                     + f"{t} thread(s): tract INT8 / tract FP32 = {ratio}"
                     + (f" ({', '.join(tiles)})" if len(tiles) > 1 else "")
                     + (f"; tract INT8 / onnxruntime on the same INT8 file = {i8 / o8:.2f}"
                        if o8 else "")
                     + (f"; tract INT8 / onnxruntime FP32 = {i8 / o32:.2f}" if o32 else ""))
    return lines
