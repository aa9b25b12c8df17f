#!/usr/bin/env python3
"""WAV-header mutants through `genrepi replay`: nothing may panic, abort or hang.

Makes COUNT mutants of a short 16-bit WAV: at least 35% change the sample
rate (0, 1, 2^32-1, the edges of genrepi's 1000..=768000 range, random),
the rest change the channel count, bits, block align, byte rate, format
tag, chunk sizes, or random bytes of the header. They are replayed in
batches of 100 between two good files, under a 4 GiB address-space cap and
a 120-s timeout per batch, with the tiny test model. Checked per batch:

- the exit status is 0 or 1 (not a panic's 101, not a signal: abort, OOM);
- no "panicked" on stderr;
- every mutant is either accepted (a verdict line on stdout) or refused
  with exactly one stderr line naming it;
- both good files got their verdicts.

Prints one summary line; exits 1 on any panic, abort, hang or violation.

    python3 scripts/wav-mutants.py [--count 2000] [--bin target/debug/genrepi]
"""

import argparse
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RATE_VALUES = [0, 1, 2, 999, 1000, 1001, 8000, 767999, 768000, 768001,
               2**31 - 1, 2**31, 2**32 - 1]


def wav(rate=22050, channels=1, bits=16, frames=22050 * 4, seed=1):
    rng = random.Random(seed)
    data = b"".join(struct.pack("<h", rng.randint(-8000, 8000)) for _ in range(frames * channels))
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


# Offsets of the header fields in the canonical 44-byte header.
FIELDS = {
    "riff_size": (4, "<I"), "fmt_size": (16, "<I"), "format": (20, "<H"),
    "channels": (22, "<H"), "rate": (24, "<I"), "byte_rate": (28, "<I"),
    "block_align": (32, "<H"), "bits": (34, "<H"), "data_size": (40, "<I"),
}


def mutate(base, rng):
    b = bytearray(base)
    kind = rng.random()
    if kind < 0.40:
        rate = rng.choice(RATE_VALUES + [rng.randrange(2**32)])
        struct.pack_into("<I", b, 24, rate)
        if rng.random() < 0.5:  # a consistent byte rate, too
            struct.pack_into("<I", b, 28, (rate * 2) % 2**32)
        what = f"rate={rate}"
    elif kind < 0.80:
        name = rng.choice([k for k in FIELDS if k != "rate"])
        off, fmt = FIELDS[name]
        bits = 16 if fmt == "<H" else 32
        value = rng.choice([0, 1, 2, 3, 7, 8, 24, 32, 64, 65, 255, 2**bits - 1,
                            2**(bits - 1), rng.randrange(2**bits)])
        struct.pack_into(fmt, b, off, value)
        what = f"{name}={value}"
    else:
        n = rng.randint(1, 8)
        for _ in range(n):
            b[rng.randrange(0, 44)] = rng.randrange(256)
        what = f"{n} random header bytes"
    if rng.random() < 0.1:
        b = b[: rng.randrange(8, len(b))]
        what += ", truncated"
    return bytes(b), what


def cap_memory():
    limit = 4 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--bin", default=str(ROOT / "target/debug/genrepi"))
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    base = wav()
    counts = dict(accepted=0, refused=0, panics=0, aborts=0, hangs=0, violations=0)
    with tempfile.TemporaryDirectory(prefix="genrepi-mutants-") as tmp:
        tmp = Path(tmp)
        good = [tmp / "good-first.wav", tmp / "good-last.wav"]
        for i, g in enumerate(good):
            g.write_bytes(wav(seed=100 + i))
        made = 0
        while made < args.count:
            batch = []
            for _ in range(min(args.batch, args.count - made)):
                data, what = mutate(base, rng)
                path = tmp / f"mutant-{made:05d}.wav"
                path.write_bytes(data)
                batch.append((path, what))
                made += 1
            files = [str(good[0])] + [str(p) for p, _ in batch] + [str(good[1])]
            env = dict(os.environ, GENREPI_MODEL=str(ROOT / "models/tiny/tiny.toml"))
            env.pop("RUST_LOG", None)
            try:
                r = subprocess.run([args.bin, "-q", "replay", *files], env=env,
                                   capture_output=True, timeout=120, preexec_fn=cap_memory)
            except subprocess.TimeoutExpired:
                counts["hangs"] += 1
                print(f"HANG in batch ending {batch[-1][0].name}", file=sys.stderr)
                continue
            out = r.stdout.decode(errors="replace")
            err = r.stderr.decode(errors="replace")
            if "panicked" in err or r.returncode == 101:
                counts["panics"] += 1
                print(f"PANIC: {err[-2000:]}", file=sys.stderr)
            if r.returncode < 0 or r.returncode not in (0, 1, 101):
                counts["aborts"] += 1
                print(f"ABORT/SIGNAL {r.returncode} in batch ending {batch[-1][0].name}",
                      file=sys.stderr)
                continue
            err_lines = err.splitlines()
            for g in good:
                if f"{g}: " not in out:
                    counts["violations"] += 1
                    print(f"VIOLATION: good file {g.name} not done", file=sys.stderr)
            for path, what in batch:
                named = [l for l in err_lines if str(path) in l]
                verdict = f"{path}: " in out
                if verdict and not named:
                    counts["accepted"] += 1
                elif len(named) == 1 and not verdict:
                    counts["refused"] += 1
                else:
                    counts["violations"] += 1
                    print(f"VIOLATION: {path.name} ({what}): verdict={verdict}, "
                          f"{len(named)} error line(s): {named[:3]}", file=sys.stderr)
    total = sum(counts[k] for k in ("panics", "aborts", "hangs", "violations"))
    print(f"mutants={args.count} " + " ".join(f"{k}={v}" for k, v in counts.items()))
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
