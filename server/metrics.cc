#include "server/metrics.h"

#include <algorithm>

#include "prometheus/text_serializer.h"

namespace sluice {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

// Default edges with the SLO added, sorted and unique.
Histogram::BucketBoundaries Buckets(std::vector<double> edges, double slo_s) {
  if (slo_s > 0) edges.push_back(slo_s);
  std::sort(edges.begin(), edges.end());
  edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
  return edges;
}

}  // namespace

Metrics::Metrics(double slo_ttft_ms, double slo_tpot_ms)
    : slo_ttft_s_(slo_ttft_ms / 1000.0),
      slo_tpot_s_(slo_tpot_ms / 1000.0),
      registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  waiting_ = &BuildGauge()
                  .Name("sluice_num_requests_waiting")
                  .Help("Requests waiting to be scheduled")
                  .Register(r)
                  .Add({});
  running_ = &BuildGauge()
                  .Name("sluice_num_requests_running")
                  .Help("Requests in the running batch")
                  .Register(r)
                  .Add({});
  kv_usage_ = &BuildGauge()
                   .Name("sluice_kv_cache_usage_ratio")
                   .Help("Fraction of KV-cache blocks in use (0..1)")
                   .Register(r)
                   .Add({});
  prefix_queries_ = &BuildCounter()
                         .Name("sluice_prefix_cache_queries_tokens_total")
                         .Help("Prompt tokens looked up in the prefix cache")
                         .Register(r)
                         .Add({});
  prefix_hits_ = &BuildCounter()
                      .Name("sluice_prefix_cache_hits_tokens_total")
                      .Help("Prompt tokens served from the prefix cache")
                      .Register(r)
                      .Add({});
  preemptions_ = &BuildCounter()
                      .Name("sluice_num_preemptions_total")
                      .Help("Requests preempted for KV-cache space")
                      .Register(r)
                      .Add({});
  prompt_tokens_ = &BuildCounter()
                        .Name("sluice_prompt_tokens_total")
                        .Help("Prompt tokens admitted")
                        .Register(r)
                        .Add({});
  generation_tokens_ = &BuildCounter()
                            .Name("sluice_generation_tokens_total")
                            .Help("Tokens generated")
                            .Register(r)
                            .Add({});
  failed_steps_ = &BuildCounter()
                       .Name("sluice_engine_failed_steps_total")
                       .Help("Engine steps that failed (their requests failed with them)")
                       .Register(r)
                       .Add({});
  requests_ = &BuildCounter()
                   .Name("sluice_requests_total")
                   .Help("Requests answered, by outcome")
                   .Register(r);
  rejected_ = &BuildCounter()
                   .Name("sluice_requests_rejected_total")
                   .Help("Requests refused, by reason")
                   .Register(r);
  arrived_ = &BuildCounter()
                  .Name("sluice_requests_arrived_total")
                  .Help("Generation requests received")
                  .Register(r)
                  .Add({});
  finished_ = &BuildCounter()
                   .Name("sluice_requests_finished_total")
                   .Help("Generation requests finished normally")
                   .Register(r)
                   .Add({});
  slo_met_ = &BuildCounter()
                  .Name("sluice_requests_slo_met_total")
                  .Help("Finished requests that met both the TTFT and the TPOT SLO")
                  .Register(r)
                  .Add({});
  const std::vector<double> latency = {0.005, 0.01, 0.025, 0.05, 0.1,  0.25, 0.5,
                                       1.0,   2.5,  5.0,   10.0, 30.0, 60.0};
  ttft_ = &BuildHistogram()
               .Name("sluice_time_to_first_token_seconds")
               .Help("Time to first token")
               .Register(r)
               .Add({}, Buckets(latency, slo_ttft_s_));
  itl_ =
      &BuildHistogram()
           .Name("sluice_inter_token_latency_seconds")
           .Help("Time between consecutive output tokens")
           .Register(r)
           .Add({},
                Buckets({0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0},
                        slo_tpot_s_));
  e2e_ = &BuildHistogram()
              .Name("sluice_e2e_request_latency_seconds")
              .Help("Arrival to last token")
              .Register(r)
              .Add({}, Buckets(latency, 0));
  queue_ = &BuildHistogram()
                .Name("sluice_request_queue_time_seconds")
                .Help("Arrival to first scheduling")
                .Register(r)
                .Add({}, Buckets(latency, 0));
  for (const char* protocol : {"http", "grpc"}) {
    for (const char* outcome : {"success", "cancelled", "error", "rejected"}) {
      requests_->Add({{"outcome", outcome}, {"protocol", protocol}});
    }
    for (const char* reason : {"overloaded", "draining", "loading", "unhealthy", "invalid"}) {
      rejected_->Add({{"reason", reason}, {"protocol", protocol}});
    }
  }
}

void Metrics::SetCacheConfig(int block_size, int num_blocks) {
  BuildGauge()
      .Name("sluice_cache_config_info")
      .Help("KV cache shape: tokens per block and blocks in the cache")
      .Register(*registry_)
      .Add({{"block_size", std::to_string(block_size)},
            {"num_gpu_blocks", std::to_string(num_blocks)}})
      .Set(1);
}

void Metrics::Arrived() { arrived_->Increment(); }

void Metrics::Finished(const std::string& outcome, const RequestTiming& t,
                       const std::string& protocol) {
  requests_->Add({{"outcome", outcome}, {"protocol", protocol}}).Increment();
  if (outcome != "success") return;
  finished_->Increment();
  ttft_->Observe(t.ttft_s);
  e2e_->Observe(t.e2e_s);
  queue_->Observe(t.queue_s);
  for (double gap : t.itl_s) itl_->Observe(gap);
  const double tpot = t.output_tokens > 1 ? (t.e2e_s - t.ttft_s) / (t.output_tokens - 1) : 0.0;
  const bool ttft_ok = slo_ttft_s_ <= 0 || t.ttft_s <= slo_ttft_s_;
  const bool tpot_ok = slo_tpot_s_ <= 0 || tpot <= slo_tpot_s_;
  if (ttft_ok && tpot_ok) slo_met_->Increment();
}

void Metrics::Rejected(const std::string& reason, const std::string& protocol) {
  rejected_->Add({{"reason", reason}, {"protocol", protocol}}).Increment();
  requests_->Add({{"outcome", "rejected"}, {"protocol", protocol}}).Increment();
}

void Metrics::SyncCounter(prometheus::Counter& c, int64_t total, int64_t& last) {
  if (total > last) c.Increment(static_cast<double>(total - last));
  last = std::max(last, total);
}

std::string Metrics::Scrape(const EngineStats* s) {
  if (s != nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_->Set(s->num_waiting);
    running_->Set(s->num_running);
    kv_usage_->Set(s->kv_usage);
    SyncCounter(*prefix_queries_, s->prefix_queried_tokens, last_prefix_queries_);
    SyncCounter(*prefix_hits_, s->prefix_hit_tokens, last_prefix_hits_);
    SyncCounter(*preemptions_, s->num_preemptions, last_preemptions_);
    SyncCounter(*prompt_tokens_, s->prompt_tokens, last_prompt_tokens_);
    SyncCounter(*generation_tokens_, s->generation_tokens, last_generation_tokens_);
    SyncCounter(*failed_steps_, s->num_failed_steps, last_failed_steps_);
  }
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace sluice
