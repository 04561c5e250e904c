// Rotary embedding in place: one CTA per token, one thread per (head, pair) of the
// rotate_half layout, cos/sin read from the fp32 table row of the token's position.
#include "common.cuh"
#include "sluice/kernels/cuda/rope.h"

namespace sluice::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    RopeKernel(__nv_bfloat16* q, __nv_bfloat16* k, const int32_t* positions, const float* cos_sin,
               int num_q_heads, int num_kv_heads, int head_dim, int rotary_dim) {
  const int t = blockIdx.x;
  const int half = rotary_dim / 2;
  const float* row = cos_sin + int64_t{positions[t]} * rotary_dim;
  const int total = (num_q_heads + num_kv_heads) * half;
  for (int i = threadIdx.x; i < total; i += kThreads) {
    const int head = i / half, j = i % half;
    __nv_bfloat16* v = head < num_q_heads
                           ? q + (int64_t{t} * num_q_heads + head) * head_dim
                           : k + (int64_t{t} * num_kv_heads + head - num_q_heads) * head_dim;
    const float c = row[j], s = row[half + j];
    const float a = __bfloat162float(v[j]), b = __bfloat162float(v[half + j]);
    v[j] = __float2bfloat16(a * c - b * s);
    v[half + j] = __float2bfloat16(b * c + a * s);
  }
}

}  // namespace

Status ApplyRope(bf16* q, bf16* k, const int32_t* positions, const float* cos_sin, int num_tokens,
                 int num_q_heads, int num_kv_heads, int head_dim, int rotary_dim,
                 cudaStream_t stream) {
  if (rotary_dim <= 0 || rotary_dim > head_dim || rotary_dim % 2 != 0) {
    return Status::InvalidArgument("rope: rotary_dim must be even and in (0, head_dim]");
  }
  if (num_tokens < 0 || num_q_heads <= 0 || num_kv_heads < 0) {
    return Status::InvalidArgument("rope: bad token or head count");
  }
  if (num_tokens == 0) return Status::Ok();
  RopeKernel<<<num_tokens, kThreads, 0, stream>>>(Nv(q), Nv(k), positions, cos_sin, num_q_heads,
                                                  num_kv_heads, head_dim, rotary_dim);
  return LaunchStatus("rope");
}

}  // namespace sluice::kernels::cuda
