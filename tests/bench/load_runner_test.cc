// sluice-bench against an in-process fake streaming server with scripted chunk timings:
// every metric within 1 ms of the script, the goodput count exact, concurrency and
// duration bounds kept.
#include "bench/serving/load_runner.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/bench/fake_server.h"

namespace sluice::bench {
namespace {

constexpr double kTolS = 0.001;  // 1 ms

// Scripts keyed by the request's prompt.
std::function<Script(const std::string&)> ByPrompt(std::map<std::string, Script> scripts) {
  return [scripts = std::move(scripts)](const std::string& body) {
    return scripts.at(nlohmann::json::parse(body)["prompt"].get<std::string>());
  };
}

PreparedRequest Req(const std::string& prompt) {
  return {nlohmann::json{{"prompt", prompt}, {"stream", true}}.dump(), 5};
}

Target Local(const FakeServer& server) {
  return *ParseTarget("http://127.0.0.1:" + std::to_string(server.port()), Endpoint::kCompletions);
}

LevelConfig OpenLoop(double rate, int64_t n) {
  LevelConfig c;
  c.arrivals.kind = ArrivalKind::kConstant;
  c.arrivals.rate = rate;
  c.num_requests = n;
  c.request_timeout_s = 10;
  return c;
}

// The bench's measurements against what the fake server did: within 1 ms of the times
// the server wrote each chunk, and those within kServerJitterMs of the script.
// NOTE: the comparison with the written times keeps the test meaningful on a busy
// machine, where the server's own sleeps can overshoot by a few ms.
constexpr double kServerJitterMs = 5;

// A thread descheduled for a few ms on a busy machine (the client's reader, the server's
// writer) moves one timestamp past its tolerance; a measuring bug moves it on every run.
// So a scenario whose timing is checked gets a few runs, and one must match everywhere;
// `run` makes its exact checks (counts, verdicts) with EXPECT on every run and returns
// the timing mismatches.
constexpr int kAttempts = 5;

void ExpectTimingInSomeRun(const std::function<std::vector<std::string>()>& run) {
  std::vector<std::string> last;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    last = run();
    if (last.empty() || ::testing::Test::HasFatalFailure()) return;
  }
  std::string all;
  for (const std::string& m : last) all += "\n  " + m;
  ADD_FAILURE() << "no run of " << kAttempts << " matched the timings; the last:" << all;
}

void Near(std::vector<std::string>& out, const std::string& what, double got, double want,
          double tol) {
  if (std::abs(got - want) > tol) {
    out.push_back(what + ": " + std::to_string(got) + ", expected " + std::to_string(want) + " ± " +
                  std::to_string(tol));
  }
}

// Every way `r` differs from what the server did; empty when all metrics match.
std::vector<std::string> Mismatches(const RequestResult& r, const Script& s, const Served& served,
                                    double duration_s) {
  std::vector<std::string> out;
  auto near = [&](const std::string& what, double got, double want, double tol) {
    Near(out, what, got, want, tol);
  };
  if (!r.ok) return {"request failed: " + r.error};
  const std::vector<double>& sent = served.sent_ms;
  if (sent.size() != s.gaps_ms.size() + 1) return {"server wrote an unexpected chunk count"};
  double scripted_ms = s.ttft_ms;
  for (size_t i = 0; i < sent.size(); ++i) {
    if (i > 0) scripted_ms += s.gaps_ms[i - 1];
    near("server chunk " + std::to_string(i) + " ms", sent[i], scripted_ms, kServerJitterMs);
  }
  near("ttft_s", r.ttft_s, sent.front() / 1000, kTolS);
  if (r.itl_s.size() != s.gaps_ms.size()) return {"itl count " + std::to_string(r.itl_s.size())};
  for (size_t i = 0; i < r.itl_s.size(); ++i) {
    near("itl_s[" + std::to_string(i) + "]", r.itl_s[i], (sent[i + 1] - sent[i]) / 1000, kTolS);
  }
  near("e2e_s", r.e2e_s, sent.back() / 1000, kTolS);
  near("duration_s", duration_s, r.e2e_s, kTolS);
  const int64_t tokens =
      s.completion_tokens >= 0 ? s.completion_tokens : static_cast<int64_t>(sent.size());
  if (r.output_tokens != tokens) out.push_back("output_tokens " + std::to_string(r.output_tokens));
  if (r.prompt_tokens != (s.completion_tokens >= 0 ? s.prompt_tokens : -1)) {
    out.push_back("prompt_tokens " + std::to_string(r.prompt_tokens));
  }
  if (tokens > 1) {
    near("tpot_s", TimePerOutputToken(r), (sent.back() - sent.front()) / 1000 / (tokens - 1),
         kTolS);
  }
  return out;
}

TEST(LoadRunnerTest, MetricsMatchScriptedTimings) {
  Script chunked{200, 30, {5, 12, 3, 20}, 9, 5, true, false};
  Script close_delimited{200, 45, {8, 8}, 9, -1, false, false};  // no usage: counts chunks
  Script chat{200, 15, {25}, 4, 2, true, true};
  FakeServer server(ByPrompt({{"a", chunked}, {"b", close_delimited}, {"c", chat}}));
  // NOTE: the server's first accept can wake late (ms on a busy machine), which shifts
  // that request's TTFT by the delay; warm up first.
  ASSERT_TRUE(RunLevel(Local(server), {Req("c")}, OpenLoop(1.0, 1), nullptr).ok());
  int64_t expected_requests = 1;
  for (const auto& [prompt, script] : std::vector<std::pair<std::string, Script>>{
           {"a", chunked}, {"b", close_delimited}, {"c", chat}}) {
    SCOPED_TRACE(prompt);
    ExpectTimingInSomeRun([&, &prompt = prompt, &script = script]() -> std::vector<std::string> {
      auto run = RunLevel(Local(server), {Req(prompt)}, OpenLoop(1.0, 1), nullptr);
      ++expected_requests;
      if (!run.ok() || run->results.size() != 1) {
        ADD_FAILURE() << "run failed";
        return {};
      }
      return Mismatches(run->results[0], script, server.served().back(), run->duration_s);
    });
  }
  EXPECT_EQ(server.num_requests(), expected_requests);
}

TEST(LoadRunnerTest, GoodputCountIsExact) {
  // SLO: TTFT ≤ 40 ms, TPOT ≤ 15 ms. Margins of ≥ 10 ms keep the verdicts unambiguous.
  std::map<std::string, Script> scripts = {
      {"good1", {200, 10, {5, 5, 5}, 3, 4, true, false}},     // TTFT 10, TPOT 5
      {"good2", {200, 25, {3, 3}, 3, 3, true, false}},        // TTFT 25, TPOT 3
      {"good3", {200, 20, {}, 3, 1, true, false}},            // one token
      {"slow_ttft", {200, 60, {5, 5}, 3, 3, true, false}},    // TTFT 60
      {"slow_tpot", {200, 10, {30, 30}, 3, 3, true, false}},  // TPOT 30
      {"both_slow", {200, 70, {40}, 3, 2, true, false}},
      {"error", {500, 0, {}, 0, -1, true, false}},
      {"refused", {429, 0, {}, 0, -1, false, false}},  // Content-Length body
  };
  FakeServer server(ByPrompt(scripts));
  std::vector<PreparedRequest> reqs;
  for (const auto& [prompt, unused] : scripts) reqs.push_back(Req(prompt));
  LevelConfig config = OpenLoop(std::numeric_limits<double>::infinity(), 16);  // each twice
  ExpectTimingInSomeRun([&]() -> std::vector<std::string> {
    auto run = RunLevel(Local(server), reqs, config, nullptr);
    if (!run.ok()) {
      ADD_FAILURE() << run.status();
      return {};
    }
    const LevelSummary s = Summarize(run->results, run->duration_s, Slo{40.0, 15.0});
    EXPECT_EQ(s.num_issued, 16);
    EXPECT_EQ(s.completed, 12);
    EXPECT_EQ(s.failed, 4);
    EXPECT_EQ(s.good, 6);
    EXPECT_NEAR(s.slo_attainment, 6.0 / 16, 1e-12);
    EXPECT_NEAR(s.goodput, 6 / run->duration_s, 1e-9);
    for (const RequestResult& r : run->results) {
      if (r.ok) continue;
      EXPECT_TRUE(r.error.starts_with("HTTP 500: {\"error\"") ||
                  r.error.starts_with("HTTP 429: {\"error\""))
          << r.error;
    }
    std::vector<std::string> timing;
    Near(timing, "duration_s", run->duration_s, 0.110, 0.005);  // the slowest: 70 + 40 ms
    return timing;
  });
}

TEST(LoadRunnerTest, ConstantArrivalsStartOnSchedule) {
  FakeServer server(ByPrompt({{"x", {200, 5, {5}, 3, 2, true, false}}}));
  ExpectTimingInSomeRun([&]() -> std::vector<std::string> {
    auto run = RunLevel(Local(server), {Req("x")}, OpenLoop(50.0, 6), nullptr);  // every 20 ms
    if (!run.ok() || run->results.size() != 6) {
      ADD_FAILURE() << "expected 6 results";
      return {};
    }
    std::vector<double> starts;
    for (const RequestResult& r : run->results) starts.push_back(r.start_s);
    std::sort(starts.begin(), starts.end());
    std::vector<std::string> timing;
    for (size_t i = 0; i < starts.size(); ++i) {
      Near(timing, "start " + std::to_string(i), starts[i], 0.020 * i, kTolS);
    }
    return timing;
  });
}

TEST(LoadRunnerTest, ClosedLoopKeepsConcurrency) {
  FakeServer server(ByPrompt({{"x", {200, 20, {10}, 3, 2, true, false}}}));
  LevelConfig config;
  config.closed_loop = true;
  config.concurrency = 3;
  config.num_requests = 9;
  ExpectTimingInSomeRun([&]() -> std::vector<std::string> {
    int64_t last_progress = 0;
    auto run = RunLevel(Local(server), {Req("x")}, config, [&](int64_t done, int64_t total) {
      EXPECT_EQ(total, 9);
      last_progress = done;
    });
    if (!run.ok()) {
      ADD_FAILURE() << run.status();
      return {};
    }
    EXPECT_EQ(run->results.size(), 9u);
    EXPECT_EQ(last_progress, 9);
    EXPECT_EQ(server.max_concurrent(), 3);
    std::vector<std::string> timing;
    Near(timing, "duration_s", run->duration_s, 0.090, 0.010);  // 3 rounds of 30 ms
    return timing;
  });
}

TEST(LoadRunnerTest, OpenLoopConcurrencyCap) {
  FakeServer server(ByPrompt({{"x", {200, 30, {}, 3, 1, true, false}}}));
  LevelConfig config = OpenLoop(std::numeric_limits<double>::infinity(), 8);
  config.concurrency = 2;
  auto run = RunLevel(Local(server), {Req("x")}, config, nullptr);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->results.size(), 8u);
  EXPECT_EQ(server.max_concurrent(), 2);
}

TEST(LoadRunnerTest, DurationBoundsTheLevel) {
  FakeServer server(ByPrompt({{"x", {200, 5, {}, 3, 1, true, false}}}));
  LevelConfig config = OpenLoop(20.0, 1000);  // every 50 ms
  config.duration_s = 0.225;                  // starts at 0, 50, ..., 200 ms
  auto run = RunLevel(Local(server), {Req("x")}, config, nullptr);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->results.size(), 5u);
  EXPECT_LT(run->duration_s, 0.3);
}

TEST(LoadRunnerTest, TimeoutFailsTheRequest) {
  FakeServer server(ByPrompt({{"x", {200, 5000, {}, 3, 1, true, false}}}));
  LevelConfig config = OpenLoop(1.0, 1);
  config.request_timeout_s = 0.2;
  auto run = RunLevel(Local(server), {Req("x")}, config, nullptr);
  ASSERT_TRUE(run.ok());
  ASSERT_EQ(run->results.size(), 1u);
  EXPECT_FALSE(run->results[0].ok);
  EXPECT_LT(run->duration_s, 0.5);
}

TEST(LoadRunnerTest, RefusedConnectionIsAFailedRequest) {
  int port;
  {
    FakeServer gone(ByPrompt({}));
    port = gone.port();
  }
  auto target = ParseTarget("http://127.0.0.1:" + std::to_string(port), Endpoint::kCompletions);
  auto run = RunLevel(*target, {Req("x")}, OpenLoop(1.0, 2), nullptr);
  ASSERT_TRUE(run.ok());
  ASSERT_EQ(run->results.size(), 2u);
  EXPECT_FALSE(run->results[0].ok);
  EXPECT_NE(run->results[0].error.find("connect"), std::string::npos) << run->results[0].error;
}

TEST(SendOneTest, ReturnsUsage) {
  FakeServer server(ByPrompt({{"x", {200, 1, {1}, 42, 2, true, false}}}));
  auto r = SendOne(Local(server), Req("x").body, 5);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(r->prompt_tokens, 42);
}

}  // namespace
}  // namespace sluice::bench
