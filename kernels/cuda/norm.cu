// RMSNorm and fused residual-add + RMSNorm: one CTA per token, the row held in
// registers (up to kMaxChunksPerThread 16-byte chunks per thread), fp32 arithmetic.
#include <string>

#include "common.cuh"
#include "sluice/kernels/cuda/norm.h"

namespace sluice::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxChunksPerThread = 8;  // hidden <= 256 * 8 * 8 = 16384

template <bool kAddResidual>
__global__ void __launch_bounds__(kThreads)
    RmsNormKernel(__nv_bfloat16* out, const __nv_bfloat16* x, __nv_bfloat16* residual,
                  const __nv_bfloat16* weight, int hidden, float eps) {
  __shared__ float scratch[32];
  const int64_t row = int64_t{blockIdx.x} * hidden;
  const int chunks = hidden / 8;
  float v[kMaxChunksPerThread][8];
  float sum_sq = 0.0f;
#pragma unroll
  for (int i = 0; i < kMaxChunksPerThread; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c >= chunks) break;
    Unpack(*reinterpret_cast<const Bf16x8*>(x + row + c * 8), v[i]);
    if constexpr (kAddResidual) {
      float r[8];
      Unpack(*reinterpret_cast<const Bf16x8*>(residual + row + c * 8), r);
#pragma unroll
      for (int e = 0; e < 8; ++e) r[e] += v[i][e];
      const Bf16x8 packed = Pack(r);
      *reinterpret_cast<Bf16x8*>(residual + row + c * 8) = packed;
      Unpack(packed, v[i]);  // normalise what was stored
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) sum_sq += v[i][e] * v[i][e];
  }
  const float inv_rms = rsqrtf(BlockSum(sum_sq, scratch) / static_cast<float>(hidden) + eps);
#pragma unroll
  for (int i = 0; i < kMaxChunksPerThread; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c >= chunks) break;
    float w[8];
    Unpack(*reinterpret_cast<const Bf16x8*>(weight + c * 8), w);
#pragma unroll
    for (int e = 0; e < 8; ++e) v[i][e] = w[e] * (v[i][e] * inv_rms);
    *reinterpret_cast<Bf16x8*>(out + row + c * 8) = Pack(v[i]);
  }
}

Status CheckShape(int num_tokens, int hidden) {
  if (num_tokens < 0 || hidden <= 0 || hidden % 8 != 0 ||
      hidden > kThreads * kMaxChunksPerThread * 8) {
    return Status::InvalidArgument("rms_norm: hidden " + std::to_string(hidden) +
                                   " must be a positive multiple of 8 up to 16384");
  }
  return Status::Ok();
}

}  // namespace

Status RmsNorm(bf16* out, const bf16* x, const bf16* weight, int num_tokens, int hidden, float eps,
               cudaStream_t stream) {
  if (Status s = CheckShape(num_tokens, hidden); !s.ok()) return s;
  if (num_tokens == 0) return Status::Ok();
  RmsNormKernel<false>
      <<<num_tokens, kThreads, 0, stream>>>(Nv(out), Nv(x), nullptr, Nv(weight), hidden, eps);
  return LaunchStatus("rms_norm");
}

Status FusedAddRmsNorm(bf16* x, bf16* residual, const bf16* weight, int num_tokens, int hidden,
                       float eps, cudaStream_t stream) {
  if (Status s = CheckShape(num_tokens, hidden); !s.ok()) return s;
  if (num_tokens == 0) return Status::Ok();
  RmsNormKernel<true>
      <<<num_tokens, kThreads, 0, stream>>>(Nv(x), Nv(x), Nv(residual), Nv(weight), hidden, eps);
  return LaunchStatus("fused_add_rms_norm");
}

}  // namespace sluice::kernels::cuda
