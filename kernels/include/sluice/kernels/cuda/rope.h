// Rotary position embedding on the GPU, in place on bf16 q and k, with the fp32 cos/sin
// table of ../rope.h (RopeCosSinCache, copied to the device).
#pragma once

#include <cstdint>

#include "sluice/kernels/dtype.h"
#include "sluice/kernels/rope.h"
#include "sluice/kernels/status.h"
#include "sluice/kernels/stream.h"

namespace sluice::kernels::cuda {

// REQUIRES: rotary_dim even, <= head_dim; 0 <= positions[i] < rows of cos_sin.
Status ApplyRope(bf16* q,                   // [num_tokens, num_q_heads, head_dim]
                 bf16* k,                   // [num_tokens, num_kv_heads, head_dim]
                 const int32_t* positions,  // [num_tokens]
                 const float* cos_sin,      // [max_positions, rotary_dim]
                 int num_tokens, int num_q_heads, int num_kv_heads, int head_dim, int rotary_dim,
                 cudaStream_t stream);

}  // namespace sluice::kernels::cuda
