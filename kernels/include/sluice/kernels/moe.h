// Mixture-of-experts layers: routing, then each token through its top-k SwiGLU experts,
// their outputs summed with the routing weights.
//
// Routing turns each token's router logits over the experts into the k experts it goes
// to and their weights:
//   kSoftmaxTopK (Qwen3-MoE, Mixtral): softmax over all experts, then the k largest
//     probabilities; with `renormalize` they are divided by their sum.
//   kTopKSoftmax (gpt-oss): the k largest logits, then a softmax over those k.
// Ties pick the lower expert id; experts are listed by descending weight.
#pragma once

#include <cstdint>

#include "sluice/kernels/status.h"

namespace sluice::kernels {

enum class MoeRouting { kSoftmaxTopK, kTopKSoftmax };

// The experts' activation over [gate | up]: silu(gate) * up, or gpt-oss's clamped
// SwiGLU (see activation.h).
enum class MoeActivation { kSiluAndMul, kClampedSwiGlu };

struct MoeShape {
  int num_experts = 0;
  int top_k = 0;
  int hidden = 0;
  int intermediate = 0;  // per expert
  MoeRouting routing = MoeRouting::kSoftmaxTopK;
  bool renormalize = false;
  MoeActivation activation = MoeActivation::kSiluAndMul;
  float swiglu_alpha = 1.702f;
  float swiglu_limit = 7.0f;
};

// The experts' weights, expert after expert; the biases are optional (nullptr).
template <typename T>
struct MoeExpertWeights {
  const T* gate_up = nullptr;       // [experts, 2 * intermediate, hidden]: gate rows, then up
  const T* gate_up_bias = nullptr;  // [experts, 2 * intermediate]
  const T* down = nullptr;          // [experts, hidden, intermediate]
  const T* down_bias = nullptr;     // [experts, hidden]
};

namespace cpu {

Status RouteTopK(int32_t* expert_ids,  // [num_tokens, k]
                 float* weights,       // [num_tokens, k]
                 const float* logits,  // [num_tokens, num_experts]
                 int num_tokens, int num_experts, int k, MoeRouting routing, bool renormalize);

// The reference MoE after the router GEMM: routes, runs each expert over the tokens
// sent to it, and writes out[t] = sum over j of weight[t, j] * expert_j(x[t]).
// `out` may alias `x`.
Status MoeExperts(float* out,                  // [num_tokens, hidden]
                  const float* x,              // [num_tokens, hidden]
                  const float* router_logits,  // [num_tokens, num_experts]
                  const MoeExpertWeights<float>& weights, const MoeShape& shape, int num_tokens);

}  // namespace cpu
}  // namespace sluice::kernels
