#!/usr/bin/env bash
# Runs every test: the main build's ctest suite (unit, e2e; gpu tests skip without a GPU),
# then the unit tests once more under AddressSanitizer + UndefinedBehaviorSanitizer.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
JOBS=$(nproc)
status=0

echo "== ctest ($BUILD)"
ctest --test-dir "$BUILD" -j "$JOBS" --output-on-failure --timeout 900 || status=1
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "== gpu tests skipped, as each says:"
  ctest --test-dir "$BUILD" -L gpu -V 2>/dev/null | grep -E "^[0-9]+: SKIP" || true
fi

echo "== unit tests under ASan + UBSan (build-asan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_SANITIZE=ON \
  -DSLUICE_ENABLE_CUDA=OFF -DSLUICE_BUILD_BENCH=OFF >/dev/null || exit 1
cmake --build build-asan -j "$JOBS" || exit 1
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan -L unit -LE slow -j "$JOBS" --output-on-failure --timeout 1800 || status=1

exit $status
