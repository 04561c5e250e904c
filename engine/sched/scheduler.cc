#include "engine/sched/scheduler.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sluice {

namespace {

double QueueSeconds(const Request& r) {
  if (r.num_cached_prompt_tokens < 0) return 0.0;
  return std::chrono::duration<double>(r.first_scheduled_time - r.arrival_time).count();
}

}  // namespace

Scheduler::Scheduler(SchedulerConfig config)
    : config_(std::move(config)),
      kv_(config_.num_blocks, config_.block_size, config_.enable_prefix_caching),
      step_base_s_(config_.step_base_s),
      step_per_token_s_(config_.step_per_token_s) {
  spec_.accepted_per_position.assign(
      static_cast<size_t>(std::max(config_.num_speculative_tokens, 0)), 0);
}

void Scheduler::Add(std::unique_ptr<Request> request) {
  Request* r = request.get();
  r->state = RequestState::kWaiting;
  requests_.emplace(r->id, std::move(request));
  InsertWaiting(r);
}

void Scheduler::InsertWaiting(Request* r) {
  auto before = [](const Request* a, const Request* b) {
    return a->priority != b->priority ? a->priority < b->priority : a->arrival_seq < b->arrival_seq;
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
  const int running = static_cast<int>(running_.size());
  speculate_ =
      config_.num_speculative_tokens > 0 && (config_.speculative_disable_batch_size <= 0 ||
                                             running < config_.speculative_disable_batch_size);
  draft_bar_ = DraftBar(running);
  // Drafts only from what is left once every later running request has its tokens: the
  // budget of one token each, and the blocks their known tokens need.
  std::vector<int> later_blocks(running_.size() + 1, 0);
  if (speculate_) {
    for (size_t i = running_.size(); i-- > 0;) {
      const Request* r = running_[i];
      const int need = kv_.BlocksFor(r->num_tokens()) - static_cast<int>(r->kv.blocks.size());
      later_blocks[i] = later_blocks[i + 1] + std::max(need, 0);
    }
  }
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    const int later = static_cast<int>(running_.size() - i - 1);
    ScheduleRunning(running_[i], budget, {budget - later, later_blocks[i + 1]}, out);
  }
  // NOTE: after a preemption the cache is short, so no new work is admitted this step.
  if (out.preempted_ids.empty()) ScheduleWaiting(budget, out);
  return out;
}

namespace {

// Sends `n` tokens of `r` (the last `drafts` of them drafts) and whatever the runner
// has not seen of it.
ScheduledTokens& Record(Request* r, int n, int drafts, const std::vector<int32_t>& eos_token_ids,
                        absl::flat_hash_map<RequestId, size_t>& known, SchedulerOutput& out) {
  auto it = known.find(r->id);
  if (it == known.end()) {
    out.new_requests.push_back({r->id,
                                r->token_ids,
                                r->kv.blocks,
                                r->num_computed_tokens,
                                r->sampling,
                                r->seed,
                                r->num_output_tokens(),
                                {}});
    out.new_requests.back().scores_prompt = r->scores_prompt();
    if (r->sampling.min_tokens > 0) {
      std::vector<int32_t>& ids = out.new_requests.back().min_tokens_stop_ids;
      if (!r->sampling.ignore_eos) ids = eos_token_ids;
      ids.insert(ids.end(), r->sampling.stop_token_ids.begin(), r->sampling.stop_token_ids.end());
    }
  } else if (it->second < r->kv.blocks.size()) {
    out.cached_requests.push_back(
        {r->id,
         std::vector<int32_t>(r->kv.blocks.begin() + static_cast<ptrdiff_t>(it->second),
                              r->kv.blocks.end()),
         r->num_computed_tokens});
  }
  known[r->id] = r->kv.blocks.size();
  out.scheduled.push_back({r->id, n, r->num_computed_tokens + n - drafts == r->num_tokens()});
  return out.scheduled.back();
}

}  // namespace

std::vector<int32_t> Scheduler::DraftsToVerify(Request* r, int spare, int worth) const {
  std::vector<int32_t> drafts = std::move(r->draft_ids);
  r->draft_ids.clear();
  if (drafts.empty()) return {};
  // Only a request decoding its next token verifies drafts, and only as many as could
  // be kept: each step emits at most drafts + 1 tokens.
  if (!speculate_ || r->num_computed_tokens + 1 != r->num_tokens()) return {};
  const int cache_tokens = kv_.num_blocks() * kv_.block_size();
  const int most =
      std::min({spare - 1, TokensLeft(*r) - 1, cache_tokens - r->num_tokens() - 1, worth});
  drafts.resize(
      static_cast<size_t>(std::clamp(static_cast<int>(drafts.size()), 0, std::max(most, 0))));
  return drafts;
}

int Scheduler::DraftsToPropose(const Request& r, int worth) const {
  // After this step the request has at least one more token; drafts beyond what it may
  // still emit after that one would be cut anyway.
  return std::clamp(TokensLeft(r) - 2, 0, worth);
}

int Scheduler::TokensLeft(const Request& r) const {
  return std::min(r.sampling.max_tokens - r.num_output_tokens(),
                  config_.max_model_len - r.num_tokens());
}

double Scheduler::DraftBar(int num_running) const {
  const double n = std::max(num_running, 1);
  // One more position costs per_token and brings alpha^j tokens; the step's n tokens
  // cost t(n): the draft pays when alpha^j / per_token > n / t(n).
  return step_per_token_s_ * n / (step_base_s_ + step_per_token_s_ * n);
}

void Scheduler::ObserveStep(double seconds, int num_tokens) {
  if (seconds <= 0 || num_tokens <= 0) return;
  // Exponentially weighted least squares over the last ~200 steps.
  constexpr double kDecay = 0.995;
  const double n = num_tokens;
  fit_w_ = kDecay * fit_w_ + 1;
  fit_n_ = kDecay * fit_n_ + n;
  fit_t_ = kDecay * fit_t_ + seconds;
  fit_nn_ = kDecay * fit_nn_ + n * n;
  fit_nt_ = kDecay * fit_nt_ + n * seconds;
  const double var = fit_w_ * fit_nn_ - fit_n_ * fit_n_;
  // Steps of one size alone say nothing of the slope: keep the prior's until they vary.
  if (var <= 1e-9 * fit_w_ * fit_nn_) return;
  const double slope = (fit_w_ * fit_nt_ - fit_n_ * fit_t_) / var;
  const double base = (fit_t_ - slope * fit_n_) / fit_w_;
  if (slope > 0 && base > 0) step_base_s_ = base, step_per_token_s_ = slope;
}

int Scheduler::DraftsWorthIt(Request* r) {
  if (!speculate_ || !r->sampling.speculative || r->sampling.max_tokens == 0) return 0;
  // The request's own recent rate, shrunk towards the engine-wide one (a Laplace
  // estimate over every verification) by the weight of two of its own, less one standard
  // error: a request gets drafts when its rate is high, so a rate high by chance would
  // buy drafts that do not pay. The engine-wide rate counts as eight drafts seen.
  const double overall =
      (spec_.num_accepted_tokens + 1.0) / (spec_.num_accepted_tokens + spec_misses_ + 2.0);
  constexpr double kPrior = 2, kPriorSeen = 8;
  const double mean = (r->spec_kept + kPrior * overall) / (r->spec_tried + kPrior);
  const double alpha =
      std::max(0.0, mean - std::sqrt(mean * (1 - mean) / (r->spec_tried + kPriorSeen)));
  int k = 0;
  for (double p = alpha; k < config_.num_speculative_tokens && p > draft_bar_; p *= alpha) ++k;
  if (k == 0) {
    // Not worth it now: its own history fades, so it is tried again at the engine's rate.
    r->spec_kept *= 0.95;
    r->spec_tried *= 0.95;
  }
  return k;
}

void Scheduler::CountVerification(Request* r, int drafted, int accepted) {
  if (drafted <= 0) return;
  ++spec_.num_drafts;
  spec_.num_draft_tokens += drafted;
  spec_.num_accepted_tokens += accepted;
  for (int p = 0; p < accepted && p < static_cast<int>(spec_.accepted_per_position.size()); ++p) {
    ++spec_.accepted_per_position[static_cast<size_t>(p)];
  }
  // Drafts are tried in order until one misses.
  const int missed = accepted < drafted ? 1 : 0;
  spec_misses_ += missed;
  constexpr double kDecay = 0.8;
  r->spec_kept = kDecay * r->spec_kept + accepted;
  r->spec_tried = kDecay * r->spec_tried + accepted + missed;
}

bool Scheduler::ScheduleRunning(Request* r, int& budget, DraftRoom room, SchedulerOutput& out) {
  const int worth = DraftsWorthIt(r);
  std::vector<int32_t> drafts = DraftsToVerify(r, room.tokens, worth);
  const int known = std::min(r->num_tokens() - r->num_computed_tokens, budget);
  // Drafts never cost a preemption: short of blocks (its own, or those the later running
  // requests need), the request goes without them.
  if (!drafts.empty()) {
    const int end = r->num_computed_tokens + known + static_cast<int>(drafts.size());
    const int extra = kv_.BlocksFor(end) - std::max(static_cast<int>(r->kv.blocks.size()),
                                                    kv_.BlocksFor(r->num_computed_tokens + known));
    if (kv_.num_free_blocks() - std::max(extra, 0) < room.blocks || !kv_.Reserve(r->kv, end)) {
      drafts.clear();
    }
  }
  const int d = static_cast<int>(drafts.size());
  const int n = known + d;
  while (!kv_.Reserve(r->kv, r->num_computed_tokens + n)) {
    Request* victim = running_.back();
    Preempt(victim, out);
    if (victim == r) return false;
  }
  ScheduledTokens& st = Record(r, n, d, config_.eos_token_ids, known_blocks_, out);
  st.draft_ids = std::move(drafts);
  if (st.samples) st.propose = DraftsToPropose(*r, worth);
  budget -= n;
  return true;
}

void Scheduler::ScheduleWaiting(int& budget, SchedulerOutput& out) {
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int>(running_.size()) < config_.max_num_seqs) {
    Request* r = waiting_.front();
    // A prompt that still needs scoring is computed whole: cached blocks hold no logits.
    const bool lookup = !r->scores_prompt();
    if (r->kv.blocks.empty()) {
      const int hit = lookup ? kv_.AcquireCachedPrefix(r->token_ids, r->cache_salt, r->kv) : 0;
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
    // Counted once the request keeps its blocks: a failed admission is retried and would
    // count the same lookup again.
    if (lookup) kv_.CountPrefixQuery(r->num_tokens(), r->num_computed_tokens);
    RemoveWaiting(r);
    r->state = RequestState::kRunning;
    running_.push_back(r);
    ScheduledTokens& st = Record(r, n, 0, config_.eos_token_ids, known_blocks_, out);
    if (st.samples) st.propose = DraftsToPropose(*r, DraftsWorthIt(r));
    budget -= n;
  }
}

void Scheduler::Preempt(Request* victim, SchedulerOutput& out) {
  kv_.Release(victim->kv);
  victim->num_computed_tokens = 0;
  ++victim->num_preemptions;
  known_blocks_.erase(victim->id);
  victim->draft_ids.clear();
  out.preempted_ids.push_back(victim->id);
  running_.erase(std::find(running_.begin(), running_.end(), victim));
  InsertWaiting(victim);
}

FinishReason Scheduler::CheckStop(const Request& r) const {
  const int32_t last = r.token_ids.back();
  auto contains = [last](const std::vector<int32_t>& ids) {
    return std::find(ids.begin(), ids.end(), last) != ids.end();
  };
  // NOTE: before min_tokens the sampler draws no stop token; this guards the rule anyway.
  if (r.num_output_tokens() >= r.sampling.min_tokens) {
    if (!r.sampling.ignore_eos && contains(config_.eos_token_ids)) return FinishReason::kStop;
    if (contains(r.sampling.stop_token_ids)) return FinishReason::kStop;
  }
  if (r.num_output_tokens() >= r.sampling.max_tokens) return FinishReason::kLength;
  if (r.num_tokens() >= config_.max_model_len) return FinishReason::kLength;
  // A sequence that would outgrow the whole cache could only preempt itself forever.
  if (r.num_tokens() >= kv_.num_blocks() * kv_.block_size()) return FinishReason::kLength;
  return FinishReason::kNone;
}

void Scheduler::Release(Request* r) {
  kv_.Release(r->kv);
  if (r->state == RequestState::kWaiting) {
    RemoveWaiting(r);
  } else if (r->state == RequestState::kRunning) {
    running_.erase(std::find(running_.begin(), running_.end(), r));
  }
  known_blocks_.erase(r->id);
  finished_since_last_.push_back(r->id);
  requests_.erase(r->id);
}

namespace {

RequestOutput OutputOf(const Request& r, FinishReason reason) {
  RequestOutput o;
  o.id = r.id;
  o.finish_reason = reason;
  o.num_prompt_tokens = r.num_prompt_tokens;
  o.num_cached_prompt_tokens = std::max(r.num_cached_prompt_tokens, 0);
  o.num_output_tokens = r.num_output_tokens();
  o.queue_time_s = QueueSeconds(r);
  return o;
}

}  // namespace

absl::StatusOr<std::vector<RequestOutput>> Scheduler::Update(const SchedulerOutput& output,
                                                             StepResult result) {
  size_t sampling = 0;
  for (const ScheduledTokens& s : output.scheduled) sampling += s.samples;
  // Tokens per sampling entry: one, or with drafts up to drafts + 1.
  size_t tokens = sampling;
  if (!result.num_sampled.empty()) {
    if (result.num_sampled.size() != sampling) {
      return absl::InternalError(absl::StrCat("the runner counted tokens for ",
                                              result.num_sampled.size(),
                                              " entries of a step that samples ", sampling));
    }
    tokens = 0;
    size_t i = 0;
    for (const ScheduledTokens& s : output.scheduled) {
      if (!s.samples) continue;
      const int c = result.num_sampled[i++];
      if (c < 1 || c > static_cast<int>(s.draft_ids.size()) + 1) {
        return absl::InternalError(absl::StrCat("the runner kept ", c, " tokens of request ", s.id,
                                                " with ", s.draft_ids.size(), " drafts"));
      }
      tokens += static_cast<size_t>(c);
    }
  }
  if (result.sampled.size() != tokens ||
      (!result.logprobs.empty() && result.logprobs.size() != tokens) ||
      (!result.grammar_done.empty() && result.grammar_done.size() != tokens) ||
      (!result.drafts.empty() && result.drafts.size() != sampling)) {
    return absl::InternalError(absl::StrCat("the runner returned ", result.sampled.size(),
                                            " tokens and ", result.logprobs.size(),
                                            " logprobs for a step that samples ", tokens));
  }
  // Prompt scores, checked whole before anything changes.
  bool scores = false;
  for (size_t e = 0; e < output.scheduled.size(); ++e) {
    const ScheduledTokens& s = output.scheduled[e];
    auto it = requests_.find(s.id);
    if (it == requests_.end() || !it->second->scores_prompt()) continue;
    const Request& r = *it->second;
    const size_t want = static_cast<size_t>(
        NumPromptScores(r.num_computed_tokens, s.num_tokens, r.num_prompt_tokens));
    const size_t got = e < result.prompt_logprobs.size() ? result.prompt_logprobs[e].size() : 0;
    if (got != want) {
      return absl::InternalError(absl::StrCat("the runner scored ", got,
                                              " prompt tokens of request ", s.id,
                                              " for a chunk that scores ", want));
    }
    scores = true;
  }
  std::vector<RequestOutput> outputs;
  outputs.reserve(sampling);
  size_t next = 0;   // the entry's first token in result.sampled
  size_t entry = 0;  // the sampling entry's index
  for (const ScheduledTokens& s : output.scheduled) {
    const size_t sample_entry = entry;
    const int count = !s.samples                   ? 0
                      : result.num_sampled.empty() ? 1
                                                   : result.num_sampled[sample_entry];
    entry += s.samples;
    auto it = requests_.find(s.id);
    if (it == requests_.end()) {
      next += static_cast<size_t>(count);
      continue;
    }
    Request* r = it->second.get();
    if (scores && r->scores_prompt()) {
      // Token c + 1 onwards; after a preemption the chunk may score tokens held already.
      const size_t e = static_cast<size_t>(&s - output.scheduled.data());
      const size_t first = static_cast<size_t>(r->num_computed_tokens);  // scores token first+1
      for (size_t k = 0; k < result.prompt_logprobs[e].size(); ++k) {
        if (first + k == r->prompt_logprobs.size()) {
          r->prompt_logprobs.push_back(std::move(result.prompt_logprobs[e][k]));
        }
      }
    }
    if (!s.samples) {
      r->num_computed_tokens += s.num_tokens;
      kv_.CacheFullBlocks(r->kv, r->token_ids, r->num_computed_tokens, r->cache_salt);
      continue;
    }
    const size_t first_token = next;
    next += static_cast<size_t>(count);
    const int drafted = static_cast<int>(s.draft_ids.size());
    // A draft was kept when the runner drew it at its position (the runner may stop
    // after a kept one, at a grammar's end, without a token of its own after it).
    int accepted = 0;
    while (accepted < std::min(count, drafted) &&
           result.sampled[first_token + static_cast<size_t>(accepted)] ==
               s.draft_ids[static_cast<size_t>(accepted)]) {
      ++accepted;
    }
    CountVerification(r, drafted, accepted);
    // The known tokens' KV is computed; of the drafts', only the kept ones' (the last
    // token appended is computed next step).
    r->num_computed_tokens += s.num_tokens - drafted;
    if (r->sampling.max_tokens == 0) {
      // The prompt alone was asked for (its scores): the sampled token is dropped.
      kv_.CacheFullBlocks(r->kv, r->token_ids, r->num_computed_tokens, r->cache_salt);
      RequestOutput o = OutputOf(*r, FinishReason::kLength);
      o.prompt_logprobs = std::move(r->prompt_logprobs);
      Release(r);
      outputs.push_back(std::move(o));
      continue;
    }
    std::vector<int32_t> ids;
    std::vector<TokenLogprobs> logprobs;
    FinishReason reason = FinishReason::kNone;
    for (int k = 0; k < count && reason == FinishReason::kNone; ++k) {
      const size_t i = first_token + static_cast<size_t>(k);
      if (k > 0) ++r->num_computed_tokens;  // the token before, a kept draft
      r->token_ids.push_back(result.sampled[i]);
      ids.push_back(result.sampled[i]);
      if (r->sampling.logprobs >= 0 && i < result.logprobs.size()) {
        logprobs.push_back(std::move(result.logprobs[i]));
      }
      reason = CheckStop(*r);
      // A grammar that admits only the end stops the request, as the end token would.
      if (reason == FinishReason::kNone && i < result.grammar_done.size() &&
          result.grammar_done[i]) {
        reason = FinishReason::kStop;
      }
    }
    kv_.CacheFullBlocks(r->kv, r->token_ids, r->num_computed_tokens, r->cache_salt);
    RequestOutput o = OutputOf(*r, reason);
    o.new_token_ids = std::move(ids);
    o.logprobs = std::move(logprobs);
    if (r->scores_prompt()) {
      o.prompt_logprobs = std::move(r->prompt_logprobs);
      r->prompt_logprobs.clear();
      r->prompt_logprobs_sent = true;
    }
    const std::vector<int32_t>& stops = r->sampling.stop_token_ids;
    const int32_t last = o.new_token_ids.back();
    if (o.finish_reason == FinishReason::kStop &&
        std::find(stops.begin(), stops.end(), last) != stops.end()) {
      o.stop_token_id = last;
    }
    if (o.finished()) {
      Release(r);
    } else if (!result.drafts.empty()) {
      r->draft_ids = std::move(result.drafts[sample_entry]);
      r->draft_ids.resize(std::min(r->draft_ids.size(), static_cast<size_t>(s.propose)));
    }
    outputs.push_back(std::move(o));
  }
  return outputs;
}

std::optional<RequestOutput> Scheduler::Finish(RequestId id, FinishReason reason) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return std::nullopt;
  RequestOutput o = OutputOf(*it->second, reason);
  Release(it->second.get());
  return o;
}

std::vector<RequestOutput> Scheduler::FinishAll(FinishReason reason) {
  std::vector<RequestId> ids;
  for (const auto& [id, r] : requests_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  std::vector<RequestOutput> outputs;
  for (RequestId id : ids) outputs.push_back(*Finish(id, reason));
  return outputs;
}

int64_t Scheduler::WaitingTokensAfter(int skip) const {
  int64_t tokens = 0;
  for (size_t i = static_cast<size_t>(std::max(skip, 0)); i < waiting_.size(); ++i) {
    tokens += waiting_[i]->num_tokens();
  }
  return tokens;
}

}  // namespace sluice
