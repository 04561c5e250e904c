#include "bench/serving/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace sluice::bench {

double Percentile(const std::vector<double>& sorted, double p) {
  const double k = (static_cast<double>(sorted.size()) - 1) * p / 100.0;
  const size_t lo = static_cast<size_t>(std::floor(k));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (k - static_cast<double>(lo));
}

Stats ComputeStats(std::vector<double> values_s) {
  Stats s;
  s.count = static_cast<int64_t>(values_s.size());
  if (values_s.empty()) return s;
  std::sort(values_s.begin(), values_s.end());
  const double sum = std::accumulate(values_s.begin(), values_s.end(), 0.0);
  s.mean = sum / static_cast<double>(values_s.size()) * 1000.0;
  s.p50 = Percentile(values_s, 50) * 1000.0;
  s.p90 = Percentile(values_s, 90) * 1000.0;
  s.p99 = Percentile(values_s, 99) * 1000.0;
  return s;
}

double TimePerOutputToken(const RequestResult& r) {
  if (r.output_tokens <= 1) return 0;
  return (r.e2e_s - r.ttft_s) / static_cast<double>(r.output_tokens - 1);
}

bool MeetsSlo(const RequestResult& r, const Slo& slo) {
  if (!r.ok) return false;
  if (slo.ttft_ms && r.ttft_s * 1000.0 > *slo.ttft_ms) return false;
  if (slo.tpot_ms && TimePerOutputToken(r) * 1000.0 > *slo.tpot_ms) return false;
  return true;
}

LevelSummary Summarize(const std::vector<RequestResult>& results, double duration_s,
                       const Slo& slo) {
  LevelSummary s;
  std::vector<double> ttft, tpot, itl, e2e;
  for (const RequestResult& r : results) {
    ++s.num_issued;
    if (!r.ok) {
      ++s.failed;
      continue;
    }
    ++s.completed;
    if (MeetsSlo(r, slo)) ++s.good;
    s.total_input_tokens += r.prompt_tokens >= 0 ? r.prompt_tokens : r.expected_prompt_tokens;
    s.total_output_tokens += r.output_tokens;
    s.total_cached_tokens += r.cached_tokens;
    ttft.push_back(r.ttft_s);
    e2e.push_back(r.e2e_s);
    if (r.output_tokens > 1) tpot.push_back(TimePerOutputToken(r));
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
  }
  s.duration_s = duration_s;
  if (duration_s > 0) {
    s.request_throughput = static_cast<double>(s.completed) / duration_s;
    s.output_token_throughput = static_cast<double>(s.total_output_tokens) / duration_s;
    s.total_token_throughput =
        static_cast<double>(s.total_input_tokens + s.total_output_tokens) / duration_s;
    s.goodput = static_cast<double>(s.good) / duration_s;
  }
  if (s.num_issued > 0) {
    s.slo_attainment = static_cast<double>(s.good) / static_cast<double>(s.num_issued);
  }
  s.ttft_ms = ComputeStats(std::move(ttft));
  s.tpot_ms = ComputeStats(std::move(tpot));
  s.itl_ms = ComputeStats(std::move(itl));
  s.e2e_ms = ComputeStats(std::move(e2e));
  return s;
}

std::optional<size_t> MaxGoodputLevel(const std::vector<double>& rates,
                                      const std::vector<LevelSummary>& summaries,
                                      double min_attainment) {
  std::optional<size_t> best;
  for (size_t i = 0; i < summaries.size(); ++i) {
    if (summaries[i].num_issued == 0 || summaries[i].slo_attainment < min_attainment) continue;
    if (!best || rates[i] > rates[*best]) best = i;
  }
  return best;
}

void ApplyCost(LevelSummary& s, double cost_per_hour) {
  if (cost_per_hour <= 0) return;
  s.cost_usd = cost_per_hour * s.duration_s / 3600.0;
  s.usd_per_million_output_tokens =
      s.total_output_tokens > 0 ? s.cost_usd / static_cast<double>(s.total_output_tokens) * 1e6 : 0;
  s.usd_per_slo_met_request = s.good > 0 ? s.cost_usd / static_cast<double>(s.good) : 0;
}

}  // namespace sluice::bench
