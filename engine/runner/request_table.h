// What a runner keeps of each running request (tokens, block table, sampling state),
// updated from the scheduler's deltas, and the flattened batch of one step built from it.
// Shared by the CPU and CUDA runners. Thread safety: none; the engine thread owns it.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/grammar/matcher.h"
#include "engine/model/cpu_model.h"
#include "engine/sched/scheduler.h"
#include "sluice/kernels/sampling.h"

namespace sluice {

class RequestTable {
 public:
  struct Seq {
    std::vector<int32_t> token_ids;
    std::vector<int32_t> block_ids;
    int num_computed_tokens = 0;
    int num_output_tokens = 0;
    kernels::SamplingRow sampling;             // offset set per step by SamplingFor
    SamplingParams params;                     // penalties and logprobs
    std::vector<int32_t> min_tokens_stop_ids;  // NewRequestData::min_tokens_stop_ids
    int num_prompt_tokens = 0;
    bool scores_prompt = false;  // NewRequestData::scores_prompt
    // With a constraint: the grammar's state after the output so far.
    std::shared_ptr<grammar::Matcher> matcher;
  };

  // The rows of a step's batch whose logits score prompt tokens (prompt_logprobs): the
  // row of position p scores prompt token p + 1.
  struct PromptScoreRows {
    std::vector<int32_t> rows;     // token rows of the batch
    std::vector<int32_t> entries;  // the scheduled entry of each row
    std::vector<int32_t> targets;  // the token each row scores
    std::vector<int> top;          // alternatives to report for each row
    bool empty() const { return rows.empty(); }
  };

  explicit RequestTable(int block_size) : block_size_(block_size) {}

  // Applies the step's deltas: finished and preempted requests leave, new ones arrive,
  // running ones gain blocks.
  void Apply(const SchedulerOutput& output);

  // The step's batch in scheduling order. Block-table rows are padded to the longest.
  absl::StatusOr<ForwardBatch> Build(const SchedulerOutput& output) const;

  // The rows of `output`'s batch (as Build lays it out) that score prompt tokens. Call
  // before Advance.
  PromptScoreRows PromptRows(const SchedulerOutput& output) const;

  // StepResult::prompt_logprobs from the scores of `rows` (from row-major `logits`,
  // [rows.rows.size(), vocab]), for a step of `num_entries` scheduled entries.
  static std::vector<std::vector<TokenLogprobs>> ScorePrompts(const PromptScoreRows& rows,
                                                              const float* logits, int vocab,
                                                              size_t num_entries);

  // The entries of `output` that sample, in order (Advance returns the same).
  std::vector<Seq*> SamplingSeqs(const SchedulerOutput& output);

  // After the step ran: computed tokens advance. Returns the entries that sample, in order.
  std::vector<Seq*> Advance(const SchedulerOutput& output);

  // The sampling row of `s` for its next token.
  static kernels::SamplingRow SamplingFor(const Seq& s);

  // The host's part of sampling `s`'s next token from `logits` [vocab] (changed in place):
  // its logprobs under the model's own distribution (before any adjustment) when it asks
  // for them, then the adjustments (AdjustLogits) and the seeded draw into *id. With
  // `draw` false, *id holds a draw made elsewhere (on the device), redrawn only when an
  // adjustment changes the distribution.
  // With a constraint, `mask` (StepMasks) holds the tokens its grammar allows: the
  // others are masked first, so the logprobs are of the masked distribution.
  static absl::StatusOr<TokenLogprobs> SampleOnHost(Seq& s, float* logits, int vocab,
                                                    const uint32_t* mask, bool draw, int32_t* id);

  // Advances `s`'s grammar, if it has one, on its sampled token `id`; *grammar_done says
  // whether the grammar admits anything but the end after it.
  static absl::Status AdvanceGrammar(Seq& s, int32_t id, bool* grammar_done);

  // Appends the sampled token to `s`.
  static void Append(Seq& s, int32_t id);

  // Samples the tokens of sampling entry `st` (after Advance) from its rows of `logits`
  // ([1 + st.draft_ids.size(), vocab], changed in place), into `result` (sampled,
  // logprobs, grammar_done and num_sampled): the token after the known ones, and while
  // it equals the draft at its position, the token after that draft. Each is drawn as
  // plain decoding would draw it (same seed and offset, penalties over the tokens before
  // it, the grammar's mask after them), so the tokens are the same with drafts or
  // without, greedy or sampled, up to the rounding a change of batch shape brings (as
  // batching itself does). A deterministic proposer's drafts are so accepted with the
  // target's probability of them, the rejection sampler's rule for a one-hot draft
  // distribution. `mask` is the step's mask for the first token.
  static absl::Status SampleEntry(Seq& s, const ScheduledTokens& st, float* logits, int vocab,
                                  const uint32_t* mask, StepResult* result);

  // Requests held.
  size_t size() const { return seqs_.size(); }

 private:
  int block_size_;
  absl::flat_hash_map<RequestId, Seq> seqs_;
};

}  // namespace sluice
