// Per-request measurements and their summary, with the definitions of
// `vllm bench serve` (see bench/serving/README.md). Pure functions: no I/O, no clocks.
#ifndef SLUICE_BENCH_SERVING_METRICS_H_
#define SLUICE_BENCH_SERVING_METRICS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sluice::bench {

// What one request measured. Times are seconds from the moment the client began the
// request (connect included), as in vllm's `st = time.perf_counter()` before the POST.
struct RequestResult {
  bool ok = false;                     // HTTP 200 and at least one chunk with choices
  std::string error;                   // why not ok
  double start_s = 0;                  // start, seconds from the start of the level
  double ttft_s = 0;                   // first chunk with a non-empty `choices`
  double e2e_s = 0;                    // last chunk with a non-empty `choices`
  std::vector<double> itl_s;           // gaps between consecutive chunks with `choices`
  int64_t prompt_tokens = -1;          // usage.prompt_tokens; -1 when the server sent no usage
  int64_t output_tokens = 0;           // usage.completion_tokens, else the number of chunks
  int64_t cached_tokens = 0;           // usage.prompt_tokens_details.cached_tokens (0 if absent)
  int64_t expected_prompt_tokens = 0;  // what the workload asked for (for reporting)
};

// SLOs for goodput; an absent one is not checked.
struct Slo {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
};

// Mean and percentiles of one metric, in milliseconds. All 0 when there is no sample
// (numpy's `np.mean(x or 0)`, as vllm reports it).
struct Stats {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
  int64_t count = 0;
};

// One load level's summary.
struct LevelSummary {
  int64_t num_issued = 0;  // requests sent
  int64_t completed = 0;   // ok requests
  int64_t failed = 0;
  int64_t good = 0;  // completed and within every SLO given
  int64_t total_input_tokens = 0;
  int64_t total_output_tokens = 0;
  int64_t total_cached_tokens = 0;     // prompt tokens the server reports as prefix-cache hits
  double duration_s = 0;               // first request start to last request end
  double request_throughput = 0;       // completed / duration
  double output_token_throughput = 0;  // total_output_tokens / duration
  double total_token_throughput = 0;   // (input + output) / duration
  double goodput = 0;                  // good / duration
  double slo_attainment = 0;           // good / num_issued
  Stats ttft_ms, tpot_ms, itl_ms, e2e_ms;
  // With --cost-per-hour (else 0): the level's cost (price x duration), over its output
  // tokens (per million) and over its SLO-met requests.
  double cost_usd = 0;
  double usd_per_million_output_tokens = 0;
  double usd_per_slo_met_request = 0;
};

// Fills the cost fields of `s` for a replica priced `cost_per_hour` USD.
void ApplyCost(LevelSummary& s, double cost_per_hour);

// numpy.percentile with linear interpolation; `p` in [0, 100].
// REQUIRES: `sorted` ascending and non-empty.
double Percentile(const std::vector<double>& sorted, double p);

// Mean/p50/p90/p99 of `values_s` (seconds), reported in milliseconds.
Stats ComputeStats(std::vector<double> values_s);

// TPOT of one request: (e2e − ttft) / (output_tokens − 1); 0 when output_tokens ≤ 1
// (vllm counts such a request as meeting any TPOT SLO and leaves it out of the stats).
double TimePerOutputToken(const RequestResult& r);

// True when `r` completed within every SLO in `slo` (bounds inclusive, as in vllm).
bool MeetsSlo(const RequestResult& r, const Slo& slo);

// Summarizes one level. `duration_s` is the benchmark duration (vllm: from the first
// request sent to the last response finished).
LevelSummary Summarize(const std::vector<RequestResult>& results, double duration_s,
                       const Slo& slo);

// The highest offered rate whose SLO attainment is ≥ `min_attainment` (DistServe's
// per-replica goodput); nullopt when no level qualifies. `rates[i]` belongs to
// `summaries[i]`. REQUIRES: rates.size() == summaries.size().
std::optional<size_t> MaxGoodputLevel(const std::vector<double>& rates,
                                      const std::vector<LevelSummary>& summaries,
                                      double min_attainment = 0.9);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_SERVING_METRICS_H_
