#include "engine/runner/cpu_runner.h"

#include <algorithm>

#include "absl/status/status.h"
#include "common/status_macros.h"

namespace sluice {

CpuRunner::CpuRunner(std::shared_ptr<CpuModel> model, int num_blocks, int block_size)
    : CpuRunner(std::make_unique<CpuModelGroup>(std::move(model), num_blocks, block_size)) {}

CpuRunner::CpuRunner(std::unique_ptr<CpuModelGroup> group)
    : group_(std::move(group)), table_(group_->cache_shape().block_size) {}

void CpuRunner::ReserveStepBuffers(int max_num_batched_tokens, int max_num_seqs, int max_drafts) {
  // A step samples one row per running sequence and one per draft, within the budget.
  const int rows = std::min(std::max(max_num_seqs, 0) * (1 + std::max(max_drafts, 0)),
                            std::max(max_num_batched_tokens, max_num_seqs));
  group_->ReserveScratch(max_num_batched_tokens, rows);
  logits_.assign(static_cast<size_t>(rows) * group_->config().vocab_size, 0.0f);
}

MemoryUsage CpuRunner::memory() const {
  MemoryUsage m;
  m.weights = group_->weight_bytes() + (proposer_ ? proposer_->weight_bytes() : 0);
  m.kv_cache = group_->kv_bytes() + (proposer_ ? proposer_->kv_bytes() : 0);
  m.activations = group_->scratch_bytes() + static_cast<int64_t>(logits_.capacity()) * 4;
  return m;
}

int64_t CpuRunner::kv_bytes_per_block() const {
  return group_->kv_bytes() / std::max(group_->cache_shape().num_blocks, 1);
}

absl::StatusOr<StepResult> CpuRunner::Execute(const SchedulerOutput& output) {
  table_.Apply(output);
  if (proposer_) {
    for (RequestId id : output.finished_ids) proposer_->Forget(id);
    for (RequestId id : output.preempted_ids) proposer_->Forget(id);
  }
  if (output.scheduled.empty()) return StepResult{};  // a step that only retires requests
  SLUICE_ASSIGN_OR_RETURN(ForwardBatch batch, table_.Build(output));
  // Rows that score prompt tokens come after the sampling rows, in the same pass.
  const RequestTable::PromptScoreRows prompt_rows = table_.PromptRows(output);
  const size_t sampling_rows = batch.logits_rows.size();
  batch.logits_rows.insert(batch.logits_rows.end(), prompt_rows.rows.begin(),
                           prompt_rows.rows.end());
  const int vocab = group_->config().vocab_size;
  // The grammars' masks fill on the worker thread while the forward pass runs here.
  masks_.Plan(table_.SamplingSeqs(output), vocab);
  masks_.Fill(/*async=*/true);
  const absl::Status forward = group_->Forward(batch, logits_);
  const absl::Status masked = masks_.Wait();
  SLUICE_RETURN_IF_ERROR(forward);
  SLUICE_RETURN_IF_ERROR(masked);
  StepResult result;
  if (!prompt_rows.empty()) {
    result.prompt_logprobs = RequestTable::ScorePrompts(
        prompt_rows, logits_.data() + sampling_rows * vocab, vocab, output.scheduled.size());
  }
  const std::vector<RequestTable::Seq*> seqs = table_.Advance(output);
  std::vector<const ScheduledTokens*> entries;
  for (const ScheduledTokens& st : output.scheduled) {
    if (st.samples) entries.push_back(&st);
  }
  size_t row = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    SLUICE_RETURN_IF_ERROR(RequestTable::SampleEntry(
        *seqs[i], *entries[i], logits_.data() + row * vocab, vocab, masks_.row(i), &result));
    row += 1 + entries[i]->draft_ids.size();
  }
  if (proposer_) {
    std::vector<DraftRequest> asks;
    std::vector<size_t> asked;
    for (size_t i = 0; i < seqs.size(); ++i) {
      if (entries[i]->propose <= 0) continue;
      asks.push_back({entries[i]->id, seqs[i]->token_ids, entries[i]->propose});
      asked.push_back(i);
    }
    if (!asks.empty()) {
      std::vector<std::vector<int32_t>> drafts;
      SLUICE_RETURN_IF_ERROR(proposer_->Propose(asks, &drafts));
      result.drafts.assign(seqs.size(), {});
      for (size_t a = 0; a < asked.size(); ++a) result.drafts[asked[a]] = std::move(drafts[a]);
    }
  }
  return result;
}

}  // namespace sluice
