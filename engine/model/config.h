// Model configuration read from a Hugging Face config.json (+ generation_config.json).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sluice/kernels/rope.h"

namespace sluice {

struct ModelConfig {
  std::string model_type;  // llama, mistral or qwen2
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  bool attention_bias = false;  // q/k/v projections carry a bias (qwen2)
  bool tie_word_embeddings = false;
  kernels::RopeConfig rope;
  std::vector<int32_t> eos_token_ids;  // from generation_config.json, else config.json
  std::optional<int32_t> bos_token_id;

  std::string Summary() const;
};

// Parses DIR/config.json (and DIR/generation_config.json when present). Errors name the
// file and the field.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);

// Parses config.json text; `source` names it in errors.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& text, const std::string& source);

}  // namespace sluice
