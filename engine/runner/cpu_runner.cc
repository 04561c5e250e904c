#include "engine/runner/cpu_runner.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace sluice {

CpuRunner::CpuRunner(std::shared_ptr<CpuModel> model, int num_blocks, int block_size)
    : model_(std::move(model)), cache_(model_->config(), num_blocks, block_size) {}

void CpuRunner::ApplyDeltas(const SchedulerOutput& output) {
  for (RequestId id : output.finished_ids) seqs_.erase(id);
  for (RequestId id : output.preempted_ids) seqs_.erase(id);
  for (const NewRequestData& n : output.new_requests) {
    Seq& s = seqs_[n.id];
    s.token_ids = n.token_ids;
    s.block_ids = n.block_ids;
    s.num_computed_tokens = n.num_computed_tokens;
    s.num_output_tokens = n.num_output_tokens;
    s.sampling.temperature = n.sampling.temperature;
    s.sampling.top_k = n.sampling.top_k;
    s.sampling.top_p = n.sampling.top_p;
    s.sampling.min_p = n.sampling.min_p;
    s.sampling.seed = n.seed;
    s.params = n.sampling;
  }
  for (const CachedRequestData& c : output.cached_requests) {
    Seq& s = seqs_.at(c.id);
    s.block_ids.insert(s.block_ids.end(), c.new_block_ids.begin(), c.new_block_ids.end());
  }
}

absl::StatusOr<ForwardBatch> CpuRunner::BuildBatch(const SchedulerOutput& output) {
  const int bs = block_size();
  ForwardBatch b;
  b.cu_seqlens_q.push_back(0);
  for (const ScheduledTokens& st : output.scheduled) {
    auto it = seqs_.find(st.id);
    if (it == seqs_.end()) {
      return absl::InternalError(absl::StrCat("runner has no state for request ", st.id));
    }
    const Seq& s = it->second;
    b.max_blocks_per_seq = std::max(b.max_blocks_per_seq, static_cast<int>(s.block_ids.size()));
  }
  for (const ScheduledTokens& st : output.scheduled) {
    const Seq& s = seqs_.at(st.id);
    for (int i = 0; i < st.num_tokens; ++i) {
      const int pos = s.num_computed_tokens + i;
      b.input_ids.push_back(s.token_ids[pos]);
      b.positions.push_back(pos);
      b.slot_mapping.push_back(int64_t{s.block_ids[pos / bs]} * bs + pos % bs);
    }
    b.cu_seqlens_q.push_back(b.num_tokens());
    b.seq_lens.push_back(s.num_computed_tokens + st.num_tokens);
    std::vector<int32_t> row(s.block_ids);
    row.resize(b.max_blocks_per_seq, s.block_ids.empty() ? 0 : s.block_ids.front());
    b.block_tables.insert(b.block_tables.end(), row.begin(), row.end());
    if (st.samples) b.logits_rows.push_back(b.num_tokens() - 1);
  }
  return b;
}

void CpuRunner::ApplyPenalties(const Seq& s, float* logits, int vocab) {
  const SamplingParams& p = s.params;
  if (p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f && p.frequency_penalty == 0.0f) {
    return;
  }
  const int first_output = static_cast<int>(s.token_ids.size()) - s.num_output_tokens;
  absl::flat_hash_map<int32_t, int> output_counts;
  absl::flat_hash_map<int32_t, bool> seen;
  for (int i = 0; i < static_cast<int>(s.token_ids.size()); ++i) {
    const int32_t t = s.token_ids[i];
    if (t < 0 || t >= vocab) continue;
    seen[t] = true;
    if (i >= first_output) ++output_counts[t];
  }
  if (p.repetition_penalty != 1.0f) {
    for (const auto& [t, unused] : seen) {
      logits[t] = logits[t] > 0 ? logits[t] / p.repetition_penalty : logits[t] * p.repetition_penalty;
    }
  }
  for (const auto& [t, count] : output_counts) {
    logits[t] -= p.frequency_penalty * static_cast<float>(count) + p.presence_penalty;
  }
}

TokenLogprobs CpuRunner::Logprobs(const float* logits, int vocab, int32_t token, int top) {
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

absl::StatusOr<StepResult> CpuRunner::Execute(const SchedulerOutput& output) {
  ApplyDeltas(output);
  SLUICE_ASSIGN_OR_RETURN(ForwardBatch batch, BuildBatch(output));
  SLUICE_RETURN_IF_ERROR(model_->Forward(batch, cache_, logits_));
  const int vocab = model_->config().vocab_size;
  StepResult result;
  size_t row = 0;
  for (const ScheduledTokens& st : output.scheduled) {
    Seq& s = seqs_.at(st.id);
    s.num_computed_tokens += st.num_tokens;
    if (!st.samples) continue;
    float* logits = logits_.data() + row * vocab;
    ++row;
    // Logprobs are reported for the model's own distribution, before penalties.
    const bool want_logprobs = s.params.logprobs >= 0;
    std::vector<float> raw;
    if (want_logprobs) raw.assign(logits, logits + vocab);
    ApplyPenalties(s, logits, vocab);
    kernels::SamplingRow sampling = s.sampling;
    sampling.offset = static_cast<uint64_t>(s.num_output_tokens);
    int32_t id = 0;
    const kernels::Status k = kernels::cpu::Sample(&id, logits, &sampling, 1, vocab);
    if (!k.ok()) return absl::InternalError(k.message());
    s.token_ids.push_back(id);
    ++s.num_output_tokens;
    result.sampled.push_back(id);
    result.logprobs.push_back(want_logprobs ? Logprobs(raw.data(), vocab, id, s.params.logprobs)
                                            : TokenLogprobs{});
  }
  return result;
}

}  // namespace sluice
