#!/usr/bin/env bash
# Runs every test: the main build's ctest suite (unit, e2e, deploy; gpu tests skip without
# a GPU); the unit and CPU end-to-end tests again under AddressSanitizer +
# UndefinedBehaviorSanitizer; the concurrency tests under ThreadSanitizer; and each fuzz
# target for a minute.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
JOBS=$(nproc)
status=0

# lm-evaluation-harness, for the prompt-logprobs suite (which must not skip here).
bash scripts/install_eval_tools.sh || exit 1
export SLUICE_REQUIRE_LM_EVAL=1
# torch, which makes the FP8 suite's checkpoints (which must not skip here either).
bash scripts/install_torch.sh || exit 1
export SLUICE_REQUIRE_TORCH=1

echo "== ctest ($BUILD)"
ctest --test-dir "$BUILD" -j "$JOBS" --output-on-failure --timeout 900 || status=1
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "== gpu tests skipped, as each says:"
  ctest --test-dir "$BUILD" -L gpu -V 2>/dev/null | grep -E "^[0-9]+: SKIP" || true
fi

# Sanitizer builds are lean: -O1 and line tables only (enough for the reports' stacks).
LEAN=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1"
      "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1")

echo "== unit tests under ASan + UBSan (build-asan)"
cmake -S . -B build-asan -G Ninja "${LEAN[@]}" -DSLUICE_SANITIZE=ON \
  -DSLUICE_ENABLE_CUDA=OFF -DSLUICE_BUILD_BENCH=OFF >/dev/null || exit 1
cmake --build build-asan -j "$JOBS" || exit 1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
# Latency bounds in the e2e suites skip themselves under a sanitizer.
export SLUICE_TEST_SANITIZER=1
ctest --test-dir build-asan -L unit -LE slow -j "$JOBS" --output-on-failure --timeout 1800 || status=1
echo "== CPU end-to-end tests against the ASan + UBSan binaries (build-asan)"
# The load and differential suites measure or batch rather than exercise new paths.
ctest --test-dir build-asan -L e2e -E "e2e_server_load|e2e_differential" -j "$JOBS" \
  --output-on-failure --timeout 1800 || status=1
unset ASAN_OPTIONS UBSAN_OPTIONS

echo "== ThreadSanitizer: the engine loop, tensor-parallel ranks, the CPU thread pool, the HTTP server and the gateway (build-tsan)"
cmake -S . -B build-tsan -G Ninja "${LEAN[@]}" -DSLUICE_TSAN=ON \
  -DSLUICE_ENABLE_CUDA=OFF -DSLUICE_BUILD_BENCH=OFF >/dev/null || exit 1
cmake --build build-tsan -j "$JOBS" --target engine_test model_tensor_parallel_test kernels_cpu_test gateway_test gateway_body_test http_server_test sluice sluice-gateway || exit 1
# (No gRPC front there: Debian's gRPC is not built with TSan and would report false races.)
SLUICE_TEST_NO_GRPC=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  ctest --test-dir build-tsan -R "^(engine_test|model_tensor_parallel_threads|kernels_thread_pool|gateway_test|gateway_body_test|http_server_test|e2e_gateway|e2e_faults|e2e_security)$" \
  -j "$JOBS" --output-on-failure --timeout 1800 || status=1

echo "== fuzzing: each target ${FUZZ_SECONDS:-60} s from its seed corpus (build-fuzz)"
bash scripts/run_fuzzers.sh build-fuzz "${FUZZ_SECONDS:-60}" || status=1

exit $status
