#include "server/metrics_vllm.h"
#include "server/metrics.h"

namespace sluice {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

}  // namespace

VllmCompatMetrics::VllmCompatMetrics(prometheus::Registry& r, const std::string& model,
                                     const prometheus::Histogram::BucketBoundaries& ttft,
                                     const prometheus::Histogram::BucketBoundaries& itl,
                                     const prometheus::Histogram::BucketBoundaries& latency) {
  const prometheus::Labels labels = {{"model_name", model}};
  auto gauge = [&](const char* name, const char* help) {
    return &BuildGauge().Name(name).Help(help).Register(r).Add(labels);
  };
  auto counter = [&](const char* name, const char* help) {
    return &BuildCounter().Name(name).Help(help).Register(r).Add(labels);
  };
  auto histogram = [&](const char* name, const char* help,
                       const prometheus::Histogram::BucketBoundaries& edges) {
    return &BuildHistogram().Name(name).Help(help).Register(r).Add(labels, edges);
  };
  running_ = gauge("vllm:num_requests_running", "Requests in the running batch");
  waiting_ = gauge("vllm:num_requests_waiting", "Requests waiting to be scheduled");
  kv_usage_ = gauge("vllm:kv_cache_usage_perc", "Fraction of KV-cache blocks in use (0..1)");
  prompt_tokens_ = counter("vllm:prompt_tokens_total", "Prompt tokens admitted");
  generation_tokens_ = counter("vllm:generation_tokens_total", "Tokens generated");
  prefix_queries_ =
      counter("vllm:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache");
  prefix_hits_ = counter("vllm:prefix_cache_hits_total", "Prompt tokens served from the cache");
  preemptions_ = counter("vllm:num_preemptions_total", "Requests preempted for KV space");
  success_ = counter("vllm:request_success_total", "Requests that finished normally");
  ttft_ = histogram("vllm:time_to_first_token_seconds", "Time to first token", ttft);
  itl_ = histogram("vllm:inter_token_latency_seconds", "Time between output tokens", itl);
  e2e_ = histogram("vllm:e2e_request_latency_seconds", "Arrival to last token", latency);
  queue_ = histogram("vllm:request_queue_time_seconds", "Arrival to first scheduling", latency);
  spec_ = std::make_unique<SpecDecodeMetrics>(r, "vllm:", labels);
}

VllmCompatMetrics::~VllmCompatMetrics() = default;

void VllmCompatMetrics::Finished(const RequestTiming& t) {
  success_->Increment();
  ttft_->Observe(t.ttft_s);
  e2e_->Observe(t.e2e_s);
  queue_->Observe(t.queue_s);
  for (double gap : t.itl_s) itl_->Observe(gap);
}

void VllmCompatMetrics::Sync(const EngineStats& s) {
  running_->Set(s.num_running);
  waiting_->Set(s.num_waiting);
  kv_usage_->Set(s.kv_usage);
  Metrics::SyncCounter(*prompt_tokens_, s.prompt_tokens, last_prompt_);
  Metrics::SyncCounter(*generation_tokens_, s.generation_tokens, last_generation_);
  Metrics::SyncCounter(*prefix_queries_, s.prefix_queried_tokens, last_queries_);
  Metrics::SyncCounter(*prefix_hits_, s.prefix_hit_tokens, last_hits_);
  Metrics::SyncCounter(*preemptions_, s.num_preemptions, last_preemptions_);
  spec_->Sync(s);
}

}  // namespace sluice
