// sluice-bench against an in-process fake streaming server with scripted chunk timings:
// every metric within 1 ms of the script, the goodput count exact, concurrency and
// duration bounds kept.
#include "bench/serving/load_runner.h"

#include <algorithm>
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

void ExpectMatchesScript(const RequestResult& r, const Script& s, const Served& served) {
  ASSERT_TRUE(r.ok) << r.error;
  const std::vector<double>& sent = served.sent_ms;
  ASSERT_EQ(sent.size(), s.gaps_ms.size() + 1);
  double scripted_ms = s.ttft_ms;
  for (size_t i = 0; i < sent.size(); ++i) {
    if (i > 0) scripted_ms += s.gaps_ms[i - 1];
    EXPECT_NEAR(sent[i], scripted_ms, kServerJitterMs) << "chunk " << i;
  }
  EXPECT_NEAR(r.ttft_s, sent.front() / 1000, kTolS);
  ASSERT_EQ(r.itl_s.size(), s.gaps_ms.size());
  for (size_t i = 0; i < r.itl_s.size(); ++i) {
    EXPECT_NEAR(r.itl_s[i], (sent[i + 1] - sent[i]) / 1000, kTolS) << "gap " << i;
  }
  EXPECT_NEAR(r.e2e_s, sent.back() / 1000, kTolS);
  const int64_t tokens =
      s.completion_tokens >= 0 ? s.completion_tokens : static_cast<int64_t>(sent.size());
  EXPECT_EQ(r.output_tokens, tokens);
  EXPECT_EQ(r.prompt_tokens, s.completion_tokens >= 0 ? s.prompt_tokens : -1);
  if (tokens > 1) {
    EXPECT_NEAR(TimePerOutputToken(r), (sent.back() - sent.front()) / 1000 / (tokens - 1), kTolS);
  }
}

TEST(LoadRunnerTest, MetricsMatchScriptedTimings) {
  Script chunked{200, 30, {5, 12, 3, 20}, 9, 5, true, false};
  Script close_delimited{200, 45, {8, 8}, 9, -1, false, false};  // no usage: counts chunks
  Script chat{200, 15, {25}, 4, 2, true, true};
  FakeServer server(ByPrompt({{"a", chunked}, {"b", close_delimited}, {"c", chat}}));
  // NOTE: the server's first accept can wake late (ms on a busy machine), which shifts
  // that request's TTFT by the delay; warm up first.
  ASSERT_TRUE(RunLevel(Local(server), {Req("c")}, OpenLoop(1.0, 1), nullptr).ok());
  for (const auto& [prompt, script] : std::vector<std::pair<std::string, Script>>{
           {"a", chunked}, {"b", close_delimited}, {"c", chat}}) {
    auto run = RunLevel(Local(server), {Req(prompt)}, OpenLoop(1.0, 1), nullptr);
    ASSERT_TRUE(run.ok()) << run.status();
    ASSERT_EQ(run->results.size(), 1u);
    SCOPED_TRACE(prompt);
    ExpectMatchesScript(run->results[0], script, server.served().back());
    EXPECT_NEAR(run->duration_s, run->results[0].e2e_s, kTolS);
  }
  EXPECT_EQ(server.num_requests(), 4);
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
  auto run = RunLevel(Local(server), reqs, config, nullptr);
  ASSERT_TRUE(run.ok()) << run.status();
  const LevelSummary s = Summarize(run->results, run->duration_s, Slo{40.0, 15.0});
  EXPECT_EQ(s.num_issued, 16);
  EXPECT_EQ(s.completed, 12);
  EXPECT_EQ(s.failed, 4);
  EXPECT_EQ(s.good, 6);
  EXPECT_NEAR(s.slo_attainment, 6.0 / 16, 1e-12);
  EXPECT_NEAR(s.goodput, 6 / run->duration_s, 1e-9);
  EXPECT_NEAR(run->duration_s, 0.110, 0.005);  // the slowest request: 70 + 40 ms
  for (const RequestResult& r : run->results) {
    if (r.ok) continue;
    EXPECT_TRUE(r.error.starts_with("HTTP 500: {\"error\"") ||
                r.error.starts_with("HTTP 429: {\"error\""))
        << r.error;
  }
}

TEST(LoadRunnerTest, ConstantArrivalsStartOnSchedule) {
  FakeServer server(ByPrompt({{"x", {200, 5, {5}, 3, 2, true, false}}}));
  auto run = RunLevel(Local(server), {Req("x")}, OpenLoop(50.0, 6), nullptr);  // every 20 ms
  ASSERT_TRUE(run.ok());
  std::vector<double> starts;
  for (const RequestResult& r : run->results) starts.push_back(r.start_s);
  std::sort(starts.begin(), starts.end());
  ASSERT_EQ(starts.size(), 6u);
  for (size_t i = 0; i < starts.size(); ++i) EXPECT_NEAR(starts[i], 0.020 * i, kTolS);
}

TEST(LoadRunnerTest, ClosedLoopKeepsConcurrency) {
  FakeServer server(ByPrompt({{"x", {200, 20, {10}, 3, 2, true, false}}}));
  LevelConfig config;
  config.closed_loop = true;
  config.concurrency = 3;
  config.num_requests = 9;
  int64_t last_progress = 0;
  auto run = RunLevel(Local(server), {Req("x")}, config, [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 9);
    last_progress = done;
  });
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->results.size(), 9u);
  EXPECT_EQ(last_progress, 9);
  EXPECT_EQ(server.max_concurrent(), 3);
  EXPECT_NEAR(run->duration_s, 0.090, 0.010);  // 3 rounds of 30 ms
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
