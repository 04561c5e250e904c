#include <algorithm>

#include "engine/spec/proposer.h"

namespace sluice {

std::vector<int32_t> NgramProposer::Lookup(std::span<const int32_t> tokens, int k) const {
  const int len = static_cast<int>(tokens.size());
  if (k <= 0) return {};
  for (int n = std::min(max_n_, len - 1); n >= min_n_; --n) {
    const std::span<const int32_t> suffix = tokens.subspan(len - n);
    // Earlier occurrences end before the suffix itself starts: start s + n <= len - 1, so
    // that at least one token follows the match. Most recent first.
    for (int s = len - n - 1; s >= 0; --s) {
      if (!std::equal(suffix.begin(), suffix.end(), tokens.begin() + s)) continue;
      const int from = s + n, to = std::min(len, from + k);
      return std::vector<int32_t>(tokens.begin() + from, tokens.begin() + to);
    }
  }
  return {};
}

absl::Status NgramProposer::Propose(std::span<const DraftRequest> requests,
                                    std::vector<std::vector<int32_t>>* drafts) {
  drafts->clear();
  for (const DraftRequest& r : requests) drafts->push_back(Lookup(r.tokens, r.k));
  return absl::OkStatus();
}

}  // namespace sluice
