#include "engine/runner/request_table.h"

#include <algorithm>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/runner/host_sampling.h"
#include "engine/runner/step_masks.h"

namespace sluice {

SchedulerOutput RetirementOf(const SchedulerOutput& output) {
  SchedulerOutput r;
  r.finished_ids = output.finished_ids;
  r.preempted_ids = output.preempted_ids;
  return r;
}

void RequestTable::Apply(const SchedulerOutput& output) {
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
    s.min_tokens_stop_ids = n.min_tokens_stop_ids;
    s.num_prompt_tokens = static_cast<int>(n.token_ids.size()) - n.num_output_tokens;
    s.scores_prompt = n.scores_prompt;
    s.matcher.reset();
    if (n.sampling.constraint) {
      // After a preemption the grammar replays the output it had accepted.
      const OutputConstraint& c = *n.sampling.constraint;
      s.matcher = c.automaton ? std::make_shared<grammar::Matcher>(c.automaton)
                              : std::make_shared<grammar::Matcher>(c.grammar, c.vocab);
      for (size_t i = static_cast<size_t>(s.num_prompt_tokens); i < n.token_ids.size(); ++i) {
        s.matcher->AcceptToken(n.token_ids[i]);
      }
    }
  }
  for (const CachedRequestData& c : output.cached_requests) {
    Seq& s = seqs_.at(c.id);
    s.block_ids.insert(s.block_ids.end(), c.new_block_ids.begin(), c.new_block_ids.end());
  }
}

absl::StatusOr<ForwardBatch> RequestTable::Build(const SchedulerOutput& output) const {
  const int bs = block_size_;
  ForwardBatch b;
  b.cu_seqlens_q.push_back(0);
  for (const ScheduledTokens& st : output.scheduled) {
    auto it = seqs_.find(st.id);
    if (it == seqs_.end()) {
      return absl::InternalError(absl::StrCat("runner has no state for request ", st.id));
    }
    b.max_blocks_per_seq =
        std::max(b.max_blocks_per_seq, static_cast<int>(it->second.block_ids.size()));
  }
  for (const ScheduledTokens& st : output.scheduled) {
    const Seq& s = seqs_.at(st.id);
    const int known = static_cast<int>(s.token_ids.size());
    const int drafts = static_cast<int>(st.draft_ids.size());
    if (s.num_computed_tokens + st.num_tokens - drafts > known) {
      return absl::InternalError(
          absl::StrCat("request ", st.id, " has ", known, " tokens, and a step past them"));
    }
    for (int i = 0; i < st.num_tokens; ++i) {
      const int pos = s.num_computed_tokens + i;
      b.input_ids.push_back(pos < known ? s.token_ids[pos] : st.draft_ids[pos - known]);
      b.positions.push_back(pos);
      b.slot_mapping.push_back(int64_t{s.block_ids[pos / bs]} * bs + pos % bs);
    }
    b.cu_seqlens_q.push_back(b.num_tokens());
    b.seq_lens.push_back(s.num_computed_tokens + st.num_tokens);
    std::vector<int32_t> row(s.block_ids);
    row.resize(b.max_blocks_per_seq, s.block_ids.empty() ? 0 : s.block_ids.front());
    b.block_tables.insert(b.block_tables.end(), row.begin(), row.end());
    // A sampling entry's rows: its last known token's, then each draft's.
    if (st.samples) {
      for (int d = drafts; d >= 0; --d) b.logits_rows.push_back(b.num_tokens() - 1 - d);
    }
  }
  return b;
}

RequestTable::PromptScoreRows RequestTable::PromptRows(const SchedulerOutput& output) const {
  PromptScoreRows out;
  int row = 0;  // the entry's first row in the batch
  for (size_t e = 0; e < output.scheduled.size(); ++e) {
    const ScheduledTokens& st = output.scheduled[e];
    const Seq& s = seqs_.at(st.id);
    if (s.scores_prompt) {
      const int c = s.num_computed_tokens;
      const int k = NumPromptScores(c, st.num_tokens, s.num_prompt_tokens);
      for (int i = 0; i < k; ++i) {
        out.rows.push_back(row + i);
        out.entries.push_back(static_cast<int32_t>(e));
        out.targets.push_back(s.token_ids[static_cast<size_t>(c + i + 1)]);
        out.top.push_back(s.params.prompt_logprobs);
      }
    }
    row += st.num_tokens;
  }
  return out;
}

std::vector<std::vector<TokenLogprobs>> RequestTable::ScorePrompts(const PromptScoreRows& rows,
                                                                   const float* logits, int vocab,
                                                                   size_t num_entries) {
  std::vector<std::vector<TokenLogprobs>> scores(num_entries);
  for (size_t i = 0; i < rows.rows.size(); ++i) {
    scores[static_cast<size_t>(rows.entries[i])].push_back(
        Logprobs(logits + i * static_cast<size_t>(vocab), vocab, rows.targets[i], rows.top[i]));
  }
  return scores;
}

std::vector<RequestTable::Seq*> RequestTable::SamplingSeqs(const SchedulerOutput& output) {
  std::vector<Seq*> sampling;
  for (const ScheduledTokens& st : output.scheduled) {
    if (st.samples) sampling.push_back(&seqs_.at(st.id));
  }
  return sampling;
}

std::vector<RequestTable::Seq*> RequestTable::Advance(const SchedulerOutput& output) {
  std::vector<Seq*> sampling;
  for (const ScheduledTokens& st : output.scheduled) {
    Seq& s = seqs_.at(st.id);
    // Drafts count once kept (SampleEntry).
    s.num_computed_tokens += st.num_tokens - static_cast<int>(st.draft_ids.size());
    if (st.samples) sampling.push_back(&s);
  }
  return sampling;
}

absl::Status RequestTable::SampleEntry(Seq& s, const ScheduledTokens& st, float* logits, int vocab,
                                       const uint32_t* mask, StepResult* result) {
  const size_t drafts = st.draft_ids.size();
  std::vector<uint32_t> own_mask;
  int kept = 0;
  for (size_t j = 0; j <= drafts; ++j) {
    // After a kept draft the grammar has moved on: its mask is that of the new state.
    const uint32_t* m = mask;
    if (j > 0 && s.matcher) {
      SLUICE_RETURN_IF_ERROR(StepMasks::FillOne(*s.matcher, vocab, &own_mask));
      m = own_mask.data();
    }
    int32_t id = 0;
    bool grammar_done = false;
    SLUICE_ASSIGN_OR_RETURN(
        TokenLogprobs logprobs,
        SampleOnHost(s, logits + j * static_cast<size_t>(vocab), vocab, m, true, &id));
    SLUICE_RETURN_IF_ERROR(AdvanceGrammar(s, id, &grammar_done));
    Append(s, id);
    result->sampled.push_back(id);
    result->logprobs.push_back(std::move(logprobs));
    result->grammar_done.push_back(grammar_done);
    ++kept;
    // The draft at this position is kept when the sampler drew it: its KV is then right.
    if (j == drafts || id != st.draft_ids[j] || grammar_done) break;
    ++s.num_computed_tokens;
  }
  result->num_sampled.push_back(kept);
  return absl::OkStatus();
}

kernels::SamplingRow RequestTable::SamplingFor(const Seq& s) {
  kernels::SamplingRow row = s.sampling;
  row.offset = static_cast<uint64_t>(s.num_output_tokens);
  return row;
}

absl::StatusOr<TokenLogprobs> RequestTable::SampleOnHost(Seq& s, float* logits, int vocab,
                                                         const uint32_t* mask, bool draw,
                                                         int32_t* id) {
  if (mask != nullptr) {
    kernels::SamplingRow row;
    row.mask_row = 0;
    const kernels::Status k = kernels::cpu::ApplyTokenBitmask(logits, mask, &row, 1, vocab);
    if (!k.ok()) return absl::InternalError(k.message());
  }
  const bool want_logprobs = s.params.logprobs >= 0;
  std::vector<float> raw;
  if (want_logprobs) raw.assign(logits, logits + vocab);
  if (draw || AdjustsLogits(s.params)) {
    AdjustLogits(s.params, s.token_ids, s.num_output_tokens, s.min_tokens_stop_ids, logits, vocab);
    const kernels::SamplingRow row = SamplingFor(s);
    const kernels::Status k = kernels::cpu::Sample(id, logits, &row, 1, vocab);
    if (!k.ok()) return absl::InternalError(k.message());
  }
  return want_logprobs ? Logprobs(raw.data(), vocab, *id, s.params.logprobs) : TokenLogprobs{};
}

absl::Status RequestTable::AdvanceGrammar(Seq& s, int32_t id, bool* grammar_done) {
  *grammar_done = false;
  if (!s.matcher) return absl::OkStatus();
  if (!s.matcher->AcceptToken(id)) {
    return absl::InternalError(absl::StrCat("the grammar refused sampled token ", id));
  }
  *grammar_done = s.matcher->Terminated() || s.matcher->OnlyEndAllowed();
  return absl::OkStatus();
}

void RequestTable::Append(Seq& s, int32_t id) {
  s.token_ids.push_back(id);
  ++s.num_output_tokens;
}

}  // namespace sluice
