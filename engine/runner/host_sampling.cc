#include "engine/runner/host_sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/container/flat_hash_map.h"

namespace sluice {

namespace {

bool HasPenalties(const SamplingParams& p) {
  return p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
}

void ApplyPenalties(const SamplingParams& p, const std::vector<int32_t>& tokens,
                    int num_output_tokens, float* logits, int vocab) {
  const int first_output = static_cast<int>(tokens.size()) - num_output_tokens;
  absl::flat_hash_map<int32_t, int> output_counts;
  absl::flat_hash_map<int32_t, bool> seen;
  for (int i = 0; i < static_cast<int>(tokens.size()); ++i) {
    const int32_t t = tokens[i];
    if (t < 0 || t >= vocab) continue;
    seen[t] = true;
    if (i >= first_output) ++output_counts[t];
  }
  if (p.repetition_penalty != 1.0f) {
    for (const auto& [t, unused] : seen) {
      logits[t] =
          logits[t] > 0 ? logits[t] / p.repetition_penalty : logits[t] * p.repetition_penalty;
    }
  }
  for (const auto& [t, count] : output_counts) {
    logits[t] -= p.frequency_penalty * static_cast<float>(count) + p.presence_penalty;
  }
}

constexpr float kBanned = -std::numeric_limits<float>::infinity();

}  // namespace

bool AdjustsLogits(const SamplingParams& p) {
  return HasPenalties(p) || !p.logit_bias.empty() || !p.allowed_token_ids.empty() ||
         !p.bad_words.empty() || p.min_tokens > 0;
}

void AdjustLogits(const SamplingParams& p, const std::vector<int32_t>& tokens,
                  int num_output_tokens, const std::vector<int32_t>& min_tokens_stop_ids,
                  float* logits, int vocab) {
  if (HasPenalties(p)) ApplyPenalties(p, tokens, num_output_tokens, logits, vocab);
  for (const auto& [id, bias] : p.logit_bias) {
    if (id >= 0 && id < vocab) logits[id] += bias;
  }
  if (!p.allowed_token_ids.empty()) {
    std::vector<float> kept(p.allowed_token_ids.size());
    for (size_t i = 0; i < kept.size(); ++i) {
      const int32_t id = p.allowed_token_ids[i];
      kept[i] = id >= 0 && id < vocab ? logits[id] : kBanned;
    }
    std::fill(logits, logits + vocab, kBanned);
    for (size_t i = 0; i < kept.size(); ++i) {
      const int32_t id = p.allowed_token_ids[i];
      if (id >= 0 && id < vocab) logits[id] = kept[i];
    }
  }
  const size_t n = tokens.size(), outputs = static_cast<size_t>(std::max(num_output_tokens, 0));
  for (const std::vector<int32_t>& word : p.bad_words) {
    // The word's last token is banned when its other tokens are the output's last ones.
    const size_t prefix = word.size() - 1;
    if (prefix > outputs) continue;
    if (std::equal(word.begin(), word.end() - 1,
                   tokens.begin() + static_cast<ptrdiff_t>(n - prefix))) {
      if (word.back() >= 0 && word.back() < vocab) logits[word.back()] = kBanned;
    }
  }
  if (num_output_tokens < p.min_tokens) {
    for (int32_t id : min_tokens_stop_ids) {
      if (id >= 0 && id < vocab) logits[id] = kBanned;
    }
  }
}

TokenLogprobs Logprobs(const float* logits, int vocab, int32_t token, int top) {
  float max_logit = logits[0];
  for (int i = 1; i < vocab; ++i) max_logit = std::max(max_logit, logits[i]);
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max_logit));
  const float log_z = max_logit + static_cast<float>(std::log(sum));
  TokenLogprobs out;
  out.logprob = logits[token] - log_z;
  out.rank = 1;
  for (int i = 0; i < vocab; ++i) out.rank += logits[i] > logits[token];
  if (top > 0) {
    std::vector<int32_t> ids(vocab);
    for (int i = 0; i < vocab; ++i) ids[i] = i;
    const int k = std::min(top, vocab);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    });
    for (int i = 0; i < k; ++i) out.top.emplace_back(ids[i], logits[ids[i]] - log_z);
  }
  return out;
}

}  // namespace sluice
