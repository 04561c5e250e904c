#include "engine/runner/host_sampling.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"

namespace sluice {

bool HasPenalties(const SamplingParams& p) {
  return p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
}

void ApplyPenalties(const SamplingParams& p, const std::vector<int32_t>& tokens,
                    int num_output_tokens, float* logits, int vocab) {
  if (!HasPenalties(p)) return;
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

TokenLogprobs Logprobs(const float* logits, int vocab, int32_t token, int top) {
  float max_logit = logits[0];
  for (int i = 1; i < vocab; ++i) max_logit = std::max(max_logit, logits[i]);
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max_logit));
  const float log_z = max_logit + static_cast<float>(std::log(sum));
  TokenLogprobs out;
  out.logprob = logits[token] - log_z;
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
