// `--metrics-compat vllm`: the `vllm:` series that vLLM dashboards, the Gateway API
// Inference Extension and KEDA examples query, exported beside Sluice's own from the same
// figures, with vLLM's model_name label. Thread safety: as Metrics (it is Metrics's).
#pragma once

#include <memory>
#include <string>

#include "engine/api.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace sluice {

struct RequestTiming;
class SpecDecodeMetrics;

class VllmCompatMetrics {
 public:
  VllmCompatMetrics(prometheus::Registry& registry, const std::string& model_name,
                    const prometheus::Histogram::BucketBoundaries& ttft,
                    const prometheus::Histogram::BucketBoundaries& itl,
                    const prometheus::Histogram::BucketBoundaries& latency);
  ~VllmCompatMetrics();

  // A request that finished well, as Metrics::Finished observes it.
  void Finished(const RequestTiming& timing);
  // The engine's gauges and counter totals at scrape time. REQUIRES: the caller
  // serializes scrapes (Metrics's mutex).
  void Sync(const EngineStats& s);

 private:
  prometheus::Gauge *running_, *waiting_, *kv_usage_;
  prometheus::Counter *prompt_tokens_, *generation_tokens_, *prefix_queries_, *prefix_hits_,
      *preemptions_, *success_;
  prometheus::Histogram *ttft_, *itl_, *e2e_, *queue_;
  std::unique_ptr<SpecDecodeMetrics> spec_;
  int64_t last_prompt_ = 0, last_generation_ = 0, last_queries_ = 0, last_hits_ = 0,
          last_preemptions_ = 0;
};

}  // namespace sluice
