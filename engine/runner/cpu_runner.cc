#include "engine/runner/cpu_runner.h"

#include <algorithm>

#include "absl/status/status.h"
#include "common/status_macros.h"

namespace sluice {

CpuRunner::CpuRunner(std::shared_ptr<CpuModel> model, int num_blocks, int block_size)
    : CpuRunner(std::make_unique<CpuModelGroup>(std::move(model), num_blocks, block_size)) {}

CpuRunner::CpuRunner(std::unique_ptr<CpuModelGroup> group)
    : group_(std::move(group)), table_(group_->cache_shape().block_size) {}

void CpuRunner::ReserveStepBuffers(int max_num_batched_tokens, int max_num_seqs) {
  // A step samples at most one row per running sequence.
  group_->ReserveScratch(max_num_batched_tokens, max_num_seqs);
  logits_.assign(static_cast<size_t>(std::max(max_num_seqs, 0)) * group_->config().vocab_size,
                 0.0f);
}

MemoryUsage CpuRunner::memory() const {
  MemoryUsage m;
  m.weights = group_->weight_bytes();
  m.kv_cache = group_->kv_bytes();
  m.activations = group_->scratch_bytes() + static_cast<int64_t>(logits_.capacity()) * 4;
  return m;
}

int64_t CpuRunner::kv_bytes_per_block() const {
  return group_->kv_bytes() / std::max(group_->cache_shape().num_blocks, 1);
}

absl::StatusOr<StepResult> CpuRunner::Execute(const SchedulerOutput& output) {
  table_.Apply(output);
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
  size_t row = 0;
  for (RequestTable::Seq* s : table_.Advance(output)) {
    float* logits = logits_.data() + row * vocab;
    const uint32_t* mask = masks_.row(row);
    ++row;
    int32_t id = 0;
    bool grammar_done = false;
    SLUICE_ASSIGN_OR_RETURN(TokenLogprobs logprobs,
                            RequestTable::SampleOnHost(*s, logits, vocab, mask, true, &id));
    SLUICE_RETURN_IF_ERROR(RequestTable::AdvanceGrammar(*s, id, &grammar_done));
    RequestTable::Append(*s, id);
    result.sampled.push_back(id);
    result.logprobs.push_back(std::move(logprobs));
    result.grammar_done.push_back(grammar_done);
  }
  return result;
}

}  // namespace sluice
