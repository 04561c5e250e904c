// Single-sequence generation on the CPU model: prefill the prompt, then decode one token
// per step. The CLI's `generate` and the parity tests use it.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/cpu_model.h"
#include "engine/model/cpu_model_group.h"
#include "sluice/kernels/sampling.h"

namespace sluice {

struct GenerateOptions {
  int max_tokens = 64;
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  uint64_t seed = 0;
  bool ignore_eos = false;
  int block_size = 16;
};

struct GenerateResult {
  std::vector<int32_t> output_ids;
  std::string finish_reason;  // "stop" (an eos id) or "length"
};

// Sees each step's logits ([vocab]) before sampling: step 0 is the prompt's last position.
using LogitsObserver = std::function<void(int step, std::span<const float> logits)>;
// Sees each new token id as soon as it is sampled.
using TokenObserver = std::function<void(int32_t id)>;

// REQUIRES: prompt is non-empty.
absl::StatusOr<GenerateResult> Generate(CpuModel& model, std::span<const int32_t> prompt,
                                        const GenerateOptions& options,
                                        const TokenObserver& on_token = nullptr,
                                        const LogitsObserver& on_logits = nullptr);

// The same over a tensor-parallel group, whose caches hold the sequence in blocks 0, 1, ...
// Errors also: caches too small for the prompt and max_tokens.
absl::StatusOr<GenerateResult> Generate(CpuModelGroup& group, std::span<const int32_t> prompt,
                                        const GenerateOptions& options,
                                        const TokenObserver& on_token = nullptr,
                                        const LogitsObserver& on_logits = nullptr);

}  // namespace sluice
