#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) into BUILD and runs each for SECONDS,
# two at a time, from its seed corpus in tests/fuzz/corpus. Prints executions, corpus
# size and crashes per target; a crash leaves its input in BUILD/fuzz/artifacts and
# fails the run. Usage: scripts/run_fuzzers.sh [BUILD=build-fuzz] [SECONDS=60] [RESULTS]
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-fuzz}
SECONDS_EACH=${2:-60}
RESULTS=${3:-}
JOBS=$(nproc)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

# Lean, as OSS-Fuzz builds: -O1 with line tables only.
CC=clang CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
  -DSLUICE_FUZZ=ON -DSLUICE_ENABLE_CUDA=OFF -DSLUICE_BUILD_BENCH=OFF >/dev/null || exit 1
cmake --build "$BUILD" -j "$JOBS" --target fuzzers || exit 1
targets=$(cd "$BUILD/fuzz" && ls fuzz_* | sed 's/^fuzz_//')

out="$BUILD/fuzz/runs"
rm -rf "$out" && mkdir -p "$out" "$BUILD/fuzz/artifacts"
run_one() {
  t=$1
  mkdir -p "$out/$t.corpus"
  "$BUILD/fuzz/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$BUILD/fuzz/artifacts/$t-" \
    "$out/$t.corpus" "tests/fuzz/corpus/$t" >"$out/$t.log" 2>&1
  echo $? >"$out/$t.rc"
}
export -f run_one
export out BUILD SECONDS_EACH
echo "== fuzzing ${SECONDS_EACH} s per target: $(echo $targets)"
printf '%s\n' $targets | xargs -P "$JOBS" -I{} bash -c 'run_one {}'

status=0
table=$(printf '| target | seconds | executions | exec/s | corpus | crashes |\n| --- | --- | --- | --- | --- | --- |')
for t in $targets; do
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/$t.log" | tail -1)
  corpus=$(ls "$out/$t.corpus" | wc -l)
  rc=$(cat "$out/$t.rc")
  crashes=0
  if [ "$rc" != 0 ]; then
    crashes=1
    status=1
    echo "== fuzz_$t FAILED (exit $rc):"
    grep -E "ERROR|property failed|SUMMARY|Test unit written" "$out/$t.log" | head -20
  fi
  table+=$(printf '\n| %s | %s | %s | %s | %s | %s |' "$t" "$SECONDS_EACH" "${execs:-0}" "${rate:-0}" "$corpus" "$crashes")
done
echo "$table"
if [ -n "$RESULTS" ]; then
  { echo "Run on $(date -u +%Y-%m-%d), built at ${COMMIT}, $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), ${SECONDS_EACH} s per target, two targets at a time:"
    echo; echo "$table"; echo; } >>"$RESULTS"
fi
exit $status
