// SiLU-and-mul, 8 outputs per thread with 16-byte loads and stores.
#include <string>

#include "common.cuh"
#include "sluice/kernels/cuda/activation.h"

namespace sluice::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    SiluAndMulKernel(__nv_bfloat16* out, const __nv_bfloat16* x, int intermediate) {
  const int64_t t = blockIdx.y;
  const int c = (blockIdx.x * kThreads + threadIdx.x) * 8;
  if (c >= intermediate) return;
  float g[8], u[8];
  Unpack(*reinterpret_cast<const Bf16x8*>(x + t * 2 * intermediate + c), g);
  Unpack(*reinterpret_cast<const Bf16x8*>(x + t * 2 * intermediate + intermediate + c), u);
#pragma unroll
  for (int e = 0; e < 8; ++e) g[e] = g[e] / (1.0f + __expf(-g[e])) * u[e];
  *reinterpret_cast<Bf16x8*>(out + t * intermediate + c) = Pack(g);
}

}  // namespace

Status SiluAndMul(bf16* out, const bf16* x, int num_tokens, int intermediate, cudaStream_t stream) {
  if (num_tokens < 0 || intermediate <= 0 || intermediate % 8 != 0) {
    return Status::InvalidArgument("silu_and_mul: intermediate " + std::to_string(intermediate) +
                                   " must be a positive multiple of 8");
  }
  if (num_tokens == 0) return Status::Ok();
  const dim3 grid(CeilDiv(intermediate / 8, kThreads), num_tokens);
  SiluAndMulKernel<<<grid, kThreads, 0, stream>>>(Nv(out), Nv(x), intermediate);
  return LaunchStatus("silu_and_mul");
}

}  // namespace sluice::kernels::cuda
