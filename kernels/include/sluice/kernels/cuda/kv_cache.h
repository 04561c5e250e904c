// Paged KV cache writes and block copies on the GPU (layout in ../kv_cache.h).
#pragma once

#include <cstdint>

#include "sluice/kernels/dtype.h"
#include "sluice/kernels/kv_cache.h"
#include "sluice/kernels/status.h"
#include "sluice/kernels/stream.h"

namespace sluice::kernels::cuda {

// Writes each token's K and V into its slot; slot -1 is skipped. Slots past the cache
// are skipped too (the device cannot report them without a synchronisation).
// REQUIRES: num_kv_heads * head_dim is a multiple of 8.
Status WriteKvCache(bf16* k_cache,                // [num_blocks, block_size, kv_heads, head_dim]
                    bf16* v_cache,                // [num_blocks, block_size, kv_heads, head_dim]
                    const bf16* k,                // [num_tokens, kv_heads, head_dim]
                    const bf16* v,                // [num_tokens, kv_heads, head_dim]
                    const int64_t* slot_mapping,  // [num_tokens]
                    int num_tokens, const KvCacheShape& shape, cudaStream_t stream);

// Copies whole blocks, pairs[i] = (src, dst), for K and V. Pairs naming a block outside
// the cache are skipped.
Status CopyBlocks(bf16* k_cache, bf16* v_cache,  // [num_blocks, block_size, kv_heads, head_dim]
                  const int32_t* pairs,          // [num_pairs, 2]
                  int num_pairs, const KvCacheShape& shape, cudaStream_t stream);

}  // namespace sluice::kernels::cuda
