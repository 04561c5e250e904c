// The step between the fused QKV projection and attention: split the projection's rows
// into q, k and v, rotate q and k (rotate_half RoPE), write k and v into the paged cache.
// One pass instead of a split, a RoPE and a cache write.
#pragma once

#include <cstdint>

#include "sluice/kernels/kv_cache.h"
#include "sluice/kernels/status.h"

namespace sluice::kernels {

struct QkvLayout {
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int rotary_dim = 0;  // RoPE covers the first rotary_dim of each head
  int Width() const { return (num_q_heads + 2 * num_kv_heads) * head_dim; }
};

// Per-head RMSNorm of q and k before RoPE (Qwen3's QK-norm): each head's head_dim values
// become x / sqrt(mean(x²) + eps) * weight, in fp32. q == nullptr: no norm.
template <class T>
struct QkNorm {
  const T* q = nullptr;  // [head_dim]
  const T* k = nullptr;  // [head_dim]
  float eps = 1e-6f;
  bool enabled() const { return q != nullptr; }
};

namespace cpu {

// q_out[t] = rope(norm(q part of qkv[t])); cache[slot[t]] = rope(norm(k part)), v part,
// where norm is `norm` when enabled. Slot -1 writes nothing (padding).
Status SplitQkvRopeWriteKv(float* q_out,      // [num_tokens, num_q_heads, head_dim]
                           float* k_cache,    // [num_blocks, block_size, kv_heads, head_dim]
                           float* v_cache,    // [num_blocks, block_size, kv_heads, head_dim]
                           const float* qkv,  // [num_tokens, layout.Width()]
                           const int32_t* positions,     // [num_tokens]
                           const int64_t* slot_mapping,  // [num_tokens]
                           const float* cos_sin,         // [max_positions, rotary_dim]
                           int num_tokens, const QkvLayout& layout, const KvCacheShape& shape,
                           const QkNorm<float>& norm = {});

}  // namespace cpu
}  // namespace sluice::kernels
