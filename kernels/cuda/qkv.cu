// Split + QK-norm + RoPE + cache write: one CTA per token. With QK-norm, phase 0 has
// each warp sum the squares of its heads of q and k into a per-head inverse RMS in
// shared memory, which the later phases multiply in with the weight. Phase 1 rotates the (head,
// pair) items of q and k (rotate_half), writing q to q_out and k to its cache slot; phase 2 copies
// v to its slot in 16-byte chunks, and the dimensions past rotary_dim of q and k.
#include <string>

#include "common.cuh"
#include "sluice/kernels/cuda/qkv.h"

namespace sluice::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxNormHeads = 1024;  // q + k heads a token may have with QK-norm

__global__ void __launch_bounds__(kThreads)
    SplitQkvRopeKernel(__nv_bfloat16* q_out, __nv_bfloat16* k_cache, __nv_bfloat16* v_cache,
                       const __nv_bfloat16* qkv, const int32_t* positions,
                       const int64_t* slot_mapping, const float* cos_sin, int hq, int hkv, int d,
                       int rot, int64_t num_slots, const __nv_bfloat16* q_norm,
                       const __nv_bfloat16* k_norm, float eps) {
  __shared__ float inv_rms[kMaxNormHeads];
  const int64_t t = blockIdx.x;
  const int64_t slot = slot_mapping[t];
  const bool write_kv = slot >= 0 && slot < num_slots;
  const int width = (hq + 2 * hkv) * d;
  const __nv_bfloat16* row = qkv + t * width;
  const int half = rot / 2;
  const float* cs = cos_sin + int64_t{positions[t]} * rot;
  const bool norm = q_norm != nullptr;
  if (norm) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int head = warp; head < hq + hkv; head += kThreads / 32) {
      float ss = 0.0f;
      for (int j = lane; j < d; j += 32) {
        const float x = __bfloat162float(row[head * d + j]);
        ss += x * x;
      }
      for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
      if (lane == 0) inv_rms[head] = rsqrtf(ss / static_cast<float>(d) + eps);
    }
    __syncthreads();
  }
  // x[head, j] after the norm (as it is without one).
  auto load = [&](int head, int j) {
    const float x = __bfloat162float(row[head * d + j]);
    if (!norm) return x;
    const __nv_bfloat16* w = head < hq ? q_norm : k_norm;
    return x * inv_rms[head] * __bfloat162float(w[j]);
  };
  // Rotated pairs of q heads, then k heads.
  for (int i = threadIdx.x; i < (hq + hkv) * half; i += kThreads) {
    const int head = i / half, j = i % half;
    const float c = cs[j], s = cs[half + j];
    const float a = load(head, j), b = load(head, half + j);
    const __nv_bfloat16 lo = __float2bfloat16(a * c - b * s), hi = __float2bfloat16(b * c + a * s);
    if (head < hq) {
      __nv_bfloat16* dst = q_out + (t * hq + head) * d;
      dst[j] = lo;
      dst[half + j] = hi;
    } else if (write_kv) {
      __nv_bfloat16* dst = k_cache + (slot * hkv + head - hq) * d;
      dst[j] = lo;
      dst[half + j] = hi;
    }
  }
  // Unrotated tails of q and k heads (rot < d).
  const int tail = d - rot;
  for (int i = threadIdx.x; i < (hq + hkv) * tail; i += kThreads) {
    const int head = i / tail, j = rot + i % tail;
    const __nv_bfloat16 x = norm ? __float2bfloat16(load(head, j)) : row[head * d + j];
    if (head < hq) {
      q_out[(t * hq + head) * d + j] = x;
    } else if (write_kv) {
      k_cache[(slot * hkv + head - hq) * d + j] = x;
    }
  }
  if (!write_kv) return;
  const int chunks = hkv * d / 8;
  const uint4* v = reinterpret_cast<const uint4*>(row + (hq + hkv) * d);
  uint4* dst = reinterpret_cast<uint4*>(v_cache + slot * hkv * d);
  for (int c = threadIdx.x; c < chunks; c += kThreads) dst[c] = v[c];
}

}  // namespace

Status SplitQkvRopeWriteKv(bf16* q_out, bf16* k_cache, bf16* v_cache, const bf16* qkv,
                           const int32_t* positions, const int64_t* slot_mapping,
                           const float* cos_sin, int num_tokens, const QkvLayout& l,
                           const KvCacheShape& shape, cudaStream_t stream,
                           const QkNorm<bf16>& norm) {
  if (num_tokens < 0 || l.num_q_heads <= 0 || l.num_kv_heads <= 0 || l.head_dim % 8 != 0 ||
      l.num_kv_heads != shape.num_kv_heads || l.head_dim != shape.head_dim || l.rotary_dim <= 0 ||
      l.rotary_dim > l.head_dim || l.rotary_dim % 2 != 0) {
    return Status::InvalidArgument(
        "split_qkv: layout disagrees with the cache shape, head_dim not a multiple of 8, or "
        "rotary_dim " +
        std::to_string(l.rotary_dim) + " not even and in (0, head_dim]");
  }
  if (norm.enabled() && (norm.k == nullptr || l.num_q_heads + l.num_kv_heads > kMaxNormHeads)) {
    return Status::InvalidArgument("split_qkv: QK-norm needs both weights and at most " +
                                   std::to_string(kMaxNormHeads) + " q + k heads");
  }
  if (num_tokens == 0) return Status::Ok();
  const int64_t num_slots = int64_t{shape.num_blocks} * shape.block_size;
  SplitQkvRopeKernel<<<num_tokens, kThreads, 0, stream>>>(
      Nv(q_out), Nv(k_cache), Nv(v_cache), Nv(qkv), positions, slot_mapping, cos_sin, l.num_q_heads,
      l.num_kv_heads, l.head_dim, l.rotary_dim, num_slots, Nv(norm.q), Nv(norm.k), norm.eps);
  return LaunchStatus("split_qkv_rope_write_kv");
}

}  // namespace sluice::kernels::cuda
