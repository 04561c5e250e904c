// The engine: one thread that loops RunStep (Schedule -> Runner::Execute -> Update) and
// pushes each request's outputs to its stream. Submit admits or refuses at once: nothing
// queues without bound.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/api.h"
#include "engine/core/step.h"
#include "engine/runner/runner.h"
#include "engine/sched/scheduler.h"
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

SchedulerConfig SchedulerConfigOf(const EngineConfig& c, const Runner& runner) {
  SchedulerConfig sc;
  sc.max_num_seqs = c.max_num_seqs;
  sc.max_num_batched_tokens = c.max_num_batched_tokens;
  sc.max_model_len = c.max_model_len;
  sc.num_blocks = runner.num_kv_blocks();
  sc.block_size = runner.block_size();
  sc.enable_prefix_caching = c.enable_prefix_caching;
  sc.eos_token_ids = c.eos_token_ids;
  sc.num_speculative_tokens = c.num_speculative_tokens;
  sc.speculative_disable_batch_size = c.speculative_disable_batch_size;
  sc.step_base_s = c.spec_step_base_s;
  sc.step_per_token_s = c.spec_step_per_token_s;
  return sc;
}

// The process's resident set, from /proc/self/statm; 0 where it cannot be read.
int64_t ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long pages = 0, resident = 0;
  const int n = std::fscanf(f, "%ld %ld", &pages, &resident);
  std::fclose(f);
  return n == 2 ? int64_t{resident} * sysconf(_SC_PAGESIZE) : 0;
}

}  // namespace

std::optional<int64_t> RetryAfterMs(const absl::Status& status) {
  const auto payload = status.GetPayload(kRetryPayload);
  int64_t ms = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &ms)) return std::nullopt;
  return ms;
}

struct Engine::Impl {
  Impl(EngineConfig c, std::unique_ptr<Runner> r, ModelInfo m)
      : config(std::move(c)),
        runner(std::move(r)),
        model(std::move(m)),
        scheduler(SchedulerConfigOf(config, *runner)) {
    if (!config.clock) config.clock = [] { return Clock::now(); };
    model.block_size = runner->block_size();
    model.num_kv_blocks = runner->num_kv_blocks();
    model.vocab_size = runner->vocab_size();
    model.max_model_len = config.max_model_len;
    stats.num_kv_blocks = model.num_kv_blocks;
    PublishSpecCountersLocked();  // no thread yet; then after each step (Step)
  }

  Clock::time_point Now() const { return config.clock(); }
  absl::Status Validate(const SubmitParams& params) const;
  absl::Status CheckLoad(int prompt_tokens) const;
  void Loop();
  void Step();
  void Deliver(RequestOutput output);
  void PublishStats();
  void PublishStatsLocked();         // REQUIRES: mu held
  void PublishSpecCountersLocked();  // REQUIRES: mu held

  EngineConfig config;
  const std::unique_ptr<Runner> runner;
  ModelInfo model;
  Scheduler scheduler;  // engine thread only

  mutable std::mutex mu;  // guards the fields below it
  std::condition_variable cv;
  struct Pending {
    std::unique_ptr<Request> request;
    std::shared_ptr<RequestStream> stream;
  };
  std::vector<Pending> pending;
  std::vector<RequestId> aborts;
  bool stop = false;
  bool idle = true;
  RequestId next_id = 1;
  std::mt19937_64 seed_rng{std::random_device{}()};
  EngineStats stats;
  Clock::time_point memory_refreshed{};  // when stats.memory was last read from the runner
  std::string last_step_error;
  std::condition_variable idle_cv;

  std::atomic<bool> draining{false};
  std::atomic<int> failed_steps{0};          // consecutive; reset by a good step
  std::atomic<int64_t> step_started_ns{0};   // engine clock; 0 between steps
  std::atomic<int64_t> unready_since_ns{0};  // engine clock; 0 while ready
  absl::flat_hash_map<RequestId, std::shared_ptr<RequestStream>> streams;  // engine thread
  std::thread thread;
};

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(EngineConfig config,
                                                       std::unique_ptr<Runner> runner,
                                                       ModelInfo model) {
  if (runner == nullptr) return absl::InvalidArgumentError("engine needs a runner");
  if (config.max_num_seqs <= 0 || config.max_num_batched_tokens <= 0 ||
      config.max_waiting_requests <= 0 || config.max_waiting_tokens <= 0 ||
      config.max_model_len <= 1) {
    return absl::InvalidArgumentError(
        "max_num_seqs, max_num_batched_tokens, max_model_len and the waiting limits must be "
        "positive");
  }
  auto impl = std::make_unique<Impl>(std::move(config), std::move(runner), std::move(model));
  Impl* raw = impl.get();
  raw->PublishStats();  // memory and capacity are known before the first step
  std::unique_ptr<Engine> engine(new Engine(std::move(impl)));
  raw->thread = std::thread([raw] { raw->Loop(); });
  return engine;
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() { Shutdown(); }

const EngineConfig& Engine::config() const { return impl_->config; }
const ModelInfo& Engine::model() const { return impl_->model; }
bool Engine::draining() const { return impl_->draining.load(); }

absl::Status Engine::Impl::Validate(const SubmitParams& p) const {
  const int n = static_cast<int>(p.prompt_ids.size());
  if (n == 0) return InvalidPrompt("is empty");
  if (n >= config.max_model_len) {
    return InvalidPrompt(absl::StrCat("has ", n, " tokens; the context window is ",
                                      config.max_model_len, " tokens"));
  }
  const int64_t capacity = int64_t{runner->num_kv_blocks()} * runner->block_size();
  if (n + 1 > capacity) {
    return InvalidPrompt(absl::StrCat("has ", n, " tokens; the KV cache holds ", capacity));
  }
  const int vocab = runner->vocab_size();
  for (int i = 0; i < n; ++i) {
    if (p.prompt_ids[i] < 0 || p.prompt_ids[i] >= vocab) {
      return InvalidPrompt(absl::StrCat("token ", p.prompt_ids[i], " at index ", i,
                                        " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  SLUICE_RETURN_IF_ERROR(ValidateSampling(p.sampling));
  auto in_vocab = [vocab](int32_t id) { return id >= 0 && id < vocab; };
  auto outside = [vocab](const char* field, int32_t id) {
    return InvalidFieldError(
        field, absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab, ")"));
  };
  for (const auto& [id, bias] : p.sampling.logit_bias) {
    if (!in_vocab(id)) return outside("logit_bias", id);
  }
  for (int32_t id : p.sampling.allowed_token_ids) {
    if (!in_vocab(id)) return outside("allowed_token_ids", id);
  }
  for (const std::vector<int32_t>& word : p.sampling.bad_words) {
    for (int32_t id : word) {
      if (!in_vocab(id)) return outside("bad_words", id);
    }
  }
  for (int32_t id : p.sampling.stop_token_ids) {
    if (!in_vocab(id)) return outside("stop_token_ids", id);
  }
  return absl::OkStatus();
}

// Admission counts what cannot start at the next step: requests pending and waiting,
// less the running slots left free (never below 0); the same for their tokens. A request
// that starts at the next step is refused for nothing but draining or a bad field.
// REQUIRES: mu held.
absl::Status Engine::Impl::CheckLoad(int prompt_tokens) const {
  const int64_t free_slots = std::max(0, config.max_num_seqs - stats.num_running);
  const int64_t ahead = stats.num_waiting + static_cast<int64_t>(pending.size());
  if (ahead < free_slots) return absl::OkStatus();
  const int64_t queued = ahead - free_slots;
  int64_t queued_tokens = 0;
  if (stats.num_waiting >= free_slots) {
    queued_tokens = stats.num_queued_tokens;
    for (const Pending& p : pending) queued_tokens += p.request->num_tokens();
  } else {
    for (size_t i = static_cast<size_t>(free_slots - stats.num_waiting); i < pending.size(); ++i) {
      queued_tokens += pending[i].request->num_tokens();
    }
  }
  const double prefill_rate = stats.prefill_tokens_per_s;
  const double finish_rate = stats.finish_per_s;
  if (queued >= config.max_waiting_requests) {
    const int64_t retry =
        finish_rate > 0 ? static_cast<int64_t>(1000.0 * (queued - config.max_waiting_requests + 1) /
                                               finish_rate)
                        : kDefaultRetryMs;
    return Overloaded(absl::StrCat("server overloaded: ", queued, " requests waiting (limit ",
                                   config.max_waiting_requests, ")"),
                      retry);
  }
  if (queued_tokens + prompt_tokens > config.max_waiting_tokens) {
    const int64_t excess = queued_tokens + prompt_tokens - config.max_waiting_tokens;
    const int64_t retry =
        prefill_rate > 0 ? static_cast<int64_t>(1000.0 * excess / prefill_rate) : kDefaultRetryMs;
    return Overloaded(
        absl::StrCat("server overloaded: ", queued_tokens, " prompt tokens waiting (limit ",
                     config.max_waiting_tokens, ")"),
        retry);
  }
  // NOTE: the prediction applies behind a queue only: with nobody queued ahead, the
  // request waits for a running slot, not for prefill work the rate can predict.
  if (config.slo_ttft_ms > 0 && prefill_rate > 0 && queued > 0) {
    const double predicted_ms = 1000.0 * (queued_tokens + prompt_tokens) / prefill_rate;
    const double limit_ms = config.ttft_slack * config.slo_ttft_ms;
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
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    ++m.stats.num_arrived;
  }
  if (m.draining.load()) return absl::UnavailableError("server is draining");
  if (absl::Status s = m.Validate(params); !s.ok()) {
    std::lock_guard<std::mutex> lock(m.mu);
    ++m.stats.num_invalid;
    return s;
  }
  const int n = static_cast<int>(params.prompt_ids.size());
  std::shared_ptr<RequestStream> stream;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.stop) return absl::UnavailableError("engine is shut down");
    if (absl::Status s = m.CheckLoad(n); !s.ok()) {
      ++m.stats.num_refused;
      return s;
    }
    auto r = std::make_unique<Request>();
    r->id = m.next_id++;
    r->arrival_seq = r->id;
    r->arrival_time = m.Now();
    r->token_ids = std::move(params.prompt_ids);
    r->num_prompt_tokens = n;
    r->sampling = std::move(params.sampling);
    r->sampling.top_k = std::max(r->sampling.top_k, 0);  // -1 and 0 both mean off
    r->seed = r->sampling.seed.value_or(m.seed_rng());
    r->cache_salt = std::move(params.cache_salt);
    r->priority = params.priority;
    stream = std::make_shared<RequestStream>(r->id);
    m.pending.push_back({std::move(r), stream});
    ++m.stats.num_admitted;
    m.stats.prompt_tokens += n;
    m.idle = false;
  }
  m.cv.notify_all();
  return stream;
}

void Engine::Abort(RequestId id) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->aborts.push_back(id);
  }
  impl_->cv.notify_all();
}

void Engine::StartDrain() {
  impl_->draining.store(true);
  spdlog::info("engine draining: admitting no new requests");
}

bool Engine::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  return impl_->idle_cv.wait_for(lock, timeout, [&] { return impl_->idle; });
}

void Engine::Shutdown() {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.stop && !m.thread.joinable()) return;
    m.stop = true;
  }
  m.cv.notify_all();
  if (m.thread.joinable()) m.thread.join();
}

EngineStats Engine::Stats() const {
  EngineStats s;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    s = impl_->stats;
  }
  // What no kind accounts for: of the device's used memory, or of the process's RSS.
  MemoryUsage& m = s.memory;
  const int64_t known = m.weights + m.kv_cache + m.activations + m.cuda_graphs;
  const int64_t held = m.device_total > 0 ? m.device_used : ResidentBytes();
  m.other = std::max<int64_t>(0, held - known);
  return s;
}

void Engine::Impl::Deliver(RequestOutput output) {
  auto it = streams.find(output.id);
  if (it == streams.end()) return;
  output.time = Now();
  const bool last = output.finished();
  it->second->Push(std::move(output));
  if (last) streams.erase(it);
}

void Engine::Impl::Loop() {
  while (true) {
    std::vector<Pending> incoming;
    std::vector<RequestId> to_abort;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return stop || !pending.empty() || !aborts.empty() || !idle; });
      if (stop) break;
      incoming.swap(pending);
      to_abort.swap(aborts);
      // Under the lock, so that admission never sees a request neither pending nor waiting.
      for (Pending& p : incoming) {
        streams[p.request->id] = p.stream;
        scheduler.Add(std::move(p.request));
      }
      if (!incoming.empty()) PublishStatsLocked();
    }
    int64_t aborted = 0;
    for (RequestId id : to_abort) {
      if (std::optional<RequestOutput> o = scheduler.Abort(id)) {
        ++aborted;
        Deliver(*std::move(o));
      }
    }
    if (aborted > 0) {
      std::lock_guard<std::mutex> lock(mu);
      stats.num_aborted += aborted;
    }
    Step();
    PublishStats();
  }
  for (RequestOutput& o : scheduler.FinishAll(FinishReason::kAbort)) {
    o.error = "engine shut down";
    Deliver(std::move(o));
  }
  PublishStats();
}

void Engine::Impl::Step() {
  const Clock::time_point start = Now();
  step_started_ns.store(start.time_since_epoch().count());
  StepOutcome step = RunStep(scheduler, *runner);
  step_started_ns.store(0);
  if (!step.ran) return;
  if (!step.status.ok()) {
    const int failed = failed_steps.fetch_add(1) + 1;
    if (failed == config.unready_after_failed_steps) {
      unready_since_ns.store(Now().time_since_epoch().count());
    }
    spdlog::error("engine step failed ({} in a row): {}; failing its {} requests", failed,
                  step.status.ToString(), step.outputs.size());
    {
      std::lock_guard<std::mutex> lock(mu);
      ++stats.num_failed_steps;
      stats.num_errors += static_cast<int64_t>(step.outputs.size());
      last_step_error = std::string(step.status.message());
    }
    for (RequestOutput& o : step.outputs) Deliver(std::move(o));
    return;
  }
  failed_steps.store(0);
  unready_since_ns.store(0);
  const double seconds = std::chrono::duration<double>(Now() - start).count();
  int64_t finished = 0, generated = 0;
  for (const RequestOutput& o : step.outputs) {
    generated += static_cast<int64_t>(o.new_token_ids.size());
    finished += o.finished();
  }
  // Decoding steps (drafts make their sizes vary) price a draft's position; prefill
  // chunks cost otherwise per token and would skew the fit.
  if (config.num_speculative_tokens > 0 && config.spec_cost_from_steps &&
      step.prefill_tokens == 0) {
    scheduler.ObserveStep(seconds, step.num_tokens);
  }
  // The step's figures are in the stats before any client sees its tokens, so that a
  // reader who got a token also sees the step that produced it counted.
  {
    std::lock_guard<std::mutex> lock(mu);
    ++stats.num_steps;
    stats.generation_tokens += generated;
    stats.num_finished += finished;
    stats.num_preemptions += step.num_preempted;
    PublishSpecCountersLocked();
    if (seconds > 0) {
      if (step.prefill_tokens >= kMinPrefillSample) {
        stats.prefill_tokens_per_s =
            Smooth(stats.prefill_tokens_per_s, step.prefill_tokens / seconds);
      }
      stats.finish_per_s = Smooth(stats.finish_per_s, finished / seconds);
    }
  }
  if (config.on_step) config.on_step({seconds, step.num_tokens, step.num_seqs});
  for (RequestOutput& o : step.outputs) Deliver(std::move(o));
}

EngineHealth Engine::Health() const {
  const Impl& m = *impl_;
  EngineHealth h;
  const int64_t now = m.Now().time_since_epoch().count();
  auto seconds_since = [now](int64_t then) {
    return std::chrono::duration<double>(Clock::duration(now - then)).count();
  };
  if (const int64_t started = m.step_started_ns.load(); started != 0) {
    if (const double s = seconds_since(started); s > m.config.step_timeout_s) {
      h.ready = h.live = false;
      h.reason = absl::StrFormat("an engine step has been running for %.0f s (limit %.0f s)", s,
                                 m.config.step_timeout_s);
      return h;
    }
  }
  const int failed = m.failed_steps.load();
  const int64_t unready_since = m.unready_since_ns.load();
  if (failed >= m.config.unready_after_failed_steps && unready_since != 0) {
    h.ready = false;
    const double s = seconds_since(unready_since);
    h.live = s <= m.config.unready_grace_s;
    std::lock_guard<std::mutex> lock(m.mu);
    h.reason = absl::StrFormat("the last %d engine steps failed (%s); unready for %.0f s%s", failed,
                               m.last_step_error, s, h.live ? "" : ", past the grace period");
  }
  return h;
}

void Engine::Impl::PublishStats() {
  std::lock_guard<std::mutex> lock(mu);
  PublishStatsLocked();
}

void Engine::Impl::PublishSpecCountersLocked() {
  const SpecCounters& spec = scheduler.spec_counters();
  stats.spec_num_drafts = spec.num_drafts;
  stats.spec_num_draft_tokens = spec.num_draft_tokens;
  stats.spec_num_accepted_tokens = spec.num_accepted_tokens;
  stats.spec_accepted_per_position = spec.accepted_per_position;
  stats.spec_step_base_s = scheduler.step_base_s();
  stats.spec_step_per_token_s = scheduler.step_per_token_s();
}

void Engine::Impl::PublishStatsLocked() {
  stats.num_waiting = scheduler.num_waiting();
  stats.num_running = scheduler.num_running();
  stats.num_waiting_tokens = scheduler.num_waiting_tokens();
  const int free_slots = std::max(0, config.max_num_seqs - stats.num_running);
  stats.num_queued = std::max(0, stats.num_waiting - free_slots);
  stats.num_queued_tokens = scheduler.WaitingTokensAfter(free_slots);
  stats.num_runner_requests = runner->num_requests();
  stats.kv_usage = scheduler.kv().Usage();
  stats.prefix_queried_tokens = scheduler.kv().prefix_counters().queried_tokens;
  const int64_t hits = scheduler.kv().prefix_counters().hit_tokens;
  // The prefill the cache saved, at the rate recent steps measured.
  if (hits > stats.prefix_hit_tokens && stats.prefill_tokens_per_s > 0) {
    stats.prefill_seconds_avoided +=
        static_cast<double>(hits - stats.prefix_hit_tokens) / stats.prefill_tokens_per_s;
  }
  stats.prefix_hit_tokens = hits;
  // The kinds change rarely (a workspace that grows) and the CUDA runner asks the driver
  // for its figures: refreshed once a second, not on every step.
  if (const Clock::time_point now = Now(); now - memory_refreshed >= std::chrono::seconds(1) ||
                                           memory_refreshed == Clock::time_point{}) {
    stats.memory = runner->memory();
    memory_refreshed = now;
  }
  stats.kv_used_bytes = int64_t{scheduler.kv().num_blocks() - scheduler.kv().num_free_blocks()} *
                        runner->kv_bytes_per_block();
  stats.num_evictions = scheduler.kv().num_evictions();
  // Idle once the runner, too, has heard of every request that ended.
  const bool now_idle = scheduler.idle() && pending.empty() && !scheduler.has_unreported_finishes();
  if (now_idle && !idle) idle_cv.notify_all();
  idle = now_idle;
}

}  // namespace sluice
