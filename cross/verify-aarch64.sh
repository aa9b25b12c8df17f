#!/usr/bin/env bash
# Checks the aarch64 release binary (after cross/build-aarch64.sh or
# `cargo test --release --target aarch64-unknown-linux-gnu`):
#   1. its size stripped, its dynamic libraries (libc, libm, libgcc_s and
#      libasound2 at most) and the newest glibc symbol version it needs (<= 2.36,
#      Raspberry Pi OS bookworm);
#   2. that it replays a real clip under qemu (emulating a Pi 4 and a Pi 5 CPU)
#      with the tiny test model and agrees with the x86_64 build window by
#      window: same top genre everywhere and probabilities within 1e-3;
#   3. the shipped default model (or $VERIFY_MODEL), as `--variant auto`
#      picks it on each Pi CPU, on three non-overlapping windows of the same
#      clip: same agreement with x86_64, and the matrix-product kernels tract
#      chose (`info`): SMLAL int8 on the Pi 4, SDOT on the Pi 5. A manifest
#      without variants (one FP32 model, slow under emulation) runs one
#      window on the Pi 4 CPU only.
#   4. with FP16_EVAL=DIR (a GTZAN-layout folder, e.g. held-out clips): the
#      default model's fp16 variant on the Pi 5 CPU against its fp32 variant
#      on x86_64, `genrepi eval` on every window of DIR: both accuracies and
#      how often they agree (slow under emulation: about 10 s a window).
#
# qemu-user shows the host's /proc/cpuinfo, where tract-linalg looks for the
# FP16 feature (asimdhp) and the CPU part; as root each emulated run gets the
# Pi's own (cross/cpuinfo-*) bind-mounted in a private mount namespace, so
# tract picks the kernels it picks on the Pi. (The int8 dot product is read
# from the auxiliary vector, which qemu sets per CPU either way.)
#
#     bash cross/verify-aarch64.sh [X86_BINARY] [CLIP]
# X86_BINARY defaults to target/release/genrepi, else target/debug/genrepi
# (under $CARGO_TARGET_DIR when set);
# CLIP (a WAV file) to ../shared/gtzan-mini/rock/rock.00000.wav, else generated audio.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
arm=$target_dir/aarch64-unknown-linux-gnu/release/genrepi
x86=${1:-}
if [ -z "$x86" ]; then
  for b in "$target_dir/release/genrepi" "$target_dir/debug/genrepi"; do [ -x "$b" ] && x86=$b && break; done
fi
clip=${2:-../shared/gtzan-mini/rock/rock.00000.wav}
[ -x "$arm" ] || { echo "verify: $arm missing: build it first (cross/build-aarch64.sh)"; exit 1; }
[ -n "$x86" ] && [ -x "$x86" ] || { echo "verify: no x86_64 genrepi binary: cargo build first"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

aarch64-linux-gnu-strip -o "$work/genrepi" "$arm"
echo "verify: aarch64 release binary $(stat -c %s "$arm") bytes, stripped $(stat -c %s "$work/genrepi") bytes"

needed=$(aarch64-linux-gnu-readelf -d "$arm" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
echo "verify: dynamic libraries: $needed"
for lib in $needed; do
  case $lib in
    libc.so.6|libm.so.6|libgcc_s.so.1|libasound.so.2|ld-linux-aarch64.so.1) ;;
    *) echo "verify: FAIL: unexpected dynamic library $lib"; exit 1 ;;
  esac
done
glibc=$(aarch64-linux-gnu-objdump -T "$arm" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
echo "verify: newest glibc symbol version required: $glibc"
if [ "$(printf '%s\nGLIBC_2.36\n' "$glibc" | sort -V | tail -1)" != "GLIBC_2.36" ]; then
  echo "verify: FAIL: needs $glibc, newer than Raspberry Pi OS bookworm's 2.36"
  exit 1
fi

if [ ! -f "$clip" ]; then
  echo "verify: $clip absent; generating 12 s of test audio"
  python3 - "$work/clip.wav" <<'PY'
import math, random, struct, sys, wave
random.seed(1)
with wave.open(sys.argv[1], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050)
    frames = bytearray()
    for i in range(22050 * 12):
        t = i / 22050
        x = 0.3 * math.sin(2 * math.pi * 220 * t) * (1 + math.sin(2 * math.pi * 2 * t)) + 0.1 * random.uniform(-1, 1)
        frames += struct.pack("<h", int(x * 20000))
    w.writeframes(bytes(frames))
PY
  clip=$work/clip.wav
fi
# 9.3 s (three non-overlapping windows) for the big model.
python3 - "$clip" "$work/excerpt.wav" <<'PY'
import sys, wave
with wave.open(sys.argv[1]) as r, wave.open(sys.argv[2], "wb") as w:
    w.setparams(r.getparams())
    w.writeframes(r.readframes(int(r.getframerate() * 9.3)))
PY

# Runs the aarch64 binary under qemu as CPU $1 (see the header).
as_pi() {
  local cpu=$1; shift
  if [ "$(id -u)" = 0 ] && unshare --mount true 2>/dev/null; then
    unshare --mount sh -c 'mount --bind "$0" /proc/cpuinfo && shift && exec "$@"' \
      "cross/cpuinfo-$cpu" - qemu-aarch64 -cpu "$cpu" "$arm" "$@"
  else
    qemu-aarch64 -cpu "$cpu" "$arm" "$@"
  fi
}

# Both Pi CPUs: the Pi 4's Cortex-A72 (NEON only) and the Pi 5's Cortex-A76
# (FP16 arithmetic, dot product), so tract's kernel choice for each is run.
# The big model: $VERIFY_MODEL, default models/default.toml. A manifest
# with variants (INT8) runs three windows on each CPU; a single FP32 model
# (about a minute a window under emulation) one window on the Pi 4's.
big=${VERIFY_MODEL:-models/default.toml}
cases=("cortex-a72 models/tiny/tiny.toml $clip 1" "cortex-a76 models/tiny/tiny.toml $clip 1")
if grep -q '^\[\[variant\]\]' "$big"; then
  cases+=("cortex-a72 $big $work/excerpt.wav 3.0883" "cortex-a76 $big $work/excerpt.wav 3.0883")
else
  python3 - "$work/excerpt.wav" <<'PY'
import sys, wave
with wave.open(sys.argv[1]) as r:
    params, frames = r.getparams(), r.readframes(int(r.getframerate() * 3.1))
with wave.open(sys.argv[1], "wb") as w:
    w.setparams(params)
    w.writeframes(frames)
PY
  cases+=("cortex-a72 $big $work/excerpt.wav 3.0883")
fi
for case in "${cases[@]}"; do
  read -r cpu model input hop <<< "$case"
  "$x86" --model "$model" replay --json --hop "$hop" "$input" > "$work/x86.jsonl"
  start=$(date +%s)
  as_pi "$cpu" --model "$model" replay --json --hop "$hop" "$input" > "$work/arm.jsonl" 2> "$work/arm.err" \
    || { cat "$work/arm.err"; exit 1; }
  echo "verify: aarch64 ($cpu, $model) replay under qemu took $(( $(date +%s) - start )) s"
  python3 - "$work/x86.jsonl" "$work/arm.jsonl" "$cpu, $model" <<'PY'
import json, sys
x86 = [json.loads(l) for l in open(sys.argv[1])]
arm = [json.loads(l) for l in open(sys.argv[2])]
assert len(x86) == len(arm), f"{len(x86)} vs {len(arm)} lines"
windows = [(a, b) for a, b in zip(x86, arm) if "top" in a]
worst = max(abs(a["probs"][k] - b["probs"][k]) for a, b in windows for k in a["probs"])
same_top = all(a["top"] == b["top"] for a, b in windows)
print(f"verify: x86_64 vs aarch64 ({sys.argv[3]}) replay: {len(windows)} windows, "
      f"max probability difference {worst:.2e}, top genre identical in every window: {same_top}")
if worst > 1e-3 or not same_top:
    sys.exit("verify: FAIL: aarch64 and x86_64 disagree")
PY
  if [ "$model" = "$big" ] && grep -q '^\[\[variant\]\]' "$big"; then
    as_pi "$cpu" --model "$model" info > "$work/info.txt" 2>&1 || { cat "$work/info.txt"; exit 1; }
    variant=$(sed -n 's/^variant: *//p' "$work/info.txt")
    kernels=$(sed -n 's/^kernels: *//p' "$work/info.txt")
    echo "verify: $cpu default model: variant $variant"
    echo "verify: $cpu kernels: $kernels"
    case "$cpu:$variant" in
      cortex-a72:int8*) grep -q 'arm64simd_mmm_i32_8x8$\|arm64simd_mmm_i32_8x8 ' <<< "$kernels " \
          || { echo "verify: FAIL: no SMLAL int8 kernel on the Pi 4 CPU"; exit 1; } ;;
      cortex-a76:int8*) grep -q 'mmm_i32_8x8_dot' <<< "$kernels" \
          || { echo "verify: FAIL: no SDOT int8 kernel on the Pi 5 CPU"; exit 1; } ;;
    esac
  fi
done

if [ -n "${FP16_EVAL:-}" ]; then
  start=$(date +%s)
  "$x86" --model "$big" --variant fp32 eval --jobs 1 "$FP16_EVAL" --report "$work/fp32.json" > /dev/null
  as_pi cortex-a76 --model "$big" --variant fp16 eval --jobs 1 "$FP16_EVAL" \
    --report "$work/fp16.json" > /dev/null
  as_pi cortex-a76 --model "$big" --variant fp16 info | grep '^kernels'
  python3 - "$work/fp32.json" "$work/fp16.json" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
top = lambda r: [max(range(len(p)), key=p.__getitem__) for c in r["clips"] for p in c["window_probs"]]
ta, tb = top(a), top(b)
agree = sum(x == y for x, y in zip(ta, tb)) / len(ta)
print(f"verify: fp16 variant (Pi 5 CPU, qemu) against fp32 (x86_64) on {len(ta)} windows: "
      f"window accuracy {100 * b['window_accuracy']:.1f}% against {100 * a['window_accuracy']:.1f}%, "
      f"clip accuracy {100 * b['clip_accuracy']:.1f}% against {100 * a['clip_accuracy']:.1f}%, "
      f"same genre in {100 * agree:.1f}% of windows ({sys.argv[3]} s)")
PY
fi
echo "verify: ok"
