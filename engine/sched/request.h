// A request as the scheduler tracks it: its tokens, sampling parameters and progress.
// Block hashes live here (in kv), so the cache manager stays stateless per request.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/api.h"
#include "engine/cache/kv_cache_manager.h"

namespace sluice {

enum class RequestState { kWaiting, kRunning };

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
  int num_computed_tokens = 0;        // tokens whose KV is in the cache
  int num_cached_prompt_tokens = -1;  // prefix-cache hit at first scheduling (-1: not yet)
  int num_preemptions = 0;
  SeqBlocks kv;
  // sampling.prompt_logprobs: the prompt's scores gathered so far (token i at i - 1),
  // and whether they went out with the first output.
  std::vector<TokenLogprobs> prompt_logprobs;
  bool prompt_logprobs_sent = false;
  // Speculative decoding: the runner's drafts to follow token_ids, to verify next step;
  // decayed counts of drafts kept and of drafts tried up to the first miss (their ratio
  // is the chance a draft is kept given the one before it was).
  std::vector<int32_t> draft_ids;
  double spec_kept = 0, spec_tried = 0;

  // The prompt still needs scoring: its KV must be computed, not read from the cache.
  bool scores_prompt() const { return sampling.prompt_logprobs >= 0 && !prompt_logprobs_sent; }

  int num_tokens() const { return static_cast<int>(token_ids.size()); }
  int num_output_tokens() const { return num_tokens() - num_prompt_tokens; }
};

}  // namespace sluice
