// Paged KV cache layout, per layer: [num_blocks, block_size, num_kv_heads, head_dim]
// for K and the same for V. A token's slot is block_id * block_size + offset.
#pragma once

#include <cstdint>

#include "sluice/kernels/status.h"

namespace sluice::kernels {

struct KvCacheShape {
  int num_blocks = 0;
  int block_size = 16;
  int num_kv_heads = 0;
  int head_dim = 0;
  int64_t BlockElems() const { return int64_t{block_size} * num_kv_heads * head_dim; }
};

namespace cpu {

// Writes each token's K and V into its slot; slot -1 is skipped (padding).
Status WriteKvCache(float* k_cache,               // [num_blocks, block_size, kv_heads, head_dim]
                    float* v_cache,               // [num_blocks, block_size, kv_heads, head_dim]
                    const float* k,               // [num_tokens, kv_heads, head_dim]
                    const float* v,               // [num_tokens, kv_heads, head_dim]
                    const int64_t* slot_mapping,  // [num_tokens]
                    int num_tokens, const KvCacheShape& shape);

// Copies whole blocks: block pairs[i][1] := block pairs[i][0], for K and V.
Status CopyBlocks(float* k_cache, float* v_cache,  // [num_blocks, block_size, kv_heads, head_dim]
                  const int32_t* pairs,            // [num_pairs, 2] (src, dst)
                  int num_pairs, const KvCacheShape& shape);

}  // namespace cpu
}  // namespace sluice::kernels
