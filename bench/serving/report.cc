#include "bench/serving/report.h"

#include <cmath>

#include "fmt/format.h"

namespace sluice::bench {
namespace {

nlohmann::json StatsJson(const Stats& s) {
  return {{"mean", s.mean}, {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"count", s.count}};
}

nlohmann::json RateJson(double rate) {
  return std::isfinite(rate) ? nlohmann::json(rate) : nlohmann::json(nullptr);
}

std::string RateText(const LevelReport& l) {
  if (std::isnan(l.offered_rate)) return fmt::format("c={}", l.concurrency);
  if (std::isinf(l.offered_rate)) return "inf";
  return fmt::format("{:.2f}", l.offered_rate);
}

}  // namespace

std::map<std::string, int64_t> CountErrors(const std::vector<RequestResult>& results) {
  std::map<std::string, int64_t> errors;
  for (const RequestResult& r : results) {
    if (!r.ok) ++errors[r.error.substr(0, 120)];
  }
  return errors;
}

nlohmann::json LevelJson(const LevelReport& level) {
  const LevelSummary& s = level.summary;
  return {{"request_rate", RateJson(level.offered_rate)},
          {"closed_loop", std::isnan(level.offered_rate)},
          {"concurrency", level.concurrency},
          {"num_requests", s.num_issued},
          {"completed", s.completed},
          {"failed", s.failed},
          {"good_requests", s.good},
          {"duration_s", s.duration_s},
          {"total_input_tokens", s.total_input_tokens},
          {"total_output_tokens", s.total_output_tokens},
          {"total_cached_tokens", s.total_cached_tokens},
          {"request_throughput", s.request_throughput},
          {"output_token_throughput", s.output_token_throughput},
          {"total_token_throughput", s.total_token_throughput},
          {"goodput", s.goodput},
          {"slo_attainment", s.slo_attainment},
          {"ttft_ms", StatsJson(s.ttft_ms)},
          {"tpot_ms", StatsJson(s.tpot_ms)},
          {"itl_ms", StatsJson(s.itl_ms)},
          {"e2e_ms", StatsJson(s.e2e_ms)},
          {"cost_usd", s.cost_usd},
          {"usd_per_million_output_tokens", s.usd_per_million_output_tokens},
          {"usd_per_slo_met_request", s.usd_per_slo_met_request},
          {"errors", level.errors}};
}

nlohmann::json RunJson(const nlohmann::json& config, const std::vector<LevelReport>& levels,
                       double min_attainment) {
  nlohmann::json results = nlohmann::json::array();
  std::vector<double> rates;
  std::vector<LevelSummary> summaries;
  for (const LevelReport& l : levels) {
    results.push_back(LevelJson(l));
    rates.push_back(std::isnan(l.offered_rate) ? l.summary.request_throughput : l.offered_rate);
    summaries.push_back(l.summary);
  }
  nlohmann::json best = nullptr;
  if (std::optional<size_t> i = MaxGoodputLevel(rates, summaries, min_attainment)) {
    best = {{"request_rate", RateJson(levels[*i].offered_rate)},
            {"goodput", summaries[*i].goodput},
            {"slo_attainment", summaries[*i].slo_attainment},
            {"min_attainment", min_attainment},
            {"usd_per_million_output_tokens", summaries[*i].usd_per_million_output_tokens},
            {"usd_per_slo_met_request", summaries[*i].usd_per_slo_met_request}};
  }
  return {{"config", config}, {"results", results}, {"max_goodput", best}};
}

std::string FormatTable(const std::vector<LevelReport>& levels, const Slo& slo) {
  std::string out = fmt::format(
      "SLO: TTFT {} ms, TPOT {} ms\n"
      "{:>8} {:>6} {:>5} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7}\n",
      slo.ttft_ms ? fmt::format("{:g}", *slo.ttft_ms) : "-",
      slo.tpot_ms ? fmt::format("{:g}", *slo.tpot_ms) : "-", "rate", "done", "fail", "req/s",
      "out_tok/s", "ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "itl_p50", "e2e_p50", "goodput",
      "attain");
  for (const LevelReport& l : levels) {
    const LevelSummary& s = l.summary;
    out += fmt::format(
        "{:>8} {:>6} {:>5} {:>8.2f} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.2f} {:>9.2f} {:>9.2f} "
        "{:>9.1f} {:>8.2f} {:>6.1f}%\n",
        RateText(l), s.completed, s.failed, s.request_throughput, s.output_token_throughput,
        s.ttft_ms.p50, s.ttft_ms.p99, s.tpot_ms.p50, s.tpot_ms.p99, s.itl_ms.p50, s.e2e_ms.p50,
        s.goodput, s.slo_attainment * 100);
  }
  for (const LevelReport& l : levels) {
    const LevelSummary& s = l.summary;
    if (s.cost_usd <= 0) continue;
    out += fmt::format(
        "{:>8} cost ${:.6f} over {:.1f} s: ${:.4f} per 1M output tokens, ${:.6f} per SLO-met "
        "request\n",
        RateText(l), s.cost_usd, s.duration_s, s.usd_per_million_output_tokens,
        s.usd_per_slo_met_request);
  }
  return out;
}

}  // namespace sluice::bench
