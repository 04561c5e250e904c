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

Metrics::Metrics(double slo_ttft_ms, double slo_tpot_ms, double cost_per_hour)
    : slo_ttft_s_(slo_ttft_ms / 1000.0),
      slo_tpot_s_(slo_tpot_ms / 1000.0),
      registry_(std::make_shared<prometheus::Registry>()),
      cost_per_hour_(cost_per_hour) {
  auto& r = *registry_;
  spec_ = std::make_unique<SpecDecodeMetrics>(r, "sluice_", prometheus::Labels{});
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
  ttft_edges_ = Buckets(latency, slo_ttft_s_);
  latency_edges_ = Buckets(latency, 0);
  itl_edges_ = Buckets({0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0},
                       slo_tpot_s_);
  ttft_ = &BuildHistogram()
               .Name("sluice_time_to_first_token_seconds")
               .Help("Time to first token")
               .Register(r)
               .Add({}, ttft_edges_);
  itl_ = &BuildHistogram()
              .Name("sluice_inter_token_latency_seconds")
              .Help("Time between consecutive output tokens")
              .Register(r)
              .Add({}, itl_edges_);
  e2e_ = &BuildHistogram()
              .Name("sluice_e2e_request_latency_seconds")
              .Help("Arrival to last token")
              .Register(r)
              .Add({}, latency_edges_);
  queue_ = &BuildHistogram()
                .Name("sluice_request_queue_time_seconds")
                .Help("Arrival to first scheduling")
                .Register(r)
                .Add({}, latency_edges_);
  step_seconds_ = &BuildHistogram()
                       .Name("sluice_engine_step_seconds")
                       .Help("Duration of engine steps with work (schedule, run, update)")
                       .Register(r)
                       .Add({}, Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                            0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5});
  iteration_tokens_ = &BuildHistogram()
                           .Name("sluice_iteration_tokens")
                           .Help("Tokens computed per engine step (prefill chunks and decodes)")
                           .Register(r)
                           .Add({}, Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256,
                                                                512, 1024, 2048, 4096, 8192});
  waiting_tokens_ = &BuildGauge()
                         .Name("sluice_num_waiting_tokens")
                         .Help("Prompt tokens of the requests waiting to be scheduled")
                         .Register(r)
                         .Add({});
  memory_ = &BuildGauge()
                 .Name("sluice_memory_bytes")
                 .Help("Memory by kind: device memory on CUDA, host memory on the CPU backend")
                 .Register(r);
  for (const char* kind : {"weights", "kv_cache", "activations", "cuda_graphs", "other"}) {
    memory_->Add({{"kind", kind}});
  }
  device_memory_ = &BuildGauge()
                        .Name("sluice_device_memory_bytes")
                        .Help("The GPU's memory as its driver reports it (CUDA backend only)")
                        .Register(r);
  kv_used_bytes_ = &BuildGauge()
                        .Name("sluice_kv_cache_used_bytes")
                        .Help("KV-cache bytes of the blocks requests hold")
                        .Register(r)
                        .Add({});
  cost_per_hour_gauge_ =
      &BuildGauge()
           .Name("sluice_cost_per_hour_usd")
           .Help("The replica's price per hour in USD (--cost-per-hour; 0: unset)")
           .Register(r)
           .Add({});
  cost_per_hour_gauge_->Set(cost_per_hour);
  cost_total_ = &BuildCounter()
                     .Name("sluice_cost_usd_total")
                     .Help("The replica's cost in USD since it started: price x wall time")
                     .Register(r)
                     .Add({});
  prefill_avoided_ = &BuildCounter()
                          .Name("sluice_prefill_seconds_avoided_total")
                          .Help(
                              "Prefill time the prefix cache saved: hit tokens x the measured "
                              "prefill seconds per token")
                          .Register(r)
                          .Add({});
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

void Metrics::EnableVllmCompat(const std::string& model_name) {
  std::lock_guard<std::mutex> lock(mu_);  // a scrape may run meanwhile
  vllm_ = std::make_unique<VllmCompatMetrics>(*registry_, model_name, ttft_edges_, itl_edges_,
                                              latency_edges_);
}

void Metrics::ObserveStep(const StepSample& step) {
  step_seconds_->Observe(step.seconds);
  iteration_tokens_->Observe(step.num_tokens);
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
  if (vllm_) vllm_->Finished(t);
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

void Metrics::SyncCounter(prometheus::Counter& c, double total, double& last) {
  if (total > last) c.Increment(total - last);
  last = std::max(last, total);
}

void Metrics::SetMemory(const EngineStats& s) {
  const MemoryUsage& m = s.memory;
  memory_->Add({{"kind", "weights"}}).Set(static_cast<double>(m.weights));
  memory_->Add({{"kind", "kv_cache"}}).Set(static_cast<double>(m.kv_cache));
  memory_->Add({{"kind", "activations"}}).Set(static_cast<double>(m.activations));
  memory_->Add({{"kind", "cuda_graphs"}}).Set(static_cast<double>(m.cuda_graphs));
  memory_->Add({{"kind", "other"}}).Set(static_cast<double>(m.other));
  if (m.device_total > 0) {
    device_memory_->Add({{"state", "total"}}).Set(static_cast<double>(m.device_total));
    device_memory_->Add({{"state", "used"}}).Set(static_cast<double>(m.device_used));
  }
  kv_used_bytes_->Set(static_cast<double>(s.kv_used_bytes));
}

SpecDecodeMetrics::SpecDecodeMetrics(prometheus::Registry& r, const std::string& prefix,
                                     prometheus::Labels labels)
    : labels_(std::move(labels)) {
  auto counter = [&](const std::string& name, const std::string& help) {
    return &BuildCounter().Name(prefix + name).Help(help).Register(r).Add(labels_);
  };
  drafts_ = counter("spec_decode_num_drafts_total",
                    "Speculative verifications: one request's drafts checked in one step");
  draft_tokens_ = counter("spec_decode_num_draft_tokens_total", "Draft tokens verified");
  accepted_ = counter("spec_decode_num_accepted_tokens_total", "Draft tokens accepted");
  per_position_ = &BuildCounter()
                       .Name(prefix + "spec_decode_num_accepted_tokens_per_pos_total")
                       .Help("Draft tokens accepted, by position among a step's drafts (0: first)")
                       .Register(r);
}

void SpecDecodeMetrics::Sync(const EngineStats& s) {
  Metrics::SyncCounter(*drafts_, s.spec_num_drafts, last_drafts_);
  Metrics::SyncCounter(*draft_tokens_, s.spec_num_draft_tokens, last_draft_tokens_);
  Metrics::SyncCounter(*accepted_, s.spec_num_accepted_tokens, last_accepted_);
  for (size_t p = positions_.size(); p < s.spec_accepted_per_position.size(); ++p) {
    prometheus::Labels labels = labels_;
    labels["position"] = std::to_string(p);
    positions_.push_back(&per_position_->Add(labels));
    last_positions_.push_back(0);
  }
  for (size_t p = 0; p < s.spec_accepted_per_position.size(); ++p) {
    Metrics::SyncCounter(*positions_[p], s.spec_accepted_per_position[p], last_positions_[p]);
  }
}

std::string Metrics::Scrape(const EngineStats* s) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const double hours =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count() / 3600.0;
    SyncCounter(*cost_total_, cost_per_hour_ * hours, last_cost_);
  }
  if (s != nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    SetMemory(*s);
    if (vllm_) vllm_->Sync(*s);
    spec_->Sync(*s);
    waiting_tokens_->Set(static_cast<double>(s->num_waiting_tokens));
    SyncCounter(*prefill_avoided_, s->prefill_seconds_avoided, last_prefill_avoided_);
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
