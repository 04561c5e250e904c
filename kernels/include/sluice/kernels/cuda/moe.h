// The fused mixture-of-experts layer on the GPU, after the router GEMM (semantics in
// ../moe.h, reference cpu::MoeExperts). Five launches whatever the number of experts:
//   route    one warp per token: its top-k experts and weights (ties to the lower id);
//   align    one block: tokens counted per expert, each expert's rows padded to the row
//            tile, the (token, choice) pairs laid out expert by expert;
//   gate_up  a grouped GEMM over the row tiles of the experts that received tokens, each
//            tile with its expert's weights, the activation (SiLU-and-mul or the clamped
//            SwiGLU, biases added) fused into its epilogue;
//   down     the same over the activations;
//   combine  out[t] = sum over j of weight[t, j] * y[pair (t, j)], in choice order.
// The launch shapes depend only on num_tokens and the shape, never on the routing, so
// the layer can be captured in a CUDA graph: the GEMM grids cover the most row tiles any
// routing can need, and the blocks past the tiles in use return at once.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sluice/kernels/dtype.h"
#include "sluice/kernels/moe.h"
#include "sluice/kernels/status.h"
#include "sluice/kernels/stream.h"

namespace sluice::kernels::cuda {

// Device workspace Moe needs for up to max_tokens tokens.
size_t MoeWorkspaceBytes(const MoeShape& shape, int max_tokens);

// Top-k routing as cpu::RouteTopK.
// REQUIRES: 0 < k <= min(num_experts, 32).
Status MoeRoute(int32_t* expert_ids,  // [num_tokens, k]
                float* weights,       // [num_tokens, k]
                const float* logits,  // [num_tokens, num_experts]
                int num_tokens, int num_experts, int k, MoeRouting routing, bool renormalize,
                cudaStream_t stream);

// out[t] = sum over j of weight[t, j] * expert_{id[t, j]}(x[t]); `out` may alias `x`.
// The experts' GEMMs accumulate in fp32; their activations are rounded to bf16 between
// the two GEMMs, the expert outputs before the weighted sum.
// REQUIRES: hidden and intermediate multiples of 8; num_experts <= 1024; 0 < top_k <=
// min(num_experts, 32); x and out 16-byte aligned; num_tokens <= max_tokens of the
// workspace (MoeWorkspaceBytes(shape, max_tokens) bytes, 256-byte aligned).
Status Moe(bf16* out,                   // [num_tokens, hidden]
           const bf16* x,               // [num_tokens, hidden]
           const float* router_logits,  // [num_tokens, num_experts]
           const MoeExpertWeights<bf16>& weights, const MoeShape& shape, int num_tokens,
           void* workspace, int max_tokens, cudaStream_t stream);

}  // namespace sluice::kernels::cuda
