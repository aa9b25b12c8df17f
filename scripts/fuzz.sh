#!/usr/bin/env bash
# Builds genrepi's fuzz targets (fuzz/) with libFuzzer on stable Rust and
# runs each one: decode (any bytes as audio through the front-end),
# manifest, config and http.
#
#   bash scripts/fuzz.sh --smoke --seconds 20  # CI's smoke run: 20 s a target,
#                                              # built at opt-level 1 (faster build)
#   bash scripts/fuzz.sh --runs 1000000        # 10^6 executions a target
#   bash scripts/fuzz.sh --runs 1000000 decode # one target
#
# Stable Rust has no -Zsanitizer, so this is cargo-fuzz without ASan:
# SanitizerCoverage instrumentation (what libFuzzer needs to explore),
# overflow and debug assertions on, `--target` the host so build scripts
# stay uninstrumented. Each input gets 10 s, 2 GiB of RSS and 512 MiB per
# allocation; a crash, a timeout or an out-of-memory fails the script and
# leaves the input in fuzz/artifacts/TARGET/. New inputs that reach new
# code go to fuzz/target/corpus/TARGET (not committed); the seeds are
# fuzz/corpus/TARGET.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

limit=(-max_total_time=20)
if [ "${1:-}" = "--smoke" ]; then
  # A quicker build for a short run: less optimisation, no debug info, its
  # own target folder so a long campaign's build is left alone.
  export CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=0
  export CARGO_TARGET_DIR=target/smoke
  shift
fi
case "${1:-}" in
  --seconds) limit=(-max_total_time="$2"); shift 2 ;;
  --runs) limit=(-runs="$2"); shift 2 ;;
esac
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(decode manifest config http)

host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --target "$host" --bins

status=0
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t" "artifacts/$t"
  echo "fuzz: $t ${limit[*]}"
  if ! "${CARGO_TARGET_DIR:-target}/$host/release/$t" "target/corpus/$t" "corpus/$t" \
      "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 2> "target/$t.log"; then
    echo "fuzz: $t FAILED; see fuzz/target/$t.log and fuzz/artifacts/$t/"
    tail -40 "target/$t.log"
    status=1
  fi
  # The figures: executions, speed, coverage.
  grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|cov: " "target/$t.log" \
    | tail -3 | sed "s/^/fuzz: $t: /"
done
exit $status
