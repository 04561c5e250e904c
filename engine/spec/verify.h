// Verification of draft tokens against the target model's distributions at the K + 1
// positions a speculative step scores (after the sequence, and after each draft), so that
// the tokens emitted are distributed exactly as plain decoding's:
//   - greedy: drafts are kept while each equals the target's argmax (lowest id on ties,
//     as the sampler), then the target's own token at the first miss, or after the last
//     draft (the bonus token): 1 to K + 1 tokens a step, identical to plain greedy;
//   - sampling: the standard rejection sampler. Draft i is accepted with probability
//     min(1, p_i(d) / q_i(d)); at the first rejection the token is drawn from the residual
//     max(0, p_i - q_i) renormalised; when all K are accepted, a bonus token is drawn from
//     p_K. A deterministic proposer (n-gram) has q_i one-hot at its draft: acceptance
//     with probability p_i(d), the residual is p_i without d.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace sluice {

struct Verified {
  std::vector<int32_t> tokens;  // the accepted drafts, then the correction or bonus token
  int accepted = 0;             // drafts accepted (tokens.size() - 1)
};

// target_logits: [drafts.size() + 1, vocab].
Verified VerifyGreedy(std::span<const int32_t> drafts, const float* target_logits, int vocab);

// target_probs: [K + 1, vocab], the distributions the sampler draws from (temperature,
// top-k/p, min-p and any grammar mask applied); draft_probs: [K, vocab], or nullptr for a
// deterministic proposer; uniform(): draws in [0, 1), at most 2 K + 1 of them a call.
Verified VerifySampled(std::span<const int32_t> drafts, const float* target_probs,
                       const float* draft_probs, int vocab, const std::function<float()>& uniform);

}  // namespace sluice
