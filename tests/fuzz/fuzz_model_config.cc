// config.json text through ParseModelConfig: a config it accepts describes a model the
// engine can build (positive sizes, heads dividing the hidden size, finite constants).
#include <cmath>
#include <cstdint>
#include <string>

#include "engine/model/config.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = sluice::ParseModelConfig(text, "fuzz/config.json");
  if (!config.ok()) {
    FUZZ_CHECK(config.status().message().find("fuzz/config.json") != std::string::npos);
    return 0;
  }
  const sluice::ModelConfig& c = *config;
  FUZZ_CHECK(c.hidden_size > 0 && c.num_layers > 0 && c.vocab_size > 0);
  FUZZ_CHECK(c.num_q_heads > 0 && c.num_kv_heads > 0);
  FUZZ_CHECK(c.num_q_heads % c.num_kv_heads == 0);
  FUZZ_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0);
  FUZZ_CHECK(c.intermediate_size > 0 && c.max_position_embeddings > 0);
  FUZZ_CHECK(std::isfinite(c.rms_norm_eps) && c.rms_norm_eps > 0);
  FUZZ_CHECK(std::isfinite(c.rope.theta) && c.rope.theta > 0);
  FUZZ_CHECK(c.rope.rotary_dim > 0 && c.rope.rotary_dim <= c.head_dim);
  for (int32_t id : c.eos_token_ids) FUZZ_CHECK(id >= 0 && id < c.vocab_size);
  // FP8: blocks and token groups have a size; no FP8 experts.
  if (c.fp8.weights == sluice::Fp8Scheme::Weights::kBlock && c.fp8.enabled) {
    FUZZ_CHECK(c.fp8.block_n > 0 && c.fp8.block_k > 0);
  }
  if (c.fp8.inputs == sluice::Fp8Scheme::Inputs::kPerTokenGroup && c.fp8.enabled) {
    FUZZ_CHECK(c.fp8.input_group > 0);
  }
  FUZZ_CHECK(!c.fp8.enabled || c.num_experts == 0);
  return 0;
}
