// Request workloads: synthetic random-word prompts, K shared system prompts × M users
// (prefix caching), and ShareGPT conversations; and the JSON body of each request.
#ifndef SLUICE_BENCH_SERVING_WORKLOAD_H_
#define SLUICE_BENCH_SERVING_WORKLOAD_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::bench {

// How many tokens a prompt of w random words has on the target server:
// tokens ≈ overhead + per_word * w. The bench measures it with two probe requests
// (usage.prompt_tokens), so that synthetic prompts hit --input-len on any tokenizer.
struct TokenModel {
  double per_word = 1.0;
  double overhead = 0.0;  // chat template, BOS, ...

  // Words needed for about `tokens` prompt tokens (at least 1).
  int64_t WordsFor(int64_t tokens) const;
  // Tokens expected for `words` words, without the overhead.
  int64_t TokensFor(int64_t words) const;
};

// Fits a TokenModel to two probes: `words_a` words gave `tokens_a` prompt tokens, and
// so on. Falls back to 1 token per word when the probes disagree (tokens_b ≤ tokens_a).
// REQUIRES: words_b > words_a > 0.
TokenModel FitTokenModel(int64_t words_a, int64_t tokens_a, int64_t words_b, int64_t tokens_b);

// One request to send.
struct WorkItem {
  std::string system;  // shared prefix (chat: the system message); may be empty
  std::string prompt;  // the user part
  int64_t expected_input_tokens = 0;
  int64_t max_tokens = 0;
};

struct SyntheticConfig {
  int64_t num_requests = 100;
  int64_t input_len = 256;
  int64_t output_len = 128;
  double range_ratio = 0.0;  // lengths uniform in [len·(1−r), len·(1+r)], as vllm's random
  uint64_t seed = 0;
};

struct PrefixConfig {
  int64_t num_requests = 100;
  int64_t num_prefixes = 4;  // K shared system prompts
  int64_t num_users = 8;     // M distinct user prompts per system prompt
  int64_t prefix_len = 128;  // tokens of each system prompt
  int64_t input_len = 256;   // tokens of system + user prompt
  int64_t output_len = 128;
  uint64_t seed = 0;
};

// `count` random words from a fixed list of common English words, space-separated.
std::string RandomWords(std::mt19937_64& rng, int64_t count);

// Synthetic workload: random-word prompts of about input_len tokens, output_len tokens.
std::vector<WorkItem> SyntheticWorkload(const SyntheticConfig& config, const TokenModel& tm);

// Request i uses system prompt i % K and user prompt (i / K) % M of that system prompt,
// so the K prefixes interleave and each is reused num_requests / K times.
// REQUIRES: 0 < prefix_len < input_len.
std::vector<WorkItem> PrefixWorkload(const PrefixConfig& config, const TokenModel& tm);

// ShareGPT JSON (a list of {"conversations": [{"from", "value"}, ...]}): the first turn
// is the prompt, the second's length (in estimated tokens) the output length unless
// `output_len` > 0. Skips pairs with fewer than 4 tokens on either side or over
// 1024 prompt / 2048 total tokens (vllm's filter); shuffles with `seed`, then takes
// `num_requests` (cycling if the file has fewer).
absl::StatusOr<std::vector<WorkItem>> ShareGptWorkload(const std::string& path,
                                                       int64_t num_requests, int64_t output_len,
                                                       uint64_t seed, const TokenModel& tm);

enum class Endpoint { kCompletions, kChat };

struct BodyOptions {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  bool ignore_eos = true;
  double temperature = 0.0;
};

// The JSON body of a streamed request with stream_options.include_usage.
std::string RequestBody(const WorkItem& item, const BodyOptions& options);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_SERVING_WORKLOAD_H_
