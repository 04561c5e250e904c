#include "engine/sched/scheduler.h"

#include <algorithm>

namespace sluice {

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "?";
}

namespace {

double QueueSeconds(const Request& r) {
  if (r.num_cached_prompt_tokens < 0) return 0.0;
  return std::chrono::duration<double>(r.first_scheduled_time - r.arrival_time).count();
}

}  // namespace

Scheduler::Scheduler(SchedulerConfig config)
    : config_(std::move(config)),
      kv_(config_.num_blocks, config_.block_size, config_.enable_prefix_caching) {}

void Scheduler::Add(std::unique_ptr<Request> request) {
  Request* r = request.get();
  r->state = RequestState::kWaiting;
  requests_.emplace(r->id, std::move(request));
  InsertWaiting(r);
}

void Scheduler::InsertWaiting(Request* r) {
  auto before = [](const Request* a, const Request* b) {
    return a->priority != b->priority ? a->priority < b->priority
                                      : a->arrival_seq < b->arrival_seq;
  };
  waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), r, before), r);
  r->state = RequestState::kWaiting;
  waiting_tokens_ += r->num_tokens();
}

void Scheduler::RemoveWaiting(Request* r) {
  waiting_.erase(std::find(waiting_.begin(), waiting_.end(), r));
  waiting_tokens_ -= r->num_tokens();
}

const Request* Scheduler::Find(RequestId id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : it->second.get();
}

SchedulerOutput Scheduler::Schedule() {
  SchedulerOutput out;
  out.finished_ids = std::move(finished_since_last_);
  finished_since_last_.clear();
  int budget = config_.max_num_batched_tokens;
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    ScheduleRunning(running_[i], budget, out);
  }
  // NOTE: after a preemption the cache is short, so no new work is admitted this step.
  if (out.preempted_ids.empty()) ScheduleWaiting(budget, out);
  return out;
}

namespace {

void Record(Request* r, int n, absl::flat_hash_map<RequestId, size_t>& known,
            SchedulerOutput& out) {
  auto it = known.find(r->id);
  if (it == known.end()) {
    out.new_requests.push_back({r->id, r->token_ids, r->kv.blocks, r->num_computed_tokens,
                                r->sampling, r->seed, r->num_output_tokens()});
  } else if (it->second < r->kv.blocks.size()) {
    out.cached_requests.push_back(
        {r->id,
         std::vector<int32_t>(r->kv.blocks.begin() + static_cast<ptrdiff_t>(it->second),
                              r->kv.blocks.end()),
         r->num_computed_tokens});
  }
  known[r->id] = r->kv.blocks.size();
  out.scheduled.push_back({r->id, n, r->num_computed_tokens + n == r->num_tokens()});
  out.total_tokens += n;
}

}  // namespace

bool Scheduler::ScheduleRunning(Request* r, int& budget, SchedulerOutput& out) {
  const int n = std::min(r->num_tokens() - r->num_computed_tokens, budget);
  while (!kv_.Reserve(r->kv, r->num_computed_tokens + n)) {
    Request* victim = running_.back();
    Preempt(victim, out);
    if (victim == r) return false;
  }
  Record(r, n, known_blocks_, out);
  budget -= n;
  return true;
}

void Scheduler::ScheduleWaiting(int& budget, SchedulerOutput& out) {
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int>(running_.size()) < config_.max_num_seqs) {
    Request* r = waiting_.front();
    if (r->kv.blocks.empty()) {
      const int hit = kv_.AcquireCachedPrefix(r->token_ids, r->cache_salt, r->kv);
      r->num_computed_tokens = hit;
      if (r->num_cached_prompt_tokens < 0) {
        r->num_cached_prompt_tokens = hit;
        r->first_scheduled_time = Clock::now();
      }
    }
    const int n = std::min(r->num_tokens() - r->num_computed_tokens, budget);
    if (!kv_.Reserve(r->kv, r->num_computed_tokens + n)) {
      kv_.Release(r->kv);
      r->num_computed_tokens = 0;
      return;
    }
    RemoveWaiting(r);
    r->state = RequestState::kRunning;
    running_.push_back(r);
    Record(r, n, known_blocks_, out);
    budget -= n;
  }
}

void Scheduler::Preempt(Request* victim, SchedulerOutput& out) {
  kv_.Release(victim->kv);
  victim->num_computed_tokens = 0;
  ++victim->num_preemptions;
  known_blocks_.erase(victim->id);
  out.preempted_ids.push_back(victim->id);
  running_.erase(std::find(running_.begin(), running_.end(), victim));
  InsertWaiting(victim);
}

FinishReason Scheduler::CheckStop(const Request& r) const {
  const int32_t last = r.token_ids.back();
  auto contains = [last](const std::vector<int32_t>& ids) {
    return std::find(ids.begin(), ids.end(), last) != ids.end();
  };
  if (!r.sampling.ignore_eos && contains(config_.eos_token_ids)) return FinishReason::kStop;
  if (contains(r.sampling.stop_token_ids)) return FinishReason::kStop;
  if (r.num_output_tokens() >= r.sampling.max_tokens) return FinishReason::kLength;
  if (r.num_tokens() >= config_.max_model_len) return FinishReason::kLength;
  // A sequence that would outgrow the whole cache could only preempt itself forever.
  if (r.num_tokens() >= kv_.num_blocks() * kv_.block_size()) return FinishReason::kLength;
  return FinishReason::kNone;
}

void Scheduler::Release(Request* r, FinishReason reason) {
  kv_.Release(r->kv);
  if (r->state == RequestState::kWaiting) {
    RemoveWaiting(r);
  } else if (r->state == RequestState::kRunning) {
    running_.erase(std::find(running_.begin(), running_.end(), r));
  }
  r->state = RequestState::kFinished;
  r->finish_reason = reason;
  known_blocks_.erase(r->id);
  finished_since_last_.push_back(r->id);
  requests_.erase(r->id);
}

std::vector<RequestDelta> Scheduler::Update(const SchedulerOutput& output,
                                            std::span<const int32_t> sampled) {
  std::vector<RequestDelta> deltas;
  size_t next = 0;
  for (const ScheduledTokens& s : output.scheduled) {
    auto it = requests_.find(s.id);
    if (it == requests_.end()) continue;
    Request* r = it->second.get();
    r->num_computed_tokens += s.num_tokens;
    if (!s.samples) {
      kv_.CacheFullBlocks(r->kv, r->token_ids, r->num_computed_tokens, r->cache_salt);
      continue;
    }
    const int32_t token = sampled[next++];
    r->token_ids.push_back(token);
    kv_.CacheFullBlocks(r->kv, r->token_ids, r->num_computed_tokens, r->cache_salt);
    RequestDelta d{r->id, {token}, {}, CheckStop(*r), r->num_prompt_tokens,
                   std::max(r->num_cached_prompt_tokens, 0), r->num_output_tokens(),
                   QueueSeconds(*r)};
    if (d.finish_reason != FinishReason::kNone) Release(r, d.finish_reason);
    deltas.push_back(std::move(d));
  }
  return deltas;
}

std::optional<RequestDelta> Scheduler::Finish(RequestId id, FinishReason reason) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return std::nullopt;
  Request* r = it->second.get();
  RequestDelta d{id,
                 {},
                 {},
                 reason,
                 r->num_prompt_tokens,
                 std::max(r->num_cached_prompt_tokens, 0),
                 r->num_output_tokens(),
                 QueueSeconds(*r)};
  Release(r, reason);
  return d;
}

std::vector<RequestDelta> Scheduler::FinishAll(FinishReason reason) {
  std::vector<RequestId> ids;
  for (const auto& [id, r] : requests_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  std::vector<RequestDelta> deltas;
  for (RequestId id : ids) deltas.push_back(*Finish(id, reason));
  return deltas;
}

}  // namespace sluice
