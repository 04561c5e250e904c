#include "engine/core/engine.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace sluice {
namespace {

constexpr char kRetryPayload[] = "sluice.retry_after_ms";
constexpr double kSmoothing = 0.2;  // weight of the newest sample in the rate averages
constexpr int64_t kMinRetryMs = 100, kMaxRetryMs = 60000, kDefaultRetryMs = 1000;
constexpr int64_t kMinPrefillSample = 16;  // prompt tokens a step needs to sample the rate

absl::Status Overloaded(const std::string& message, int64_t retry_ms) {
  absl::Status s = absl::ResourceExhaustedError(message);
  retry_ms = std::clamp(retry_ms, kMinRetryMs, kMaxRetryMs);
  s.SetPayload(kRetryPayload, absl::Cord(std::to_string(retry_ms)));
  return s;
}

double Smooth(double old_value, double sample) {
  return old_value <= 0.0 ? sample : (1.0 - kSmoothing) * old_value + kSmoothing * sample;
}

}  // namespace

std::optional<int64_t> RetryAfterMs(const absl::Status& status) {
  const auto payload = status.GetPayload(kRetryPayload);
  int64_t ms = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &ms)) return std::nullopt;
  return ms;
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(EngineConfig config,
                                                       std::unique_ptr<Runner> runner) {
  if (runner == nullptr) return absl::InvalidArgumentError("engine needs a runner");
  config.scheduler.num_blocks = runner->num_kv_blocks();
  config.scheduler.block_size = runner->block_size();
  if (config.scheduler.max_num_seqs <= 0 || config.scheduler.max_num_batched_tokens <= 0 ||
      config.max_waiting_requests <= 0 || config.max_waiting_tokens <= 0) {
    return absl::InvalidArgumentError(
        "max_num_seqs, max_num_batched_tokens and the waiting limits must be positive");
  }
  return std::unique_ptr<Engine>(new Engine(std::move(config), std::move(runner)));
}

Engine::Engine(EngineConfig config, std::unique_ptr<Runner> runner)
    : config_(std::move(config)), runner_(std::move(runner)), scheduler_(config_.scheduler) {
  stats_.num_kv_blocks = config_.scheduler.num_blocks;
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() { Shutdown(); }

absl::Status Engine::Validate(const SubmitParams& p) const {
  const int n = static_cast<int>(p.prompt_ids.size());
  const SchedulerConfig& sc = config_.scheduler;
  if (n == 0) return absl::InvalidArgumentError("prompt is empty");
  if (n >= sc.max_model_len) {
    return absl::InvalidArgumentError(absl::StrCat("prompt has ", n,
                                                   " tokens; the context window is ",
                                                   sc.max_model_len, " tokens"));
  }
  if (n + 1 > sc.num_blocks * sc.block_size) {
    return absl::InvalidArgumentError(absl::StrCat("prompt has ", n, " tokens; the KV cache holds ",
                                                   sc.num_blocks * sc.block_size));
  }
  for (int i = 0; i < n; ++i) {
    if (p.prompt_ids[i] < 0 || p.prompt_ids[i] >= runner_->vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token ", p.prompt_ids[i], " at index ",
                                                     i, " is outside the vocabulary [0, ",
                                                     runner_->vocab_size(), ")"));
    }
  }
  if (p.sampling.max_tokens < 1) return absl::InvalidArgumentError("max_tokens must be >= 1");
  if (p.sampling.temperature < 0 || !std::isfinite(p.sampling.temperature)) {
    return absl::InvalidArgumentError("temperature must be a finite number >= 0");
  }
  if (!(p.sampling.top_p > 0.0f && p.sampling.top_p <= 1.0f)) {
    return absl::InvalidArgumentError("top_p must be in (0, 1]");
  }
  if (!(p.sampling.min_p >= 0.0f && p.sampling.min_p <= 1.0f)) {
    return absl::InvalidArgumentError("min_p must be in [0, 1]");
  }
  if (p.sampling.top_k < 0) return absl::InvalidArgumentError("top_k must be >= 0");
  return absl::OkStatus();
}

// REQUIRES: mu_ held.
absl::Status Engine::CheckLoad(int prompt_tokens) const {
  const int64_t waiting = stats_.num_waiting + static_cast<int64_t>(pending_.size());
  const int64_t waiting_tokens = stats_.num_waiting_tokens + pending_tokens_;
  const double prefill_rate = stats_.prefill_tokens_per_s;
  const double finish_rate = stats_.finish_per_s;
  if (waiting >= config_.max_waiting_requests) {
    const int64_t retry = finish_rate > 0
        ? static_cast<int64_t>(1000.0 * (waiting - config_.max_waiting_requests + 1) / finish_rate)
        : kDefaultRetryMs;
    return Overloaded(absl::StrCat("server overloaded: ", waiting, " requests waiting (limit ",
                                   config_.max_waiting_requests, ")"), retry);
  }
  if (waiting_tokens + prompt_tokens > config_.max_waiting_tokens) {
    const int64_t excess = waiting_tokens + prompt_tokens - config_.max_waiting_tokens;
    const int64_t retry =
        prefill_rate > 0 ? static_cast<int64_t>(1000.0 * excess / prefill_rate) : kDefaultRetryMs;
    return Overloaded(absl::StrCat("server overloaded: ", waiting_tokens,
                                   " prompt tokens waiting (limit ", config_.max_waiting_tokens,
                                   ")"), retry);
  }
  // NOTE: with nothing waiting a request is scheduled at the next step, so the
  // prediction applies only behind a queue.
  if (config_.slo_ttft_ms > 0 && prefill_rate > 0 && waiting_tokens > 0) {
    const double predicted_ms = 1000.0 * (waiting_tokens + prompt_tokens) / prefill_rate;
    const double limit_ms = config_.ttft_slack * config_.slo_ttft_ms;
    if (predicted_ms > limit_ms) {
      return Overloaded(absl::StrCat("server overloaded: predicted time to first token ",
                                     static_cast<int64_t>(predicted_ms), " ms exceeds ",
                                     static_cast<int64_t>(limit_ms), " ms"),
                        static_cast<int64_t>(predicted_ms - limit_ms));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<RequestStream>> Engine::Submit(SubmitParams params) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.num_arrived;
  }
  if (draining_.load()) return absl::UnavailableError("server is draining");
  if (absl::Status s = Validate(params); !s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.num_invalid;
    return s;
  }
  const int n = static_cast<int>(params.prompt_ids.size());
  std::shared_ptr<RequestStream> stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return absl::UnavailableError("engine is shut down");
    if (absl::Status s = CheckLoad(n); !s.ok()) {
      ++stats_.num_refused;
      return s;
    }
    auto r = std::make_unique<Request>();
    r->id = next_id_++;
    r->arrival_seq = r->id;
    r->arrival_time = Clock::now();
    r->token_ids = std::move(params.prompt_ids);
    r->num_prompt_tokens = n;
    r->sampling = std::move(params.sampling);
    r->seed = r->sampling.seed.value_or(seed_rng_());
    r->cache_salt = std::move(params.cache_salt);
    r->priority = params.priority;
    stream = std::make_shared<RequestStream>(r->id);
    pending_.push_back({std::move(r), stream});
    pending_tokens_ += n;
    ++stats_.num_admitted;
    stats_.prompt_tokens += n;
    idle_ = false;
  }
  cv_.notify_all();
  return stream;
}

void Engine::Abort(RequestId id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborts_.push_back(id);
  }
  cv_.notify_all();
}

void Engine::StartDrain() {
  draining_.store(true);
  spdlog::info("engine draining: admitting no new requests");
}

bool Engine::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_for(lock, timeout, [&] { return idle_; });
}

void Engine::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

EngineStats Engine::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Engine::Deliver(const RequestDelta& d, const std::string& error) {
  auto it = streams_.find(d.id);
  if (it == streams_.end()) return;
  RequestOutput out;
  out.new_token_ids = d.new_token_ids;
  out.logprobs = d.logprobs;
  out.finish_reason = d.finish_reason;
  out.num_prompt_tokens = d.num_prompt_tokens;
  out.num_cached_prompt_tokens = d.num_cached_prompt_tokens;
  out.num_output_tokens = d.num_output_tokens;
  out.queue_time_s = d.queue_time_s;
  out.error = error;
  out.time = Clock::now();
  it->second->Push(std::move(out));
  if (d.finish_reason != FinishReason::kNone) streams_.erase(it);
}

void Engine::Loop() {
  while (true) {
    std::vector<Pending> incoming;
    std::vector<RequestId> aborts;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !pending_.empty() || !aborts_.empty() || !idle_; });
      if (stop_) break;
      incoming.swap(pending_);
      aborts.swap(aborts_);
      pending_tokens_ = 0;
    }
    for (Pending& p : incoming) {
      streams_[p.request->id] = p.stream;
      scheduler_.Add(std::move(p.request));
    }
    for (RequestId id : aborts) {
      if (std::optional<RequestDelta> d = scheduler_.Abort(id)) Deliver(*d);
    }
    Step();
    PublishStats();
  }
  for (const RequestDelta& d : scheduler_.FinishAll(FinishReason::kAbort)) {
    Deliver(d, "engine shut down");
  }
  PublishStats();
}

void Engine::Step() {
  const SchedulerOutput out = scheduler_.Schedule();
  if (out.empty()) {
    // Nothing to run, but requests may have ended since the last step (the last running
    // one aborted, say): the runner still hears of them, or it keeps their state for ever.
    if (!out.finished_ids.empty() || !out.preempted_ids.empty()) {
      if (absl::StatusOr<StepResult> r = runner_->Execute(out); !r.ok()) {
        spdlog::warn("the runner could not retire {} requests: {}", out.finished_ids.size(),
                     r.status().ToString());
      }
    }
    return;
  }
  const auto start = Clock::now();
  step_started_ns_.store(start.time_since_epoch().count());
  absl::StatusOr<StepResult> result = runner_->Execute(out);
  step_started_ns_.store(0);
  if (!result.ok()) {
    const int failed = failed_steps_.fetch_add(1) + 1;
    if (failed == config_.unready_after_failed_steps) {
      unready_since_ns_.store(Clock::now().time_since_epoch().count());
    }
    spdlog::error("engine step failed ({} in a row): {}; failing its {} requests", failed,
                  result.status().ToString(), out.scheduled.size());
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.num_failed_steps;
      last_step_error_ = std::string(result.status().message());
    }
    for (const ScheduledTokens& st : out.scheduled) {
      if (std::optional<RequestDelta> d = scheduler_.Finish(st.id, FinishReason::kError)) {
        Deliver(*d, std::string(result.status().message()));
      }
    }
    return;
  }
  failed_steps_.store(0);
  unready_since_ns_.store(0);
  std::vector<RequestDelta> deltas = scheduler_.Update(out, result->sampled);
  // Update returns one delta per sampled token, in batch order: the logprobs line up.
  for (size_t i = 0; i < deltas.size() && i < result->logprobs.size(); ++i) {
    deltas[i].logprobs.push_back(std::move(result->logprobs[i]));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // Prefill throughput counts only prompt work: a decode row (one token that samples)
  // would make a decode-heavy step look like a slow prefill.
  int64_t prefill_tokens = 0;
  for (const ScheduledTokens& st : out.scheduled) {
    if (!(st.num_tokens == 1 && st.samples)) prefill_tokens += st.num_tokens;
  }
  int64_t finished = 0, generated = 0;
  for (const RequestDelta& d : deltas) {
    generated += static_cast<int64_t>(d.new_token_ids.size());
    finished += d.finish_reason != FinishReason::kNone;
  }
  // The step's figures are in the stats before any client sees its tokens, so that a
  // reader who got a token also sees the step that produced it counted.
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.num_steps;
    stats_.generation_tokens += generated;
    stats_.num_finished += finished;
    stats_.num_preemptions += static_cast<int64_t>(out.preempted_ids.size());
    if (seconds > 0) {
      if (prefill_tokens >= kMinPrefillSample) {
        stats_.prefill_tokens_per_s =
            Smooth(stats_.prefill_tokens_per_s, prefill_tokens / seconds);
      }
      stats_.finish_per_s = Smooth(stats_.finish_per_s, finished / seconds);
    }
  }
  for (const RequestDelta& d : deltas) Deliver(d);
}

EngineHealth Engine::Health() const {
  EngineHealth h;
  const int64_t now = Clock::now().time_since_epoch().count();
  auto seconds_since = [now](int64_t then) {
    return std::chrono::duration<double>(Clock::duration(now - then)).count();
  };
  if (const int64_t started = step_started_ns_.load(); started != 0) {
    if (const double s = seconds_since(started); s > config_.step_timeout_s) {
      h.ready = h.live = false;
      h.reason = absl::StrFormat("an engine step has been running for %.0f s (limit %.0f s)", s,
                                 config_.step_timeout_s);
      return h;
    }
  }
  const int failed = failed_steps_.load();
  const int64_t unready_since = unready_since_ns_.load();
  if (failed >= config_.unready_after_failed_steps && unready_since != 0) {
    h.ready = false;
    const double s = seconds_since(unready_since);
    h.live = s <= config_.unready_grace_s;
    std::lock_guard<std::mutex> lock(mu_);
    h.reason = absl::StrFormat("the last %d engine steps failed (%s); unready for %.0f s%s",
                               failed, last_step_error_, s,
                               h.live ? "" : ", past the grace period");
  }
  return h;
}

void Engine::PublishStats() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.num_waiting = scheduler_.num_waiting();
  stats_.num_running = scheduler_.num_running();
  stats_.num_waiting_tokens = scheduler_.num_waiting_tokens();
  stats_.kv_usage = scheduler_.kv().Usage();
  stats_.prefix_queried_tokens = scheduler_.kv().prefix_counters().queried_tokens;
  stats_.prefix_hit_tokens = scheduler_.kv().prefix_counters().hit_tokens;
  stats_.num_evictions = scheduler_.kv().num_evictions();
  // Idle once the runner, too, has heard of every request that ended.
  const bool idle = scheduler_.idle() && pending_.empty() && !scheduler_.has_unreported_finishes();
  if (idle && !idle_) idle_cv_.notify_all();
  idle_ = idle;
}

}  // namespace sluice
