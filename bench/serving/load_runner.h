// Runs one load level: sends prepared request bodies open-loop (on an arrival schedule,
// optionally capped in concurrency) or closed-loop (fixed concurrency), bounded in
// requests and seconds, and collects every request's measurements.
#ifndef SLUICE_BENCH_SERVING_LOAD_RUNNER_H_
#define SLUICE_BENCH_SERVING_LOAD_RUNNER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/serving/arrivals.h"
#include "bench/serving/http_client.h"
#include "bench/serving/metrics.h"

namespace sluice::bench {

// A request ready to send.
struct PreparedRequest {
  std::string body;
  int64_t expected_input_tokens = 0;
};

struct LevelConfig {
  bool closed_loop = false;  // true: `concurrency` clients, each sends when the last ended
  ArrivalConfig arrivals;    // open loop only
  int64_t concurrency = 0;   // closed loop: clients; open loop: cap on in-flight (0: none)
  int64_t num_requests = 0;  // request i sends requests[i % size]
  double duration_s = 0;     // > 0: no request starts later than this after the start
  double request_timeout_s = 600;
};

struct LevelRun {
  std::vector<RequestResult> results;  // in completion order
  double duration_s = 0;               // first start to last end (vllm's benchmark duration)
};

// Called after each request ends with (ended, planned).
using ProgressFn = std::function<void(int64_t, int64_t)>;

// Runs one level against `url_target` (single-threaded event loop). A level lasts at
// most duration_s + request_timeout_s (or num_requests arrivals + timeout).
// REQUIRES: !requests.empty(); closed_loop implies concurrency > 0.
absl::StatusOr<LevelRun> RunLevel(const Target& target,
                                  const std::vector<PreparedRequest>& requests,
                                  const LevelConfig& config, const ProgressFn& progress);

// Sends one request and waits for it (used for the tokenizer probe).
absl::StatusOr<RequestResult> SendOne(const Target& target, const std::string& body,
                                      double timeout_s);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_SERVING_LOAD_RUNNER_H_
