// One scheduler + KV-cache-manager step (Schedule and Update) with 256 running requests
// at 2k-token contexts, the decode steady state. Target: <= 100 us of CPU per step.
#include <memory>
#include <numeric>
#include <vector>

#include "benchmark/benchmark.h"
#include "engine/sched/scheduler.h"

namespace sluice {
namespace {

void BM_SchedulerDecodeStep(benchmark::State& state) {
  const int num_requests = static_cast<int>(state.range(0));
  const int context = static_cast<int>(state.range(1));
  SchedulerConfig c;
  c.max_num_seqs = num_requests;
  c.max_num_batched_tokens = 8192;
  c.max_model_len = 1 << 20;
  c.block_size = 16;
  c.num_blocks = num_requests * (context / 16 + 128);
  c.eos_token_ids = {0};
  Scheduler s(c);
  for (int i = 0; i < num_requests; ++i) {
    auto r = std::make_unique<Request>();
    r->id = static_cast<RequestId>(i + 1);
    r->arrival_seq = r->id;
    r->token_ids.resize(context);
    std::iota(r->token_ids.begin(), r->token_ids.end(), 1 + i * 7);  // distinct prompts
    r->num_prompt_tokens = context;
    r->sampling.max_tokens = 1 << 20;
    r->sampling.ignore_eos = true;
    s.Add(std::move(r));
  }
  // Prefill everything first.
  int32_t token = 1;
  while (s.num_waiting() > 0 || s.num_running() < num_requests) {
    SchedulerOutput out = s.Schedule();
    int samples = 0;
    for (const auto& st : out.scheduled) samples += st.samples;
    benchmark::DoNotOptimize(s.Update(out, StepResult{std::vector<int32_t>(samples, token), {}}));
  }
  std::vector<int32_t> sampled(num_requests);
  for (auto _ : state) {
    SchedulerOutput out = s.Schedule();
    for (int32_t& t : sampled) t = 1 + (token++ % 4000);
    sampled.resize(out.scheduled.size());
    benchmark::DoNotOptimize(s.Update(out, StepResult{sampled, {}}));
  }
  state.counters["running"] = s.num_running();
  state.counters["kv_usage"] = s.kv().Usage();
}
// 1000 steps grow each context by 1000 tokens, inside the blocks reserved above.
BENCHMARK(BM_SchedulerDecodeStep)
    ->Args({256, 2048})
    ->Iterations(1000)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
