// The engine: one thread that loops Schedule -> Runner::Execute -> Update and pushes
// each request's new tokens to its stream. Submit admits or refuses at once: nothing
// queues without bound.
// Thread safety: Submit, Abort, StartDrain, WaitIdle, Stats are safe from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/core/request_stream.h"
#include "engine/runner/runner.h"
#include "engine/sched/scheduler.h"

namespace sluice {

struct EngineConfig {
  SchedulerConfig scheduler;  // num_blocks and block_size come from the runner
  int max_waiting_requests = 256;
  int64_t max_waiting_tokens = 1 << 18;
  double slo_ttft_ms = 0.0;  // 0: no refusal on predicted time to first token
  double ttft_slack = 2.0;   // refuse when predicted TTFT > slack * slo_ttft_ms
  // Health (Engine::Health): this many failed steps in a row make the engine unready
  // (it refuses new requests, so nothing can prove it well again); unready for longer
  // than unready_grace_s, it is no longer live either (its container wants a restart).
  // A step running longer than step_timeout_s (a wedged device) makes it both at once.
  int unready_after_failed_steps = 3;
  double unready_grace_s = 30.0;
  double step_timeout_s = 300.0;
};

// What the engine says of itself, for readiness and liveness probes.
struct EngineHealth {
  bool ready = true;  // admits work: steps succeed
  bool live = true;   // worth keeping: not stuck, not failing step after step
  std::string reason;  // why not, when not
};

struct SubmitParams {
  std::vector<int32_t> prompt_ids;
  SamplingParams sampling;
  std::string cache_salt;
  int priority = 0;
};

struct EngineStats {
  int num_waiting = 0;
  int num_running = 0;
  int64_t num_waiting_tokens = 0;
  double kv_usage = 0.0;
  int num_kv_blocks = 0;
  int64_t num_arrived = 0, num_admitted = 0, num_refused = 0, num_invalid = 0;
  int64_t num_finished = 0, num_aborted = 0, num_errors = 0, num_preemptions = 0;
  int64_t prompt_tokens = 0, generation_tokens = 0, num_steps = 0;
  int64_t prefix_queried_tokens = 0, prefix_hit_tokens = 0, num_evictions = 0;
  int64_t num_failed_steps = 0;
  double prefill_tokens_per_s = 0.0;  // measured, smoothed
  double finish_per_s = 0.0;          // measured, smoothed
};

// The retry delay a refusal carries, when it carries one.
std::optional<int64_t> RetryAfterMs(const absl::Status& status);

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(EngineConfig config,
                                                        std::unique_ptr<Runner> runner);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Admits the request and returns its stream, or refuses at once: InvalidArgument for a
  // bad request (naming what is wrong), ResourceExhausted with a retry delay
  // (RetryAfterMs) when overloaded, Unavailable while draining.
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(SubmitParams params);

  // Aborts a request from any thread; its blocks are freed on the engine thread's next
  // iteration and its stream gets a final output with FinishReason::kAbort.
  void Abort(RequestId id);

  // Stops admitting; in-flight requests run to completion.
  void StartDrain();
  bool draining() const { return draining_.load(); }
  // Waits until no request is waiting or running; false on timeout.
  bool WaitIdle(std::chrono::milliseconds timeout);

  // Aborts whatever is left and joins the engine thread. Idempotent.
  void Shutdown();

  EngineStats Stats() const;
  EngineHealth Health() const;
  const EngineConfig& config() const { return config_; }
  const Runner& runner() const { return *runner_; }

 private:
  Engine(EngineConfig config, std::unique_ptr<Runner> runner);
  absl::Status Validate(const SubmitParams& params) const;
  absl::Status CheckLoad(int prompt_tokens) const;
  void Loop();
  void Step();
  void Deliver(const RequestDelta& delta, const std::string& error = "");
  void PublishStats();

  const EngineConfig config_;
  std::unique_ptr<Runner> runner_;
  Scheduler scheduler_;  // engine thread only

  mutable std::mutex mu_;  // guards the fields below it
  std::condition_variable cv_;
  struct Pending {
    std::unique_ptr<Request> request;
    std::shared_ptr<RequestStream> stream;
  };
  std::vector<Pending> pending_;
  int64_t pending_tokens_ = 0;
  std::vector<RequestId> aborts_;
  bool stop_ = false;
  bool idle_ = true;
  RequestId next_id_ = 1;
  std::mt19937_64 seed_rng_{std::random_device{}()};
  EngineStats stats_;

  std::atomic<bool> draining_{false};
  std::atomic<int> failed_steps_{0};          // consecutive; reset by a good step
  std::atomic<int64_t> step_started_ns_{0};   // steady clock; 0 between steps
  std::atomic<int64_t> unready_since_ns_{0};  // steady clock; 0 while ready
  std::string last_step_error_;               // guarded by mu_
  std::condition_variable idle_cv_;
  absl::flat_hash_map<RequestId, std::shared_ptr<RequestStream>> streams_;  // engine thread
  std::thread thread_;
};

}  // namespace sluice
