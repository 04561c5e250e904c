// Continuous batching at iteration level. Each step spends a token budget on running
// requests first (decodes and unfinished prefill chunks, in admission order), then on
// waiting requests by (priority, arrival), chunking long prompts. When blocks run out it
// preempts the newest running request by recompute. Its output carries only what
// changed since the last step; block ids are the only vocabulary shared with the runner.
// Thread safety: none; the engine thread owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/cache/kv_cache_manager.h"
#include "engine/sched/request.h"

namespace sluice {

struct SchedulerConfig {
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  int max_model_len = 2048;  // context window
  int num_blocks = 1024;
  int block_size = 16;
  bool enable_prefix_caching = true;
  std::vector<int32_t> eos_token_ids;
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
};

// A request the runner already holds: only its new blocks.
struct CachedRequestData {
  RequestId id;
  std::vector<int32_t> new_block_ids;
  int num_computed_tokens;
};

struct ScheduledTokens {
  RequestId id;
  int num_tokens;
  bool samples;  // the chunk reaches the end of the known tokens: a token is sampled
};

struct SchedulerOutput {
  std::vector<NewRequestData> new_requests;
  std::vector<CachedRequestData> cached_requests;
  std::vector<ScheduledTokens> scheduled;   // in batch order
  std::vector<RequestId> finished_ids;      // the runner may drop these
  std::vector<RequestId> preempted_ids;
  int total_tokens = 0;
  bool empty() const { return scheduled.empty(); }
};

// What a step produced for one request.
struct RequestDelta {
  RequestId id;
  std::vector<int32_t> new_token_ids;
  std::vector<TokenLogprobs> logprobs;  // one per new token when requested
  FinishReason finish_reason = FinishReason::kNone;
  int num_prompt_tokens = 0;
  int num_cached_prompt_tokens = 0;
  int num_output_tokens = 0;
  double queue_time_s = 0.0;  // arrival to first scheduling
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerConfig config);

  // Takes ownership of a new waiting request.
  // REQUIRES: request->num_tokens() < config.max_model_len, ids unique.
  void Add(std::unique_ptr<Request> request);

  // Removes a waiting or running request, freeing its blocks. Returns its delta (abort),
  // or nothing when the id is unknown or already finished.
  std::optional<RequestDelta> Abort(RequestId id) { return Finish(id, FinishReason::kAbort); }

  SchedulerOutput Schedule();

  // Applies sampled tokens (one per scheduled entry whose `samples` is set, in order),
  // runs stop checks, frees finished requests and registers full blocks.
  std::vector<RequestDelta> Update(const SchedulerOutput& output,
                                   std::span<const int32_t> sampled);

  // Ends one request with `reason` (an error or an abort); nothing when unknown.
  std::optional<RequestDelta> Finish(RequestId id, FinishReason reason);

  // Ends every running and waiting request with `reason` (at shutdown).
  std::vector<RequestDelta> FinishAll(FinishReason reason);

  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int num_running() const { return static_cast<int>(running_.size()); }
  // Requests that ended since the last Schedule: the next output tells the runner.
  bool has_unreported_finishes() const { return !finished_since_last_.empty(); }
  int64_t num_waiting_tokens() const { return waiting_tokens_; }
  bool idle() const { return waiting_.empty() && running_.empty(); }
  const KvCacheManager& kv() const { return kv_; }
  const SchedulerConfig& config() const { return config_; }
  const Request* Find(RequestId id) const;

 private:
  void InsertWaiting(Request* r);
  void RemoveWaiting(Request* r);
  bool ScheduleRunning(Request* r, int& budget, SchedulerOutput& out);
  void ScheduleWaiting(int& budget, SchedulerOutput& out);
  void Preempt(Request* victim, SchedulerOutput& out);
  FinishReason CheckStop(const Request& r) const;
  void Release(Request* r, FinishReason reason);

  SchedulerConfig config_;
  KvCacheManager kv_;
  absl::flat_hash_map<RequestId, std::unique_ptr<Request>> requests_;
  std::deque<Request*> waiting_;  // by (priority, arrival_seq)
  std::vector<Request*> running_;  // admission order into running
  absl::flat_hash_map<RequestId, size_t> known_blocks_;  // blocks the runner has been sent
  std::vector<RequestId> finished_since_last_;
  int64_t waiting_tokens_ = 0;
};

}  // namespace sluice
