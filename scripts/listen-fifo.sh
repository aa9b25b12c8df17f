#!/usr/bin/env bash
# `genrepi listen` on real ALSA capture without a microphone, for a fixed
# time, then SIGTERM; prints how long it took to stop, its exit status, the
# verdicts and overruns, and its peak RSS.
#
#   bash scripts/listen-fifo.sh SECONDS [GLOBAL_ARGS...] [-- LISTEN_ARGS...]
#
# e.g. bash scripts/listen-fifo.sh 60
#      bash scripts/listen-fifo.sh 60 --model models/random/resnet152-1x128x130.toml
#      bash scripts/listen-fifo.sh 60 --model MANIFEST -- --hop 0.1   # overload
#
# ALSA's `file` PCM with `infile` set to a FIFO is the `default` capture
# device (ALSA_CONFIG_PATH adds it); scripts/fifo_player.py writes real
# GTZAN clips into the FIFO at real time as 48 kHz stereo s16le. Uses the
# release binary (built if missing) and .venv's Python.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: listen-fifo.sh SECONDS [GLOBAL_ARGS...] [-- LISTEN_ARGS...]}
shift
global=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do global+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ "$seconds" -gt 10 ] || { echo "SECONDS must be more than 10" >&2; exit 2; }
bin=${GENREPI_BIN:-target/release/genrepi}
[ -x "$bin" ] || cargo build --release --bin genrepi
py=.venv/bin/python3
[ -x "$py" ] || py=python3
clips=(../shared/gtzan-mini/rock/rock.00000.wav ../shared/gtzan-mini/jazz/jazz.00000.wav
       ../shared/gtzan-mini/classical/classical.00000.wav)

dir=$(mktemp -d)
trap 'kill $player 2>/dev/null || true; rm -rf "$dir"' EXIT
mkfifo "$dir/capture.fifo"
cat > "$dir/asound.conf" <<CONF
pcm.!default { type file; slave.pcm "null"; file "/dev/null"; infile "$dir/capture.fifo"; format "raw" }
CONF
"$py" scripts/fifo_player.py "$dir/capture.fifo" $((seconds + 30)) "${clips[@]}" &
player=$!

ALSA_CONFIG_PATH="/usr/share/alsa/alsa.conf:$dir/asound.conf" \
  "$bin" -v ${global[@]+"${global[@]}"} listen --json --rate 48000 --channels 2 --format i16 "$@" \
  > "$dir/out.jsonl" 2> "$dir/err.log" &
pid=$!
sleep 10
peak10_kb=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
sleep $((seconds - 10))
peak_kb=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
t0=$(date +%s%N)
kill -TERM $pid
status=0
wait $pid || status=$?
t1=$(date +%s%N)
"$py" - "$dir/out.jsonl" <<PY
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
lat = sorted(v["latency_ms"] for v in lines)
inf = sorted(v["inference_ms"] for v in lines if v["inference_ms"] is not None)
last = lines[-1] if lines else {}
gaps = [b["end_s"] - a["end_s"] for a, b in zip(lines, lines[1:])]
print(f"verdicts: {len(lines)} in ${seconds} s; spacing of windows {min(gaps):.4f}-{max(gaps):.4f} s" if gaps else "verdicts: 0")
print(f"smoothed genres: " + ", ".join(sorted({v['smoothed']['genre'] for v in lines})))
if lat:
    print(f"latency window->verdict ms: median {lat[len(lat)//2]:.1f}, max {lat[-1]:.1f}; inference ms: median {inf[len(inf)//2]:.1f}")
print(f"dropped {last.get('dropped')}, overruns {last.get('overruns')}")
PY
echo "peak RSS ${peak10_kb} kB after 10 s, ${peak_kb} kB after ${seconds} s (RSS ${rss_kb} kB)"
echo "SIGTERM -> exit $status in $(( (t1 - t0) / 1000000 )) ms"
grep -E "memory plan|capturing|stopped in|WARN|ERROR" "$dir/err.log" | sed 's/^/log: /'
