// CPU backend speed on the embedded model: prefill tokens/s and single-sequence decode
// tokens/s, on 1 thread and on every CPU the process may use (the second argument).
// Google Benchmark prints the machine it ran on.
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "engine/model/cpu_model.h"
#include "engine/model/generate.h"
#include "sluice/kernels/gemm.h"
#include "sluice/kernels/thread_pool.h"

namespace sluice {
namespace {

CpuModel& Model() {
  static CpuModel* model = [] {
    const char* env = std::getenv("SLUICE_MODEL");
    auto m = CpuModel::Load(env != nullptr ? env : SLUICE_DEFAULT_MODEL_DIR);
    if (!m.ok()) {
      std::fprintf(stderr, "cannot load model: %s\n", m.status().ToString().c_str());
      std::exit(1);
    }
    kernels::cpu::UseSingleThreadedBlas();  // as the engine runs it: our pool, not BLAS's
    return m->release();
  }();
  return *model;
}

// The model on `threads` threads.
CpuModel& ModelOn(int threads) {
  static int current = 0;
  if (threads != current) {
    Model().SetThreadPool(threads > 1 ? std::make_shared<kernels::ThreadPool>(threads) : nullptr);
    current = threads;
  }
  return Model();
}

void ThreadArgs(benchmark::internal::Benchmark* b, int first) {
  for (int threads : {1, kernels::DefaultCpuThreads()}) {
    b->Args({first, threads});
    if (kernels::DefaultCpuThreads() == 1) break;
  }
}

std::vector<int32_t> Prompt(int n) {
  std::vector<int32_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = 100 + (i * 37) % 3000;
  return ids;
}

// Decode: a prompt of 32 tokens, then state.range(0) new tokens (eos ignored), on
// state.range(1) threads.
void BM_Decode(benchmark::State& state) {
  GenerateOptions opts;
  opts.max_tokens = static_cast<int>(state.range(0));
  opts.ignore_eos = true;
  const auto prompt = Prompt(32);
  int64_t tokens = 0;
  for (auto _ : state) {
    auto r = Generate(ModelOn(static_cast<int>(state.range(1))), prompt, opts);
    if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
    tokens += opts.max_tokens;
  }
  state.counters["tok/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Decode)
    ->Apply([](benchmark::internal::Benchmark* b) { ThreadArgs(b, 128); })
    ->ArgNames({"tokens", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Prefill: one forward pass over state.range(0) prompt tokens, on state.range(1) threads.
void BM_Prefill(benchmark::State& state) {
  GenerateOptions opts;
  opts.max_tokens = 1;
  const auto prompt = Prompt(static_cast<int>(state.range(0)));
  int64_t tokens = 0;
  for (auto _ : state) {
    auto r = Generate(ModelOn(static_cast<int>(state.range(1))), prompt, opts);
    if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
    tokens += static_cast<int64_t>(prompt.size());
  }
  state.counters["tok/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Prefill)
    ->Apply([](benchmark::internal::Benchmark* b) {
      ThreadArgs(b, 128);
      ThreadArgs(b, 512);
    })
    ->ArgNames({"tokens", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
