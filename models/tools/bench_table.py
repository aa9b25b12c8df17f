#!/usr/bin/env python3
"""tract against onnxruntime on the same model files, in one run.

    python3 models/tools/bench_table.py [--model models/default.toml] [--windows 20]
        [--rounds 1] [--genrepi target/release/genrepi] [--json OUT.json]

Runs `genrepi bench --json` (every variant of the manifest at 1 thread and
at all cores, each in a process of its own), then onnxruntime on the same
ONNX files at the same thread counts, each measurement in a process of its
own too (so peak RSS is that measurement's), and prints one table with the
ratios the INT8 work is judged by: INT8 against FP32 in tract, and tract's
INT8 against onnxruntime's. Both time one window of the model's input shape
per inference after one warm-up, median and 95th percentile. The fp16
variant is tract's FP16 arithmetic derived at load; onnxruntime has no
counterpart for it on the same file (it runs the FP16-on-disk file in FP32),
so its onnxruntime row is the fp32 one. On x86_64 with AVX-512 VNNI, `genrepi
bench` measures an int8 variant with each of tract's int8 kernel tiles (the
`fma` column, TRACT_AVX512_FMA_UNITS); the INT8 ratios use the faster, which
is what `--variant auto` then runs.

`--rounds N` repeats everything N times, alternating the engines, and
reports each row's median over the rounds (its p95 and peak RSS: the
largest): on a shared 2-core machine one round's figures move by 15%.

Needs onnxruntime (models/requirements.txt) and a release build.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models"))
from genrepi_train.common import bench_ratio_lines  # noqa: E402

CHILD = r"""
import json, resource, sys, time
import numpy as np, onnxruntime as ort
path, threads, windows, shape = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
o = ort.SessionOptions()
o.intra_op_num_threads = threads
o.inter_op_num_threads = 1
t = time.perf_counter()
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
load_ms = (time.perf_counter() - t) * 1e3
x = np.random.default_rng(0).uniform(-2, 2, shape).astype(np.float32)
name = s.get_inputs()[0].name
s.run(None, {name: x})
times = []
for _ in range(windows):
    t = time.perf_counter()
    s.run(None, {name: x})
    times.append((time.perf_counter() - t) * 1e3)
times.sort()
pick = lambda q: times[round((len(times) - 1) * q)]
print(json.dumps({"load_ms": load_ms, "median_ms": pick(0.5), "p95_ms": pick(0.95),
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models/default.toml")
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--genrepi", type=Path, default=ROOT / "target/release/genrepi")
    ap.add_argument("--json", type=Path, help="also write every row here")
    args = ap.parse_args()
    if not 1 <= args.windows <= 10000:
        sys.exit("error: --windows must be between 1 and 10000")
    if not 1 <= args.rounds <= 100:
        sys.exit("error: --rounds must be between 1 and 100")
    manifest = tomllib.loads(args.model.read_text())
    shape = manifest.get("input", {}).get("shape", [1, 1, 128, 130])
    variants = {v["name"]: v for v in manifest.get("variant", [])} or {
        "model": {"model": manifest["model"], "arithmetic": "-"}}
    rounds = []
    for _ in range(args.rounds):
        out = subprocess.run([str(args.genrepi), "--model", str(args.model), "bench", "--json",
                              "--windows", str(args.windows)], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"error: genrepi bench failed: {out.stderr.strip().splitlines()[-1:]}")
        rows = [dict(r, engine="tract") for r in json.loads(out.stdout)]
        for variant, threads in dict.fromkeys((r["variant"], r["threads"]) for r in rows):
            v = variants[variant]
            if v["arithmetic"] == "fp16":
                continue
            path = (args.model.parent / v["model"]).resolve()
            child = subprocess.run([sys.executable, "-c", CHILD, str(path), str(threads),
                                    str(args.windows), json.dumps(shape)],
                                   capture_output=True, text=True)
            if child.returncode != 0:
                sys.exit(f"error: onnxruntime on {path}: "
                         f"{child.stderr.strip().splitlines()[-1:]}")
            rows.append(dict(json.loads(child.stdout), engine="onnxruntime", variant=variant,
                             arithmetic=v["arithmetic"], threads=threads, kernels=[]))
        rounds.append(rows)
    rows = []
    for i, first in enumerate(rounds[0]):
        same = [r[i] for r in rounds]
        rows.append(dict(first, median_ms=statistics.median(r["median_ms"] for r in same),
                         p95_ms=max(r["p95_ms"] for r in same),
                         peak_rss=max(r["peak_rss"] for r in same),
                         rounds=[r["median_ms"] for r in same]))
    print(f"{'engine':<12} {'variant':<8} {'arith':<6} {'threads':>7} {'fma':>4} {'load ms':>8} "
          f"{'median ms':>10} {'p95 ms':>8} {'peak MiB':>9}  kernels")
    for r in rows:
        fma = r.get("fma_units") or "-"
        print(f"{r['engine']:<12} {r['variant']:<8} {r['arithmetic']:<6} {r['threads']:>7} "
              f"{fma:>4} {r['load_ms']:>8.0f} {r['median_ms']:>10.1f} {r['p95_ms']:>8.1f} "
              f"{r['peak_rss'] / 2**20:>9.0f}  {' '.join(r['kernels'])}")
    if args.rounds > 1:
        print(f"(median ms: the median of {args.rounds} rounds; p95 and peak RSS: the largest)")
    for line in bench_ratio_lines(rows):
        print(line)
    print(f"({os.cpu_count()} cores; {args.windows} windows per row; model {args.model})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
