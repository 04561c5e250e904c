// Summary definitions (vllm bench serve's): percentiles as numpy's linear interpolation,
// TPOT, goodput with inclusive SLO bounds, attainment over every request sent.
#include "bench/serving/metrics.h"

#include <vector>

#include "gtest/gtest.h"

namespace sluice::bench {
namespace {

RequestResult Ok(double ttft_s, double e2e_s, int64_t output_tokens,
                 std::vector<double> itl_s = {}) {
  RequestResult r;
  r.ok = true;
  r.ttft_s = ttft_s;
  r.e2e_s = e2e_s;
  r.output_tokens = output_tokens;
  r.prompt_tokens = 10;
  r.itl_s = std::move(itl_s);
  r.cached_tokens = 4;
  return r;
}

TEST(PercentileTest, MatchesNumpyLinear) {
  const std::vector<double> v = {1, 2, 3, 4, 10};
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 3);
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 7.6);   // numpy.percentile([1,2,3,4,10], 90)
  EXPECT_DOUBLE_EQ(Percentile(v, 99), 9.76);  // numpy.percentile([1,2,3,4,10], 99)
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 10);
  EXPECT_DOUBLE_EQ(Percentile({5}, 99), 5);
}

TEST(StatsTest, SecondsToMillisecondsAndEmptyIsZero) {
  const Stats s = ComputeStats({0.004, 0.001, 0.002, 0.003});
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.p50, 2.5);
  EXPECT_NEAR(s.p90, 3.7, 1e-12);
  EXPECT_EQ(s.count, 4);
  const Stats empty = ComputeStats({});
  EXPECT_EQ(empty.mean, 0);
  EXPECT_EQ(empty.p99, 0);
  EXPECT_EQ(empty.count, 0);
}

TEST(TpotTest, ExcludesTheFirstToken) {
  EXPECT_DOUBLE_EQ(TimePerOutputToken(Ok(0.1, 0.5, 5)), 0.1);  // (0.5 − 0.1) / 4
  EXPECT_EQ(TimePerOutputToken(Ok(0.1, 0.1, 1)), 0);
  EXPECT_EQ(TimePerOutputToken(Ok(0.1, 0.1, 0)), 0);
}

TEST(SloTest, BoundsAreInclusiveAndAbsentOnesUnchecked) {
  const Slo slo{100.0, 20.0};
  EXPECT_TRUE(MeetsSlo(Ok(0.100, 0.180, 5), slo));   // TTFT 100 ms, TPOT 20 ms: both equal
  EXPECT_FALSE(MeetsSlo(Ok(0.101, 0.181, 5), slo));  // TTFT over
  EXPECT_FALSE(MeetsSlo(Ok(0.050, 0.150, 5), slo));  // TPOT 25 ms over
  EXPECT_TRUE(MeetsSlo(Ok(0.050, 0.050, 1), slo));   // one token: TPOT counts as 0
  EXPECT_TRUE(MeetsSlo(Ok(5.0, 50.0, 5), Slo{}));
  RequestResult failed = Ok(0.01, 0.02, 2);
  failed.ok = false;
  EXPECT_FALSE(MeetsSlo(failed, Slo{}));
}

TEST(SummarizeTest, ExactCountsAndThroughputs) {
  RequestResult failed;
  failed.error = "HTTP 500";
  failed.expected_prompt_tokens = 99;
  std::vector<RequestResult> rs = {
      Ok(0.050, 0.090, 5, {0.01, 0.01, 0.01, 0.01}),  // good: TTFT 50, TPOT 10
      Ok(0.150, 0.190, 5, {0.01, 0.01, 0.01, 0.01}),  // TTFT over
      Ok(0.050, 0.250, 5, {0.05, 0.05, 0.05, 0.05}),  // TPOT 50 over
      Ok(0.020, 0.020, 1),                            // good, no TPOT sample
      failed,
  };
  const LevelSummary s = Summarize(rs, 2.0, Slo{100.0, 20.0});
  EXPECT_EQ(s.num_issued, 5);
  EXPECT_EQ(s.completed, 4);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.good, 2);
  EXPECT_DOUBLE_EQ(s.goodput, 1.0);             // 2 good / 2 s
  EXPECT_DOUBLE_EQ(s.slo_attainment, 0.4);      // 2 of 5 sent
  EXPECT_DOUBLE_EQ(s.request_throughput, 2.0);  // 4 completed / 2 s
  EXPECT_EQ(s.total_output_tokens, 16);
  EXPECT_EQ(s.total_input_tokens, 40);  // the failed request counts nothing
  EXPECT_EQ(s.total_cached_tokens, 16);
  EXPECT_DOUBLE_EQ(s.output_token_throughput, 8.0);
  EXPECT_DOUBLE_EQ(s.total_token_throughput, 28.0);
  EXPECT_EQ(s.tpot_ms.count, 3);
  EXPECT_NEAR(s.tpot_ms.mean, (10 + 10 + 50) / 3.0, 1e-9);
  EXPECT_EQ(s.itl_ms.count, 12);
  EXPECT_NEAR(s.itl_ms.p50, 10, 1e-9);
  EXPECT_EQ(s.ttft_ms.count, 4);
  EXPECT_NEAR(s.ttft_ms.p50, 50, 1e-9);
  EXPECT_NEAR(s.e2e_ms.mean, (90 + 190 + 250 + 20) / 4.0, 1e-9);
}

TEST(SummarizeTest, MissingUsageFallsBackToExpectedPromptTokens) {
  RequestResult r = Ok(0.01, 0.02, 2);
  r.prompt_tokens = -1;
  r.expected_prompt_tokens = 33;
  EXPECT_EQ(Summarize({r}, 1.0, Slo{}).total_input_tokens, 33);
}

TEST(MaxGoodputTest, HighestRateMeetingAttainment) {
  auto level = [](double attainment) {
    LevelSummary s;
    s.num_issued = 10;
    s.slo_attainment = attainment;
    return s;
  };
  const std::vector<double> rates = {1, 2, 4, 8};
  const std::vector<LevelSummary> levels = {level(1.0), level(0.95), level(0.9), level(0.5)};
  EXPECT_EQ(MaxGoodputLevel(rates, levels, 0.9), std::optional<size_t>(2));
  EXPECT_EQ(MaxGoodputLevel(rates, levels, 0.96), std::optional<size_t>(0));
  EXPECT_EQ(MaxGoodputLevel(rates, {level(0.1), level(0.2), level(0.3), level(0.4)}, 0.9),
            std::nullopt);
}

// Cost is the price times the level's duration, charged wholly to each unit of work.
TEST(CostTest, PriceTimesDurationOverTheWork) {
  LevelSummary s;
  s.duration_s = 90;
  s.total_output_tokens = 12000;
  s.good = 30;
  ApplyCost(s, 4.0);
  EXPECT_DOUBLE_EQ(s.cost_usd, 4.0 * 90 / 3600);
  EXPECT_DOUBLE_EQ(s.usd_per_million_output_tokens, 4.0 * 90 / 3600 / 12000 * 1e6);
  EXPECT_DOUBLE_EQ(s.usd_per_slo_met_request, 4.0 * 90 / 3600 / 30);
  LevelSummary none;  // nothing produced: no division by zero, no figure
  none.duration_s = 10;
  ApplyCost(none, 4.0);
  EXPECT_EQ(none.usd_per_million_output_tokens, 0);
  EXPECT_EQ(none.usd_per_slo_met_request, 0);
  LevelSummary unpriced;
  unpriced.duration_s = 10;
  ApplyCost(unpriced, 0);
  EXPECT_EQ(unpriced.cost_usd, 0);
}

}  // namespace
}  // namespace sluice::bench
