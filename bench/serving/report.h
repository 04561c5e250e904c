// Outputs of a run: the stdout table, the JSON document (--out) and the SVG plot (--plot).
#ifndef SLUICE_BENCH_SERVING_REPORT_H_
#define SLUICE_BENCH_SERVING_REPORT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench/serving/metrics.h"
#include "nlohmann/json.hpp"

namespace sluice::bench {

// One measured level.
struct LevelReport {
  double offered_rate = 0;  // requests/s; +inf: all at once; NaN: closed loop
  int64_t concurrency = 0;  // closed-loop clients or open-loop cap (0: none)
  LevelSummary summary;
  std::map<std::string, int64_t> errors;  // error message (truncated) → count
};

// Counts failed requests by message (first 120 characters).
std::map<std::string, int64_t> CountErrors(const std::vector<RequestResult>& results);

// The level's JSON object: request_rate, concurrency, counts, ttft_ms/tpot_ms/itl_ms/
// e2e_ms ({mean, p50, p90, p99}), request_throughput, output_token_throughput, goodput,
// slo_attainment, ... (see README.md). An infinite or closed-loop rate is null.
nlohmann::json LevelJson(const LevelReport& level);

// The whole document: {"config": config, "results": [levels], "max_goodput": ...}.
// max_goodput is null when no level reaches `min_attainment`.
nlohmann::json RunJson(const nlohmann::json& config, const std::vector<LevelReport>& levels,
                       double min_attainment);

// A fixed-width table, one row per level.
std::string FormatTable(const std::vector<LevelReport>& levels, const Slo& slo);

// An SVG (written by hand) of TTFT/TPOT p50 and p99 and of throughput and goodput
// against the offered rate (the measured request rate for closed-loop levels).
std::string RenderSvg(const std::vector<LevelReport>& levels, const Slo& slo,
                      const std::string& title);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_SERVING_REPORT_H_
