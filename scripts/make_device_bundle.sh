#!/usr/bin/env bash
# Packs what the engine's GPU checks need onto a GPU machine that has the CUDA toolkit
# but none of the project's other libraries and no ../shared: the binaries of a CUDA
# build (sm_90a), the Debian shared libraries they load (CUDA's own come from the GPU
# machine), and the fixtures the tests read. bench/gpu_engine_check.sh unpacks it.
# Usage: scripts/make_device_bundle.sh [BUILD_DIR] [OUT_DIR]   (default build-cuda, .devbundle)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-cuda}
OUT=${2:-.devbundle}
SHARED=${SLUICE_SHARED_DIR:-../shared}
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLUICE_CUDA_ARCHS=90a >/dev/null
fi
cmake --build "$BUILD" -j "$(nproc)" --target cuda_runner_gpu_test ops_gpu_test attention_gpu_test \
  moe_gpu_test nccl_communicator_gpu_test throughput_bench
stage=$(mktemp -d)
mkdir -p "$stage/bin" "$stage/lib" "$stage/shared/fixtures"
bins="$BUILD/tests/cuda_runner_gpu_test $BUILD/tests/ops_gpu_test $BUILD/tests/attention_gpu_test
  $BUILD/tests/moe_gpu_test $BUILD/tests/nccl_communicator_gpu_test $BUILD/bin/throughput_bench"
cp $bins "$stage/bin/"
strip "$stage"/bin/*
# Every library the binaries load except glibc, libstdc++ and CUDA's (NCCL included: the
# GPU machine's toolkit has it, and it is larger than a bundle may be).
ldd $bins | awk '/=>/ {print $3}' | sort -u |
  grep -Ev 'libcuda|libcudart|libcublas|libnccl|/libc\.so|/libm\.so|libstdc\+\+|libgcc_s|libdl\.|libpthread|librt\.' |
  xargs -I{} cp -L {} "$stage/lib/"
cp "$SHARED/fixtures/golden_tiny.json" "$stage/shared/fixtures/"
cp -r "$SHARED/fixtures/variants" "$stage/shared/fixtures/"
mkdir -p "$OUT"
tar -C "$stage" -cJf "$OUT/bundle.tar.xz" .
rm -rf "$stage"
ls -la "$OUT/bundle.tar.xz"
