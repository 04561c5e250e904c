#!/usr/bin/env bash
# The device check for kernels/: builds the kernels-only tree, runs the gpu tests, runs
# bench/kernels, runs the tests again under compute-sanitizer memcheck with small shapes
# (SLUICE_QUICK=1), and prints a short table last. Logs go to $OUT (or /tmp/gpu_check).
# Usage: bash bench/gpu_check.sh        (from anywhere; about 70 s on 16 cores)
# SLUICE_BENCH_SHORT=1 leaves the c128 / c512 decode piece figures out of the bench.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/gpu_check}
mkdir -p "$LOG"
BUILD=build-gpu
status_build=FAIL status_tests=FAIL status_memcheck=FAIL status_bench=FAIL

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw \
  --format=csv 2>&1 | tee "$LOG/device.txt"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git status --porcelain 2>/dev/null | grep -q . && echo ' uncommitted')" \
  | tee -a "$LOG/device.txt"

start=$(date +%s)
if cmake -S . -B "$BUILD" -G Ninja -DSLUICE_KERNELS_ONLY=ON -DSLUICE_CUDA_ARCHS=90a \
     -DCMAKE_BUILD_TYPE=Release >"$LOG/build.log" 2>&1 &&
   ninja -C "$BUILD" -j16 >>"$LOG/build.log" 2>&1; then
  status_build=ok
else
  tail -40 "$LOG/build.log"
fi
echo "build: $status_build ($(( $(date +%s) - start )) s)"

if [ "$status_build" = ok ]; then
  start=$(date +%s)
  if ctest --test-dir "$BUILD" -L gpu --output-on-failure -V >"$LOG/tests.log" 2>&1; then
    status_tests=ok
  fi
  grep -E "^[0-9]+: (PASS|FAIL|SKIP|  )|CHECK failed|Test +#" "$LOG/tests.log" | head -80
  echo "tests: $status_tests ($(( $(date +%s) - start )) s)"

  start=$(date +%s)
  if timeout 240 "$BUILD"/bin/kernel_bench >"$LOG/bench.log" 2>&1; then status_bench=ok; fi
  tail -5 "$LOG/bench.log" | grep -v RESULT
  echo "bench: $status_bench ($(( $(date +%s) - start )) s)"

  start=$(date +%s)
  status_memcheck=ok
  : >"$LOG/memcheck.log"
  for t in "$BUILD"/tests/*_gpu_test; do
    if ! SLUICE_QUICK=1 timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 \
         --leak-check no "$t" >>"$LOG/memcheck.log" 2>&1; then
      status_memcheck="FAIL($(basename "$t"))"
    fi
  done
  grep -E "ERROR SUMMARY|PASS|FAIL" "$LOG/memcheck.log"
  echo "memcheck: $status_memcheck ($(( $(date +%s) - start )) s)"

  # SLUICE_NCU=1: Nsight Compute on one launch of each prefill variant named here.
  if [ "${SLUICE_NCU:-0}" = 1 ]; then
    start=$(date +%s)
    : >"$LOG/ncu.txt"
    for v in ${SLUICE_NCU_VARIANTS:-0 4}; do
      timeout 90 ncu -k regex:PagedAttentionKernel --launch-skip 3 --launch-count 1 \
        --section SpeedOfLight --section WarpStateStats --section Occupancy \
        --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
        "$BUILD"/bin/kernel_bench "prefill_b4_l4096_gqa_v$v" >>"$LOG/ncu.txt" 2>&1
    done
    grep -E "prefill|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Stall|Issue Slots Busy|Pipe" "$LOG/ncu.txt" | head -40
    echo "ncu: ($(( $(date +%s) - start )) s)"
  fi
fi

{
  echo "== summary =="
  head -2 "$LOG/device.txt" | tail -1
  echo "build $status_build | gpu tests $status_tests | memcheck $status_memcheck | bench $status_bench"
  grep -h "tests passed" "$LOG/tests.log" 2>/dev/null | sed 's/^/  /'
  grep -h "^[0-9]*: *PASS\|^[0-9]*: *FAIL" "$LOG/tests.log" 2>/dev/null | sed 's/^/  /'
  grep "^RESULT" "$LOG/bench.log" 2>/dev/null | sed 's/^RESULT /  /'
} | tee "$LOG/summary.txt"
[ "$status_build" = ok ] && [ "$status_tests" = ok ] && [ "$status_memcheck" = ok ] && [ "$status_bench" = ok ]
