// Model weights in fp32 host memory (the CPU backend's layout), checked against the
// config: every tensor present, shaped as the config says.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/config.h"
#include "engine/model/safetensors.h"

namespace sluice {

struct LayerWeights {
  std::vector<float> input_norm;     // [hidden]
  std::vector<float> qkv;            // [(q_heads + 2 * kv_heads) * head_dim, hidden] fused
  std::vector<float> qkv_bias;       // [(q_heads + 2 * kv_heads) * head_dim] or empty
  std::vector<float> o_proj;         // [hidden, q_heads * head_dim]
  std::vector<float> post_norm;      // [hidden]
  std::vector<float> gate_up;        // [2 * intermediate, hidden] fused, gate rows first
  std::vector<float> down_proj;      // [hidden, intermediate]
};

struct ModelWeights {
  std::vector<float> embed;          // [vocab, hidden]
  std::vector<LayerWeights> layers;  // [num_layers]
  std::vector<float> final_norm;     // [hidden]
  std::vector<float> lm_head;        // [vocab, hidden]; empty when tied to embed

  const std::vector<float>& LmHead() const { return lm_head.empty() ? embed : lm_head; }
};

// Called after each layer loads: (layers done, layers total).
using LoadProgress = std::function<void(int, int)>;

// Reads and converts every tensor the config needs. A missing tensor or a shape that
// disagrees with the config is an error naming the tensor and its file.
absl::StatusOr<ModelWeights> LoadWeights(const Checkpoint& ckpt, const ModelConfig& config,
                                         const LoadProgress& progress = nullptr);

}  // namespace sluice
