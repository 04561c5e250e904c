// CUDA version of sluice/kernels/qkv.h.
#pragma once

#include <cstdint>

#include "sluice/kernels/dtype.h"
#include "sluice/kernels/qkv.h"
#include "sluice/kernels/status.h"
#include "sluice/kernels/stream.h"

namespace sluice::kernels::cuda {

// REQUIRES: head_dim a multiple of 8; positions inside the cos_sin table.
Status SplitQkvRopeWriteKv(bf16* q_out,      // [num_tokens, num_q_heads, head_dim]
                           bf16* k_cache,    // [num_blocks, block_size, kv_heads, head_dim]
                           bf16* v_cache,    // [num_blocks, block_size, kv_heads, head_dim]
                           const bf16* qkv,  // [num_tokens, layout.Width()]
                           const int32_t* positions,     // [num_tokens]
                           const int64_t* slot_mapping,  // [num_tokens]
                           const float* cos_sin,         // [max_positions, rotary_dim]
                           int num_tokens, const QkvLayout& layout, const KvCacheShape& shape,
                           cudaStream_t stream, const QkNorm<bf16>& norm = {});

}  // namespace sluice::kernels::cuda
