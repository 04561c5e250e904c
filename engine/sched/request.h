// A request as the scheduler tracks it: its tokens, sampling parameters and progress.
// Block hashes live here (in kv), so the cache manager stays stateless per request.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/cache/kv_cache_manager.h"

namespace sluice {

using RequestId = uint64_t;
using Clock = std::chrono::steady_clock;

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  std::optional<uint64_t> seed;  // unseeded requests get a random seed at admission
  int max_tokens = 16;
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
  float presence_penalty = 0.0f;    // on generated tokens, OpenAI semantics
  float frequency_penalty = 0.0f;   // on generated tokens, OpenAI semantics
  float repetition_penalty = 1.0f;  // on prompt and generated tokens, transformers semantics
  int logprobs = -1;                // top alternatives to report per token; -1: no logprobs
};

// A sampled token's log-probability under the model (before sampling filters), with the
// most likely alternatives.
struct TokenLogprobs {
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;
};

enum class RequestState { kWaiting, kRunning, kFinished };

enum class FinishReason { kNone, kStop, kLength, kAbort, kError };

const char* FinishReasonName(FinishReason r);

struct Request {
  RequestId id = 0;
  std::vector<int32_t> token_ids;  // prompt, then generated tokens
  int num_prompt_tokens = 0;
  SamplingParams sampling;
  uint64_t seed = 0;  // resolved seed
  std::string cache_salt;
  int priority = 0;          // lower runs first
  uint64_t arrival_seq = 0;  // admission order
  Clock::time_point arrival_time{};
  Clock::time_point first_scheduled_time{};  // set when first scheduled

  RequestState state = RequestState::kWaiting;
  FinishReason finish_reason = FinishReason::kNone;
  int num_computed_tokens = 0;         // tokens whose KV is in the cache
  int num_cached_prompt_tokens = -1;   // prefix-cache hit at first scheduling (-1: not yet)
  int num_preemptions = 0;
  SeqBlocks kv;

  int num_tokens() const { return static_cast<int>(token_ids.size()); }
  int num_output_tokens() const { return num_tokens() - num_prompt_tokens; }
};

}  // namespace sluice
