// Speculative decoding's proposers: from a sequence's tokens so far, up to K draft tokens
// that the target model verifies in one step (verify.h). A proposer that has no guess
// proposes nothing, and the sequence decodes one token as usual. Implementations: n-gram
// prompt lookup here; a draft model and EAGLE-style heads fit the same interface (their
// proposals come with draft probabilities for the rejection sampler).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace sluice {

class Proposer {
 public:
  virtual ~Proposer() = default;
  // Up to `k` tokens to follow `tokens` (prompt, then output so far).
  virtual std::vector<int32_t> Propose(std::span<const int32_t> tokens, int k) = 0;
};

// Prompt lookup: the last n tokens, for n from max_n down to min_n, looked up in the
// earlier tokens; at the most recent earlier occurrence of the longest n that occurs, the
// k tokens that followed it are the proposal. Code edits and retrieval answers repeat
// their context, which is where these hit. Costs O(len x max_n) per call.
class NgramProposer : public Proposer {
 public:
  // REQUIRES: 1 <= min_n <= max_n.
  NgramProposer(int min_n, int max_n) : min_n_(min_n), max_n_(max_n) {}
  std::vector<int32_t> Propose(std::span<const int32_t> tokens, int k) override;

 private:
  const int min_n_, max_n_;
};

}  // namespace sluice
