// Continuous batching at iteration level. Each step spends a token budget on running
// requests first (decodes and unfinished prefill chunks, in admission order), then on
// waiting requests by (priority, arrival), chunking long prompts. When blocks run out it
// preempts the newest running request by recompute. Its output carries only what
// changed since the last step; block ids are the only vocabulary shared with the runner.
//
// Speculative decoding: the runner proposes drafts after a request's step when the
// output asks it to (ScheduledTokens::propose), and they come back in its StepResult.
// The next step schedules the request's last token and its drafts together (they count
// against the token budget and get KV slots); the runner verifies them and returns the
// tokens it kept, 1 to drafts + 1. The slots of rejected drafts stay with the request
// and are overwritten by its next tokens; only accepted tokens enter full blocks and so
// the prefix cache.
//
// How many drafts a request gets is a cost decision, made each step: a step of n tokens
// takes about t(n) = base + per_token x n (fitted over recent steps, ObserveStep): the
// n running requests' plain step yields n / t(n) tokens a second, and one more position
// costs per_token for alpha^j expected tokens, so draft j of a request is worth it when
// alpha^j > per_token x n / t(n) (alpha: the request's recent rate of kept drafts,
// shrunk towards the engine-wide rate, less one standard error). Steps that carry
// prefill chunks are left out of the fit. While decoding is bound by reading the
// weights (small batches) drafts are almost free and every plausible one is verified;
// as the batch grows the bar rises towards 1 and drafts stop, with no threshold to
// tune. A request whose drafts stopped drifts back to the engine-wide rate, so it is
// tried again later.
// speculative_disable_batch_size, when set, is a hard limit on top.
// Thread safety: none; the engine thread owns it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/cache/kv_cache_manager.h"
#include "engine/sched/request.h"

namespace sluice {

// The scheduler's share of EngineConfig, with the cache's shape from the runner.
struct SchedulerConfig {
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  int max_model_len = 2048;  // context window
  int num_blocks = 1024;
  int block_size = 16;
  bool enable_prefix_caching = true;
  std::vector<int32_t> eos_token_ids;
  int num_speculative_tokens = 0;          // 0: no speculative decoding
  int speculative_disable_batch_size = 0;  // no drafts at this many running; 0: no limit
  // The step-cost model before (or without) ObserveStep: seconds of a step of n tokens,
  // step_base_s + step_per_token_s x n.
  double step_base_s = 0.010, step_per_token_s = 0.001;
};

// A request the runner has not seen (or must rebuild after preemption).
struct NewRequestData {
  RequestId id;
  std::vector<int32_t> token_ids;  // everything known so far
  std::vector<int32_t> block_ids;
  int num_computed_tokens;
  SamplingParams sampling;
  uint64_t seed;
  int num_output_tokens;  // for the sampler's per-step offset
  // Tokens the sampler must not draw before sampling.min_tokens: the end-of-sequence
  // ids (unless ignored) and the stop token ids. Empty without min_tokens.
  std::vector<int32_t> min_tokens_stop_ids;
  // The prompt's tokens still need their scores (sampling.prompt_logprobs): the runner
  // returns them for each chunk (StepResult::prompt_logprobs).
  bool scores_prompt = false;
};

// A request the runner already holds: only its new blocks.
struct CachedRequestData {
  RequestId id;
  std::vector<int32_t> new_block_ids;
  int num_computed_tokens;
};

struct ScheduledTokens {
  RequestId id;
  int num_tokens;  // with drafts: the last known token, then the drafts
  bool samples;    // the chunk reaches the end of the known tokens: a token is sampled
  // Drafts to verify after the known tokens (they are the last draft_ids.size() of the
  // num_tokens); the runner keeps those its own sampling agrees with.
  std::vector<int32_t> draft_ids = {};
  // Drafts to propose after this step's tokens (StepResult::drafts); 0: none.
  int propose = 0;
};

struct SchedulerOutput {
  std::vector<NewRequestData> new_requests;
  std::vector<CachedRequestData> cached_requests;
  std::vector<ScheduledTokens> scheduled;  // in batch order
  std::vector<RequestId> finished_ids;     // ended since the last output: the runner drops them
  std::vector<RequestId> preempted_ids;    // the runner drops them; they come back as new
  // Nothing to run. Such an output still goes to the runner when it retires requests.
  bool empty() const { return scheduled.empty(); }
  bool retires() const { return !finished_ids.empty() || !preempted_ids.empty(); }
};

// The runner's answer to one SchedulerOutput: one sampled id per scheduled entry whose
// `samples` is set, in batch order, and beside each its logprobs (empty `top` and 0 when
// not requested). Whatever else a step learns of a request travels here too.
// With prompt_logprobs, `prompt_logprobs` has one entry per scheduled entry (empty for
// the others): the scores of the prompt tokens its chunk predicts, in order (the chunk
// of positions [c, c + n) scores tokens c + 1 up to min(c + n, prompt length - 1)).
// With constraints, `grammar_done` has one entry per sampled token (or none): set when
// the request's grammar admits nothing more after it, so that it stops there.
// With drafts, an entry samples 1 to draft_ids.size() + 1 tokens (its accepted drafts,
// then the token sampled after them): `num_sampled` has the count of each sampling entry
// (or is empty: one each), and `sampled`, `logprobs` and `grammar_done` hold every token
// in order. `drafts` has, for each sampling entry (or none), the drafts proposed to
// follow its tokens, at most its `propose`.
struct StepResult {
  std::vector<int32_t> sampled;
  std::vector<TokenLogprobs> logprobs;
  std::vector<std::vector<TokenLogprobs>> prompt_logprobs;
  std::vector<uint8_t> grammar_done;
  std::vector<int32_t> num_sampled;
  std::vector<std::vector<int32_t>> drafts;
};

// Speculative decoding's counters since start.
struct SpecCounters {
  int64_t num_drafts = 0;                      // verifications: one request's drafts in one step
  int64_t num_draft_tokens = 0;                // drafts verified
  int64_t num_accepted_tokens = 0;             // drafts accepted
  std::vector<int64_t> accepted_per_position;  // [num_speculative_tokens]
};

// How many prompt tokens the chunk [start, start + num_tokens) scores.
inline int NumPromptScores(int start, int num_tokens, int num_prompt_tokens) {
  const int last = num_prompt_tokens - 1;  // the last prompt token predicts no prompt token
  return last <= start ? 0 : std::min(start + num_tokens, last) - start;
}

class Scheduler {
 public:
  explicit Scheduler(SchedulerConfig config);

  // Takes ownership of a new waiting request.
  // REQUIRES: request->num_tokens() < config.max_model_len, ids unique.
  void Add(std::unique_ptr<Request> request);

  // Removes a waiting or running request, freeing its blocks. Returns its last output
  // (abort), or nothing when the id is unknown or already finished.
  std::optional<RequestOutput> Abort(RequestId id) { return Finish(id, FinishReason::kAbort); }

  SchedulerOutput Schedule();

  // Consumes the runner's whole result for `output`: appends the sampled tokens with their
  // logprobs, runs stop checks, frees finished requests and registers full blocks. One
  // output per sampling entry (its new tokens), in batch order. Fails (changing nothing) when the
  // result does not match the output: a runner bug must not shift tokens between requests.
  absl::StatusOr<std::vector<RequestOutput>> Update(const SchedulerOutput& output,
                                                    StepResult result);

  // Ends one request with `reason` (an error or an abort); nothing when unknown.
  std::optional<RequestOutput> Finish(RequestId id, FinishReason reason);

  // Ends every running and waiting request with `reason` (at shutdown).
  std::vector<RequestOutput> FinishAll(FinishReason reason);

  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int num_running() const { return static_cast<int>(running_.size()); }
  // Requests that ended since the last Schedule: the next output tells the runner.
  bool has_unreported_finishes() const { return !finished_since_last_.empty(); }
  int64_t num_waiting_tokens() const { return waiting_tokens_; }
  // Tokens of the waiting requests after the first `skip` in scheduling order (those
  // that cannot start at the next step when `skip` running slots are free).
  int64_t WaitingTokensAfter(int skip) const;
  bool idle() const { return waiting_.empty() && running_.empty(); }
  const KvCacheManager& kv() const { return kv_; }
  const SpecCounters& spec_counters() const { return spec_; }
  // A step of `num_tokens` tokens took `seconds`: refines the step-cost model that sizes
  // drafts (recent steps weigh most).
  void ObserveStep(double seconds, int num_tokens);
  // The bar a draft's chance of being kept must clear at a batch of `num_running`.
  double DraftBar(int num_running) const;
  // The step-cost model now: seconds of a step of n tokens, base + per_token x n.
  double step_base_s() const { return step_base_s_; }
  double step_per_token_s() const { return step_per_token_s_; }
  const SchedulerConfig& config() const { return config_; }
  const Request* Find(RequestId id) const;

 private:
  void InsertWaiting(Request* r);
  void RemoveWaiting(Request* r);
  // What drafts may take at one running request: tokens of the budget, and blocks to
  // leave free (those the later running requests' tokens need).
  struct DraftRoom {
    int tokens;
    int blocks;
  };
  // Schedules running request `r` within `budget` tokens, its drafts within `room`.
  bool ScheduleRunning(Request* r, int& budget, DraftRoom room, SchedulerOutput& out);
  // The drafts of running request `r` to verify this step: at most `worth`, within
  // `spare` tokens and what the request may still emit.
  std::vector<int32_t> DraftsToVerify(Request* r, int spare, int worth) const;
  // Drafts to ask for after this step of `r`: at most `worth`, and no more than it
  // could emit after this step's token.
  int DraftsToPropose(const Request& r, int worth) const;
  // Tokens `r` may still emit, by max_tokens and the context window.
  int TokensLeft(const Request& r) const;
  // Drafts worth verifying for `r` at this step's batch (0 to num_speculative_tokens).
  // Moves the request's rate back towards the engine-wide one when none is.
  int DraftsWorthIt(Request* r);
  // Records a verification of `drafted` drafts of which `accepted` were kept.
  void CountVerification(Request* r, int drafted, int accepted);
  void ScheduleWaiting(int& budget, SchedulerOutput& out);
  void Preempt(Request* victim, SchedulerOutput& out);
  FinishReason CheckStop(const Request& r) const;
  void Release(Request* r);

  SchedulerConfig config_;
  KvCacheManager kv_;
  absl::flat_hash_map<RequestId, std::unique_ptr<Request>> requests_;
  std::deque<Request*> waiting_;                         // by (priority, arrival_seq)
  std::vector<Request*> running_;                        // admission order into running
  absl::flat_hash_map<RequestId, size_t> known_blocks_;  // blocks the runner has been sent
  std::vector<RequestId> finished_since_last_;
  int64_t waiting_tokens_ = 0;
  bool speculate_ = false;  // this step may propose and verify drafts
  double draft_bar_ = 0.0;  // this step's DraftBar
  SpecCounters spec_;
  int64_t spec_misses_ = 0;  // verifications that rejected a draft
  // Decayed sums over recent steps for the least-squares fit of t(n) = base + per_token n.
  double fit_w_ = 0, fit_n_ = 0, fit_t_ = 0, fit_nn_ = 0, fit_nt_ = 0;
  double step_base_s_, step_per_token_s_;
};

}  // namespace sluice
