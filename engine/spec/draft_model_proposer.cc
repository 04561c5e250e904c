#include "engine/spec/draft_model_proposer.h"

#include <algorithm>

#include "common/status_macros.h"

namespace sluice {

namespace {

// The lowest id among the largest logits (the sampler's greedy rule).
int32_t Argmax(const float* logits, int vocab) {
  return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
}

}  // namespace

DraftModelProposer::DraftModelProposer(std::unique_ptr<CpuModelGroup> draft)
    : draft_(std::move(draft)) {
  const int n = draft_->cache_shape().num_blocks;
  free_.reserve(static_cast<size_t>(n));
  for (int b = n - 1; b >= 0; --b) free_.push_back(b);
}

void DraftModelProposer::Forget(RequestId id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  free_.insert(free_.end(), it->second.blocks.rbegin(), it->second.blocks.rend());
  seqs_.erase(it);
}

bool DraftModelProposer::Grow(Seq& s, int tokens) {
  const int bs = draft_->cache_shape().block_size;
  const size_t want = static_cast<size_t>((tokens + bs - 1) / bs);
  if (want <= s.blocks.size()) return true;
  if (want - s.blocks.size() > free_.size()) return false;
  while (s.blocks.size() < want) {
    s.blocks.push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

absl::Status DraftModelProposer::Propose(std::span<const DraftRequest> requests,
                                         std::vector<std::vector<int32_t>>* drafts) {
  drafts->assign(requests.size(), {});
  const int bs = draft_->cache_shape().block_size;
  const int vocab = draft_->config().vocab_size;
  // Who drafts this step, and from which position each catches up.
  std::vector<size_t> active;
  std::vector<int> from, ks;
  const int max_positions = draft_->config().max_position_embeddings;
  for (size_t i = 0; i < requests.size(); ++i) {
    const DraftRequest& r = requests[i];
    const int len = static_cast<int>(r.tokens.size());
    // Positions up to len + k - 2 are written: none past the draft's context.
    const int k = std::min(r.k, max_positions - len + 1);
    if (k <= 0 || len == 0) continue;
    Seq& s = seqs_[r.id];
    // What the cache holds up to the first token where the draft's guesses and the
    // request part; the last token is always recomputed, for its logits.
    const size_t same = static_cast<size_t>(
        std::mismatch(s.fed.begin(), s.fed.end(), r.tokens.begin(), r.tokens.end()).first -
        s.fed.begin());
    const int valid = std::min(static_cast<int>(same), len - 1);
    // The positions written: the tokens from `valid`, then the first k - 1 drafts.
    if (!Grow(s, len + k - 1)) continue;
    s.fed.assign(r.tokens.begin(), r.tokens.end());
    active.push_back(i);
    from.push_back(valid);
    ks.push_back(k);
  }
  if (active.empty()) return absl::OkStatus();
  // Pass j feeds each request's tokens not yet computed (j = 0), then its draft j.
  const int max_k = *std::max_element(ks.begin(), ks.end());
  for (int j = 0; j < max_k; ++j) {
    ForwardBatch b;
    b.cu_seqlens_q.push_back(0);
    std::vector<size_t> rows;
    for (size_t a = 0; a < active.size(); ++a) {
      if (ks[a] > j) {
        b.max_blocks_per_seq = std::max(
            b.max_blocks_per_seq, static_cast<int>(seqs_.at(requests[active[a]].id).blocks.size()));
      }
    }
    for (size_t a = 0; a < active.size(); ++a) {
      const DraftRequest& r = requests[active[a]];
      if (ks[a] <= j) continue;
      Seq& s = seqs_.at(r.id);
      const int len = static_cast<int>(r.tokens.size());
      const int begin = j == 0 ? from[a] : len + j - 1;
      const int end = len + j;  // positions [begin, end)
      for (int pos = begin; pos < end; ++pos) {
        b.input_ids.push_back(s.fed[static_cast<size_t>(pos)]);
        b.positions.push_back(pos);
        b.slot_mapping.push_back(int64_t{s.blocks[static_cast<size_t>(pos / bs)]} * bs + pos % bs);
      }
      b.cu_seqlens_q.push_back(b.num_tokens());
      b.seq_lens.push_back(end);
      std::vector<int32_t> row(s.blocks);
      row.resize(static_cast<size_t>(b.max_blocks_per_seq), s.blocks.front());
      b.block_tables.insert(b.block_tables.end(), row.begin(), row.end());
      b.logits_rows.push_back(b.num_tokens() - 1);
      rows.push_back(a);
    }
    SLUICE_RETURN_IF_ERROR(draft_->Forward(b, logits_));
    for (size_t row = 0; row < rows.size(); ++row) {
      const size_t a = rows[row], i = active[a];
      const int32_t id = Argmax(logits_.data() + row * static_cast<size_t>(vocab), vocab);
      (*drafts)[i].push_back(id);
      // The draft's own guess is fed next (its KV is written by the next pass).
      if (j + 1 < ks[a]) seqs_.at(requests[i].id).fed.push_back(id);
    }
  }
  return absl::OkStatus();
}

}  // namespace sluice
