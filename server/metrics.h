// Prometheus metrics (text format 0.0.4) for /metrics: engine gauges and counters read
// at scrape time, per-request latency histograms and the Goodput counters observed by
// the front. Thread safety: all methods are safe from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/api.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/metrics_vllm.h"

namespace sluice {

// One finished request as the front saw it.
struct RequestTiming {
  double ttft_s = 0.0;   // arrival to first token
  double e2e_s = 0.0;    // arrival to last token
  double queue_s = 0.0;  // arrival to first scheduling
  int output_tokens = 0;
  std::vector<double> itl_s;  // gaps between consecutive tokens
};

// Speculative decoding's counters under one prefix ("sluice_" or vLLM's "vllm:"):
// verifications, drafts verified, drafts accepted, and accepted drafts by position.
class SpecDecodeMetrics {
 public:
  SpecDecodeMetrics(prometheus::Registry& r, const std::string& prefix, prometheus::Labels labels);
  // REQUIRES: the caller serialises calls.
  void Sync(const EngineStats& s);

 private:
  prometheus::Counter *drafts_, *draft_tokens_, *accepted_;
  prometheus::Family<prometheus::Counter>* per_position_;
  std::vector<prometheus::Counter*> positions_;
  const prometheus::Labels labels_;
  int64_t last_drafts_ = 0, last_draft_tokens_ = 0, last_accepted_ = 0;
  std::vector<int64_t> last_positions_;
};

class Metrics {
 public:
  // SLOs in milliseconds; they become histogram bucket edges and define SLO-met.
  // `cost_per_hour`: the replica's price in USD (0: unset), accrued with wall time.
  Metrics(double slo_ttft_ms, double slo_tpot_ms, double cost_per_hour = 0.0);

  void Arrived();
  // outcome: success, cancelled, error. protocol: http or grpc.
  void Finished(const std::string& outcome, const RequestTiming& timing,
                const std::string& protocol = "http");
  // reason: overloaded, draining, loading, unhealthy, invalid.
  void Rejected(const std::string& reason, const std::string& protocol = "http");

  // The KV cache's shape, once the model is loaded: `sluice_cache_config_info` with
  // labels block_size and num_gpu_blocks (value 1), the info metric the Gateway API
  // Inference Extension's prefix-cache scorer reads.
  void SetCacheConfig(int block_size, int num_blocks);

  // Also exports the vllm: names (--metrics-compat vllm) for `model_name`.
  // REQUIRES: called once, before any request is admitted.
  void EnableVllmCompat(const std::string& model_name);

  // One engine step with work (from the engine thread).
  void ObserveStep(const StepSample& step);

  // The exposition text, with the engine's gauges and counters brought up to date.
  std::string Scrape(const EngineStats* stats);

  // Raises `c` to an engine total it mirrors; `last` is the total already counted.
  static void SyncCounter(prometheus::Counter& c, int64_t total, int64_t& last);

 private:
  static void SyncCounter(prometheus::Counter& c, double total, double& last);
  void SetMemory(const EngineStats& s);

  const double slo_ttft_s_, slo_tpot_s_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge *waiting_, *running_, *kv_usage_;
  prometheus::Counter *prefix_queries_, *prefix_hits_, *preemptions_, *prompt_tokens_,
      *generation_tokens_, *failed_steps_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* rejected_;
  prometheus::Counter *arrived_, *finished_, *slo_met_;
  prometheus::Histogram *ttft_, *itl_, *e2e_, *queue_;
  prometheus::Histogram *step_seconds_, *iteration_tokens_;
  prometheus::Histogram::BucketBoundaries ttft_edges_, itl_edges_, latency_edges_;
  std::unique_ptr<VllmCompatMetrics> vllm_;
  std::unique_ptr<SpecDecodeMetrics> spec_;
  prometheus::Gauge *waiting_tokens_, *kv_used_bytes_, *cost_per_hour_gauge_;
  prometheus::Family<prometheus::Gauge>* memory_;
  prometheus::Family<prometheus::Gauge>* device_memory_;
  prometheus::Counter *cost_total_, *prefill_avoided_;
  const double cost_per_hour_;  // USD
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  double last_cost_ = 0.0, last_prefill_avoided_ = 0.0;  // guarded by mu_
  std::mutex mu_;                                        // guards the last-seen engine totals
  int64_t last_prefix_queries_ = 0, last_prefix_hits_ = 0, last_preemptions_ = 0,
          last_prompt_tokens_ = 0, last_generation_tokens_ = 0, last_failed_steps_ = 0;
};

}  // namespace sluice
