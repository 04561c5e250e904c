// Speculative decoding's proposers: from a sequence's tokens so far, up to k draft tokens
// that the target model verifies in one step (the runner keeps those its own sampling
// agrees with). A proposer that has no guess proposes nothing, and the sequence decodes
// one token as usual. Implementations: n-gram prompt lookup here, a draft model in
// draft_model_proposer.h; EAGLE-style heads (which read the target's hidden states) fit
// the same interface once the runner hands those over.
// Thread safety: none; the engine thread owns a proposer.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"

namespace sluice {

using RequestId = uint64_t;

// One request to propose for: its tokens (prompt, then output so far) and how many
// drafts it may take.
struct DraftRequest {
  RequestId id = 0;
  std::span<const int32_t> tokens;
  int k = 0;
};

class Proposer {
 public:
  virtual ~Proposer() = default;
  // (*drafts)[i]: up to requests[i].k tokens to follow requests[i].tokens.
  virtual absl::Status Propose(std::span<const DraftRequest> requests,
                               std::vector<std::vector<int32_t>>* drafts) = 0;
  // The request left the runner (finished or preempted): what the proposer keeps of it
  // goes.
  virtual void Forget(RequestId /*id*/) {}
  // Host memory the proposer holds (a draft model's weights and KV cache).
  virtual int64_t weight_bytes() const { return 0; }
  virtual int64_t kv_bytes() const { return 0; }
};

// Prompt lookup: the last n tokens, for n from max_n down to min_n, looked up in the
// earlier tokens; at the most recent earlier occurrence of the longest n that occurs, the
// k tokens that followed it are the proposal. Code edits and retrieval answers repeat
// their context, which is where these hit. Costs O(len x max_n) per call.
class NgramProposer : public Proposer {
 public:
  // REQUIRES: 1 <= min_n <= max_n.
  NgramProposer(int min_n, int max_n) : min_n_(min_n), max_n_(max_n) {}
  absl::Status Propose(std::span<const DraftRequest> requests,
                       std::vector<std::vector<int32_t>>* drafts) override;
  // One sequence's proposal.
  std::vector<int32_t> Lookup(std::span<const int32_t> tokens, int k) const;

 private:
  const int min_n_, max_n_;
};

}  // namespace sluice
