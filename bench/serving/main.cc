// sluice-bench: open-loop load generator for OpenAI-compatible servers. Measures TTFT,
// TPOT, ITL, E2E, throughput, goodput and SLO attainment per offered rate; see README.md.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/serving/load_runner.h"
#include "bench/serving/report.h"
#include "bench/serving/workload.h"
#include "fmt/format.h"
#include "spdlog/spdlog.h"

namespace sluice::bench {
namespace {

struct Options {
  std::string api_key;
  std::string url, model = "sluice-tiny-code", endpoint = "completions", dataset = "synthetic",
                   arrival = "poisson", out, plot, sweep;
  int64_t input_len = 256, output_len = 128, num_requests = 100, concurrency = 0;
  int64_t num_prefixes = 4, num_users = 8, prefix_len = -1, search_steps = 0;
  double range_ratio = 0, burstiness = 1, duration_s = 0, timeout_s = 600;
  double min_attainment = 0.9;
  double cost_per_hour = 0;  // USD for the replica under test; 0: no cost figures
  std::optional<double> request_rate, slo_ttft_ms, slo_tpot_ms;
  bool ignore_eos = true, calibrate = true;
  uint64_t seed = 0;
};

// A bar redrawn in place on a terminal; on a pipe or file, a line per 10%.
void Progress(double rate, int64_t done, int64_t total) {
  const std::string label = std::isnan(rate) ? "closed loop" : fmt::format("rate {:g}", rate);
  if (!isatty(fileno(stderr))) {
    if (total > 0 && done * 10 / total != (done - 1) * 10 / total) {
      std::fprintf(stderr, "%s: %lld/%lld requests\n", label.c_str(), static_cast<long long>(done),
                   static_cast<long long>(total));
    }
    return;
  }
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * done / total) : width;
  std::fprintf(stderr, "\r[%s%s] %lld/%lld  %s", std::string(filled, '#').c_str(),
               std::string(width - filled, '.').c_str(), static_cast<long long>(done),
               static_cast<long long>(total), label.c_str());
  if (done == total) std::fprintf(stderr, "\n");
}

// Measures tokens per word on the server: two probes of 50 and 250 words, max_tokens 1.
TokenModel Calibrate(const Target& target, const BodyOptions& body_options, double timeout) {
  std::mt19937_64 rng(12345);
  int64_t tokens[2] = {-1, -1};
  const int64_t words[2] = {50, 250};
  for (int i = 0; i < 2; ++i) {
    WorkItem item{"", RandomWords(rng, words[i]), 0, 1};
    absl::StatusOr<RequestResult> r = SendOne(target, RequestBody(item, body_options), timeout);
    if (!r.ok() || !r->ok || r->prompt_tokens < 0) {
      spdlog::warn("tokenizer probe failed ({}); assuming 1 token per word",
                   r.ok() ? (r->ok ? "no usage in the stream" : r->error) : r.status().ToString());
      return TokenModel{};
    }
    tokens[i] = r->prompt_tokens;
  }
  TokenModel tm = FitTokenModel(words[0], tokens[0], words[1], tokens[1]);
  spdlog::info("prompt tokens ≈ {:.2f} + {:.3f} × words", tm.overhead, tm.per_word);
  return tm;
}

// The workload of one level. NOTE: each level draws its prompts with its own seed, so
// that no level hits the prefix cache with an earlier level's prompts (only the
// prefix workload shares prompts, and only within a level).
absl::StatusOr<std::vector<WorkItem>> MakeWorkload(const Options& o, const TokenModel& tm,
                                                   uint64_t level) {
  const uint64_t seed = o.seed + level * 1000003;
  if (o.dataset == "synthetic") {
    return SyntheticWorkload({o.num_requests, o.input_len, o.output_len, o.range_ratio, seed}, tm);
  }
  if (o.dataset == "prefix") {
    const int64_t prefix_len = o.prefix_len >= 0 ? o.prefix_len : o.input_len / 2;
    if (prefix_len <= 0 || prefix_len >= o.input_len) {
      return absl::InvalidArgumentError("--prefix-len must be in (0, --input-len)");
    }
    return PrefixWorkload(
        {o.num_requests, o.num_prefixes, o.num_users, prefix_len, o.input_len, o.output_len, seed},
        tm);
  }
  if (o.dataset.rfind("sharegpt:", 0) == 0) {
    return ShareGptWorkload(o.dataset.substr(9), o.num_requests, o.output_len, seed, tm);
  }
  return absl::InvalidArgumentError(
      "--dataset: expected synthetic, prefix or sharegpt:FILE, got '" + o.dataset + "'");
}

// This machine's name, for the record of where the client ran.
std::string HostName() {
  char name[256] = {};
  return gethostname(name, sizeof(name) - 1) == 0 ? std::string(name) : std::string();
}

// Writes `text` to `path`; logs and returns false on failure.
bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) spdlog::error("cannot write {}", path);
  return static_cast<bool>(out);
}

absl::StatusOr<std::vector<double>> ParseRates(const std::string& text) {
  std::vector<double> rates;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    try {
      rates.push_back(item == "inf" ? std::numeric_limits<double>::infinity() : std::stod(item));
    } catch (const std::exception&) {
      return absl::InvalidArgumentError("--sweep: '" + item + "' is not a rate");
    }
    if (!(rates.back() > 0)) return absl::InvalidArgumentError("--sweep: rates must be > 0");
  }
  return rates;
}

int Run(const Options& o) {
  const Endpoint endpoint = o.endpoint == "chat" ? Endpoint::kChat : Endpoint::kCompletions;
  absl::StatusOr<Target> target = ParseTarget(o.url, endpoint);
  if (!target.ok()) return spdlog::error("{}", target.status().ToString()), 2;
  target->api_key = o.api_key;
  ArrivalConfig arrivals{ArrivalKind::kPoisson, 1.0, o.burstiness, o.seed};
  if (!ParseArrivalKind(o.arrival, &arrivals.kind)) {
    return spdlog::error("--arrival: expected poisson, gamma or constant"), 2;
  }
  if (o.burstiness != 1.0 && arrivals.kind == ArrivalKind::kPoisson) {
    arrivals.kind = ArrivalKind::kGamma;  // Poisson is gamma with shape 1
  }
  std::vector<double> rates;  // NaN: closed loop
  if (!o.sweep.empty()) {
    absl::StatusOr<std::vector<double>> r = ParseRates(o.sweep);
    if (!r.ok()) return spdlog::error("{}", r.status().ToString()), 2;
    rates = *r;
  } else if (o.request_rate) {
    rates = {*o.request_rate};
  } else if (o.concurrency > 0) {
    rates = {std::numeric_limits<double>::quiet_NaN()};
  } else {
    rates = {std::numeric_limits<double>::infinity()};
  }
  const BodyOptions body_options{endpoint, o.model, o.ignore_eos, 0.0};
  const TokenModel tm = o.calibrate ? Calibrate(*target, body_options, o.timeout_s) : TokenModel{};
  const Slo slo{o.slo_ttft_ms, o.slo_tpot_ms};
  std::vector<LevelReport> levels;
  auto run_level = [&](double rate) -> bool {
    absl::StatusOr<std::vector<WorkItem>> items = MakeWorkload(o, tm, levels.size());
    if (!items.ok()) return spdlog::error("{}", items.status().ToString()), false;
    std::vector<PreparedRequest> requests;
    for (const WorkItem& item : *items) {
      requests.push_back({RequestBody(item, body_options), item.expected_input_tokens});
    }
    LevelConfig config;
    config.closed_loop = std::isnan(rate);
    config.arrivals = arrivals;
    config.arrivals.rate = rate;
    config.concurrency = o.concurrency;
    config.num_requests = o.num_requests;
    config.duration_s = o.duration_s;
    config.request_timeout_s = o.timeout_s;
    absl::StatusOr<LevelRun> run =
        RunLevel(*target, requests, config, [&](int64_t d, int64_t t) { Progress(rate, d, t); });
    if (!run.ok()) return spdlog::error("{}", run.status().ToString()), false;
    if (static_cast<int64_t>(run->results.size()) < o.num_requests && isatty(fileno(stderr))) {
      std::fprintf(stderr, "\n");  // the bar stopped short (--duration-s)
    }
    LevelSummary summary = Summarize(run->results, run->duration_s, slo);
    ApplyCost(summary, o.cost_per_hour);
    levels.push_back({rate, o.concurrency, summary, CountErrors(run->results)});
    const LevelSummary& s = levels.back().summary;
    spdlog::info("{}: {} done, {} failed, goodput {:.3f} req/s, attainment {:.1f}%",
                 std::isnan(rate) ? fmt::format("concurrency {}", o.concurrency)
                                  : fmt::format("rate {:g}", rate),
                 s.completed, s.failed, s.goodput, s.slo_attainment * 100);
    return true;
  };
  for (double rate : rates) {
    if (!run_level(rate)) return 1;
  }
  // Bisection between the highest passing rate and the next failing one.
  for (int64_t step = 0; step < o.search_steps; ++step) {
    double lo = 0, hi = std::numeric_limits<double>::infinity();
    for (const LevelReport& l : levels) {
      if (!std::isfinite(l.offered_rate)) continue;
      if (l.summary.slo_attainment >= o.min_attainment) lo = std::max(lo, l.offered_rate);
    }
    for (const LevelReport& l : levels) {
      if (std::isfinite(l.offered_rate) && l.offered_rate > lo &&
          l.summary.slo_attainment < o.min_attainment) {
        hi = std::min(hi, l.offered_rate);
      }
    }
    if (lo == 0 || !std::isfinite(hi)) break;
    if (!run_level((lo + hi) / 2)) return 1;
  }
  std::fputs(FormatTable(levels, slo).c_str(), stdout);
  const nlohmann::json doc = RunJson(
      {{"url", o.url},
       {"model", o.model},
       {"endpoint", o.endpoint},
       {"dataset", o.dataset},
       {"input_len", o.input_len},
       {"output_len", o.output_len},
       {"num_requests", o.num_requests},
       {"arrival", o.arrival},
       {"burstiness", o.burstiness},
       {"concurrency", o.concurrency},
       {"duration_s", o.duration_s},
       {"slo_ttft_ms", o.slo_ttft_ms ? nlohmann::json(*o.slo_ttft_ms) : nlohmann::json()},
       {"slo_tpot_ms", o.slo_tpot_ms ? nlohmann::json(*o.slo_tpot_ms) : nlohmann::json()},
       {"tokens_per_word", tm.per_word},
       {"prompt_overhead_tokens", tm.overhead},
       {"seed", o.seed},
       {"cost_per_hour_usd", o.cost_per_hour},
       {"client", {{"hostname", HostName()}, {"cpus", std::thread::hardware_concurrency()}}}},
      levels, o.min_attainment);
  const nlohmann::json& best = doc["max_goodput"];
  if (!best.is_null() && best["request_rate"].is_number()) {
    std::printf("max goodput: %.3f req/s at %g req/s (attainment >= %.0f%%)\n",
                best["goodput"].get<double>(), best["request_rate"].get<double>(),
                o.min_attainment * 100);
    if (o.cost_per_hour > 0) {
      std::printf("at max goodput: $%.4f per 1M output tokens, $%.6f per SLO-met request\n",
                  best["usd_per_million_output_tokens"].get<double>(),
                  best["usd_per_slo_met_request"].get<double>());
    }
  }
  bool written = true;
  if (!o.out.empty()) written &= WriteFile(o.out, doc.dump(2) + "\n");
  if (!o.plot.empty()) {
    written &= WriteFile(o.plot, RenderSvg(levels, slo,
                                           fmt::format("sluice-bench: {} {} in/{} out", o.dataset,
                                                       o.input_len, o.output_len)));
  }
  return written ? 0 : 1;
}

}  // namespace
}  // namespace sluice::bench

int main(int argc, char** argv) {
  sluice::bench::Options o;
  CLI::App app{"sluice-bench: open-loop load generator for OpenAI-compatible servers"};
  app.add_option("--url", o.url, "server base URL, e.g. http://127.0.0.1:8000")->required();
  app.add_option("--api-key", o.api_key,
                 "sent as 'Authorization: Bearer KEY' (default: $OPENAI_API_KEY)")
      ->envname("OPENAI_API_KEY");
  app.add_option("--model", o.model, "model name sent in each request");
  app.add_option("--endpoint", o.endpoint)->check(CLI::IsMember({"completions", "chat"}));
  app.add_option("--dataset", o.dataset, "synthetic | prefix | sharegpt:FILE");
  app.add_option("--input-len", o.input_len, "prompt tokens (synthetic, prefix)");
  app.add_option("--output-len", o.output_len, "max_tokens (sharegpt: override)");
  app.add_option("--range-ratio", o.range_ratio, "lengths uniform in len·[1−r, 1+r]")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--num-prefixes", o.num_prefixes, "prefix: K shared system prompts");
  app.add_option("--num-users", o.num_users, "prefix: M user prompts per system prompt");
  app.add_option("--prefix-len", o.prefix_len, "prefix: tokens per system prompt");
  app.add_option("--num-requests", o.num_requests, "requests per level")
      ->check(CLI::PositiveNumber);
  app.add_option("--request-rate", o.request_rate, "req/s (default inf: all at once)")
      ->check(CLI::PositiveNumber);
  app.add_option("--concurrency", o.concurrency,
                 "closed loop with C clients; with a rate, a cap on in-flight requests");
  app.add_option("--arrival", o.arrival, "poisson | gamma | constant");
  app.add_option("--burstiness", o.burstiness, "gamma shape (1 = Poisson)")
      ->check(CLI::PositiveNumber);
  app.add_option("--sweep", o.sweep, "comma-separated rates, one level each");
  app.add_option("--search-steps", o.search_steps, "bisection levels after the sweep");
  app.add_option("--min-attainment", o.min_attainment, "for the max goodput search");
  app.add_option("--cost-per-hour", o.cost_per_hour,
                 "the replica's price in USD per hour: cost per 1M output tokens and per "
                 "SLO-met request")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--slo-ttft-ms", o.slo_ttft_ms);
  app.add_option("--slo-tpot-ms", o.slo_tpot_ms);
  app.add_option("--duration-s", o.duration_s, "stop starting requests after S s per level");
  app.add_option("--timeout-s", o.timeout_s, "per-request limit");
  app.add_flag("--ignore-eos,!--no-ignore-eos", o.ignore_eos, "send ignore_eos (default on)");
  app.add_flag("--calibrate,!--no-calibrate", o.calibrate,
               "probe the server's tokens per word (default on)");
  app.add_option("--seed", o.seed);
  app.add_option("--out", o.out, "JSON results");
  app.add_option("--plot", o.plot, "SVG plot");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_pattern("[%H:%M:%S] %v");
  return sluice::bench::Run(o);
}
