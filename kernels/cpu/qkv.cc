#include "sluice/kernels/qkv.h"

#include <algorithm>
#include <vector>

#include "sluice/kernels/norm.h"
#include "sluice/kernels/rope.h"

namespace sluice::kernels::cpu {

Status SplitQkvRopeWriteKv(float* q_out, float* k_cache, float* v_cache, const float* qkv,
                           const int32_t* positions, const int64_t* slot_mapping,
                           const float* cos_sin, int num_tokens, const QkvLayout& l,
                           const KvCacheShape& shape, const QkNorm<float>& norm) {
  if (num_tokens < 0 || l.num_q_heads <= 0 || l.num_kv_heads <= 0 ||
      l.num_kv_heads != shape.num_kv_heads || l.head_dim != shape.head_dim) {
    return Status::InvalidArgument("split_qkv: layout disagrees with the cache shape");
  }
  const int q_width = l.num_q_heads * l.head_dim, kv_width = l.num_kv_heads * l.head_dim;
  std::vector<float> k(static_cast<size_t>(num_tokens) * kv_width),
      v(static_cast<size_t>(num_tokens) * kv_width);
  for (int t = 0; t < num_tokens; ++t) {
    const float* row = qkv + static_cast<int64_t>(t) * l.Width();
    std::copy(row, row + q_width, q_out + static_cast<int64_t>(t) * q_width);
    std::copy(row + q_width, row + q_width + kv_width, k.begin() + int64_t{t} * kv_width);
    std::copy(row + q_width + kv_width, row + l.Width(), v.begin() + int64_t{t} * kv_width);
  }
  if (norm.enabled()) {
    if (norm.k == nullptr) return Status::InvalidArgument("split_qkv: QK-norm without a k weight");
    if (Status s = RmsNorm(q_out, q_out, norm.q, num_tokens * l.num_q_heads, l.head_dim, norm.eps);
        !s.ok()) {
      return s;
    }
    if (Status s =
            RmsNorm(k.data(), k.data(), norm.k, num_tokens * l.num_kv_heads, l.head_dim, norm.eps);
        !s.ok()) {
      return s;
    }
  }
  if (Status s = ApplyRope(q_out, k.data(), positions, cos_sin, num_tokens, l.num_q_heads,
                           l.num_kv_heads, l.head_dim, l.rotary_dim);
      !s.ok()) {
    return s;
  }
  return WriteKvCache(k_cache, v_cache, k.data(), v.data(), slot_mapping, num_tokens, shape);
}

}  // namespace sluice::kernels::cpu
