// Arrival schedules: exact constant gaps, Poisson and gamma moments, reproducibility.
#include "bench/serving/arrivals.h"

#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace sluice::bench {
namespace {

struct Moments {
  double mean, cv;  // of the gaps
};

Moments GapMoments(const std::vector<double>& t) {
  std::vector<double> gaps;
  for (size_t i = 1; i < t.size(); ++i) gaps.push_back(t[i] - t[i - 1]);
  const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / gaps.size();
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= gaps.size();
  return {mean, std::sqrt(var) / mean};
}

TEST(ArrivalsTest, ConstantGapsAreExact) {
  const std::vector<double> t = ArrivalOffsets({ArrivalKind::kConstant, 4.0, 1.0, 0}, 5);
  ASSERT_EQ(t.size(), 5u);
  for (size_t i = 0; i < t.size(); ++i) EXPECT_NEAR(t[i], 0.25 * i, 1e-12);
}

TEST(ArrivalsTest, PoissonHasMeanOneOverRateAndCvOne) {
  const Moments m = GapMoments(ArrivalOffsets({ArrivalKind::kPoisson, 10.0, 1.0, 1}, 40000));
  EXPECT_NEAR(m.mean, 0.1, 0.003);
  EXPECT_NEAR(m.cv, 1.0, 0.03);
}

TEST(ArrivalsTest, GammaBurstinessSetsCv) {
  // Gamma gaps with shape k have CV 1/sqrt(k) and the same mean.
  const Moments bursty = GapMoments(ArrivalOffsets({ArrivalKind::kGamma, 10.0, 0.25, 2}, 40000));
  EXPECT_NEAR(bursty.mean, 0.1, 0.005);
  EXPECT_NEAR(bursty.cv, 2.0, 0.1);
  const Moments smooth = GapMoments(ArrivalOffsets({ArrivalKind::kGamma, 10.0, 4.0, 3}, 40000));
  EXPECT_NEAR(smooth.mean, 0.1, 0.003);
  EXPECT_NEAR(smooth.cv, 0.5, 0.02);
}

TEST(ArrivalsTest, SeededAndInfiniteRate) {
  const ArrivalConfig c{ArrivalKind::kPoisson, 3.0, 1.0, 42};
  EXPECT_EQ(ArrivalOffsets(c, 100), ArrivalOffsets(c, 100));
  EXPECT_NE(ArrivalOffsets(c, 100), ArrivalOffsets({ArrivalKind::kPoisson, 3.0, 1.0, 43}, 100));
  const std::vector<double> all_at_once =
      ArrivalOffsets({ArrivalKind::kPoisson, std::numeric_limits<double>::infinity(), 1.0, 0}, 8);
  EXPECT_EQ(all_at_once, std::vector<double>(8, 0.0));
}

TEST(ArrivalsTest, ParsesKinds) {
  ArrivalKind k;
  EXPECT_TRUE(ParseArrivalKind("gamma", &k));
  EXPECT_EQ(k, ArrivalKind::kGamma);
  EXPECT_TRUE(ParseArrivalKind("constant", &k));
  EXPECT_EQ(k, ArrivalKind::kConstant);
  EXPECT_FALSE(ParseArrivalKind("uniform", &k));
}

}  // namespace
}  // namespace sluice::bench
