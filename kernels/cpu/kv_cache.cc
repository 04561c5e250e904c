#include "sluice/kernels/kv_cache.h"

#include <algorithm>
#include <string>

namespace sluice::kernels::cpu {

Status WriteKvCache(float* k_cache, float* v_cache, const float* k, const float* v,
                    const int64_t* slot_mapping, int num_tokens, const KvCacheShape& shape) {
  const int64_t token_elems = int64_t{shape.num_kv_heads} * shape.head_dim;
  const int64_t num_slots = int64_t{shape.num_blocks} * shape.block_size;
  for (int t = 0; t < num_tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    if (slot >= num_slots) {
      return Status::InvalidArgument("write_kv_cache: slot " + std::to_string(slot) + " of token " +
                                     std::to_string(t) + " is past the cache");
    }
    std::copy_n(k + t * token_elems, token_elems, k_cache + slot * token_elems);
    std::copy_n(v + t * token_elems, token_elems, v_cache + slot * token_elems);
  }
  return Status::Ok();
}

Status CopyBlocks(float* k_cache, float* v_cache, const int32_t* pairs, int num_pairs,
                  const KvCacheShape& shape) {
  const int64_t n = shape.BlockElems();
  for (int i = 0; i < num_pairs; ++i) {
    const int32_t src = pairs[2 * i], dst = pairs[2 * i + 1];
    if (src < 0 || dst < 0 || src >= shape.num_blocks || dst >= shape.num_blocks) {
      return Status::InvalidArgument("copy_blocks: pair " + std::to_string(i) +
                                     " names a block outside the cache");
    }
    std::copy_n(k_cache + src * n, n, k_cache + dst * n);
    std::copy_n(v_cache + src * n, n, v_cache + dst * n);
  }
  return Status::Ok();
}

}  // namespace sluice::kernels::cpu
