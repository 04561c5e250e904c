// A draft model proposes: a smaller model of the same vocabulary decodes greedily k
// tokens ahead of each request, from a KV cache of its own (its own block pool, never the
// target's: the scheduler's blocks and the prefix cache know nothing of it). What the
// draft computed for a request stays in its cache from one step to the next; a step
// catches up on the tokens it has not seen (the prompt on the first proposal, then the
// target's kept tokens) and recomputes from the first token where its guesses and the
// request's tokens part. A request the pool cannot hold gets no drafts.
// Thread safety: none; the engine thread owns it.
#pragma once

#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/model/cpu_model_group.h"
#include "engine/spec/proposer.h"

namespace sluice {

class DraftModelProposer : public Proposer {
 public:
  // `draft`'s cache holds every request's draft KV (its blocks are handed out here).
  explicit DraftModelProposer(std::unique_ptr<CpuModelGroup> draft);

  absl::Status Propose(std::span<const DraftRequest> requests,
                       std::vector<std::vector<int32_t>>* drafts) override;
  void Forget(RequestId id) override;
  int64_t weight_bytes() const override { return draft_->weight_bytes(); }
  int64_t kv_bytes() const override { return draft_->kv_bytes(); }

  // Requests with draft KV, and blocks free (for tests).
  size_t num_requests() const { return seqs_.size(); }
  size_t num_free_blocks() const { return free_.size(); }

 private:
  struct Seq {
    std::vector<int32_t> fed;  // tokens whose KV the draft cache holds, by position
    std::vector<int32_t> blocks;
  };
  // Gives `s` blocks for `tokens` positions; false (changing nothing) when the pool is short.
  bool Grow(Seq& s, int tokens);

  std::unique_ptr<CpuModelGroup> draft_;
  absl::flat_hash_map<RequestId, Seq> seqs_;
  std::vector<int32_t> free_;
  std::vector<float> logits_;
};

}  // namespace sluice
