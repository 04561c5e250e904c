// Mixture-of-experts routing: each token's router logits over the experts become the
// top-k experts it goes to and their weights.
//   kSoftmaxTopK (Qwen3-MoE, Mixtral): softmax over all experts, then the k largest
//     probabilities; with `renormalize` they are divided by their sum.
//   kTopKSoftmax (gpt-oss): the k largest logits, then a softmax over those k.
// Ties pick the lower expert id; experts are listed by descending weight.
#pragma once

#include <cstdint>

#include "sluice/kernels/status.h"

namespace sluice::kernels {

enum class MoeRouting { kSoftmaxTopK, kTopKSoftmax };

namespace cpu {

Status RouteTopK(int32_t* expert_ids,  // [num_tokens, k]
                 float* weights,       // [num_tokens, k]
                 const float* logits,  // [num_tokens, num_experts]
                 int num_tokens, int num_experts, int k, MoeRouting routing, bool renormalize);

}  // namespace cpu
}  // namespace sluice::kernels
