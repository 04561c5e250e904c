// Deterministic fills: a grid-stride loop over the hash of each index.
#include <string>

#include "common.cuh"
#include "sluice/kernels/cuda/random.h"

namespace sluice::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    FillUniformKernel(__nv_bfloat16* out, int64_t n, uint64_t seed, uint64_t stream_id,
                      uint64_t first, float lo, float hi) {
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * kThreads) {
    out[i] = __float2bfloat16_rn(UniformAt(seed, stream_id, first + i, lo, hi));
  }
}

__global__ void __launch_bounds__(kThreads) FillKernel(__nv_bfloat16* out, int64_t n, float v) {
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * kThreads) {
    out[i] = __float2bfloat16_rn(v);
  }
}

int GridFor(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65536 ? blocks : 65536);
}

}  // namespace

Status FillUniform(bf16* out, int64_t n, uint64_t seed, uint64_t stream_id, uint64_t first,
                   float lo, float hi, cudaStream_t stream) {
  if (n < 0 || !(lo <= hi)) return Status::InvalidArgument("fill_uniform: n < 0 or lo > hi");
  if (n == 0) return Status::Ok();
  FillUniformKernel<<<GridFor(n), kThreads, 0, stream>>>(Nv(out), n, seed, stream_id, first, lo,
                                                         hi);
  return LaunchStatus("fill_uniform");
}

Status Fill(bf16* out, int64_t n, float value, cudaStream_t stream) {
  if (n < 0) return Status::InvalidArgument("fill: n < 0");
  if (n == 0) return Status::Ok();
  FillKernel<<<GridFor(n), kThreads, 0, stream>>>(Nv(out), n, value);
  return LaunchStatus("fill");
}

}  // namespace sluice::kernels::cuda
