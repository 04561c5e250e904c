// The CPU sampler: greedy, each filter's definition, seeded reproducibility, and draw
// frequencies against the renormalised distribution.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "sluice/kernels/sampling.h"

namespace sluice::kernels {
namespace {

std::vector<float> Logits(int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> v(vocab);
  for (float& x : v) x = normal(rng);
  return v;
}

int CountNonZero(const std::vector<float>& p) {
  int n = 0;
  for (float x : p) n += x > 0.0f;
  return n;
}

// Masked rows keep exactly the allowed tokens' logits; others stay whole.
TEST(SamplingCpuTest, TokenBitmaskKeepsOnlyAllowedTokens) {
  const int vocab = 70;  // a partial last word
  std::vector<float> logits = Logits(vocab * 2, 3);
  const std::vector<float> before = logits;
  std::vector<uint32_t> mask(static_cast<size_t>(TokenBitmaskWords(vocab)), 0);
  for (int t : {0, 31, 32, 69}) mask[static_cast<size_t>(t) >> 5] |= 1u << (t & 31);
  SamplingRow rows[2];
  rows[0].mask_row = 0;
  ASSERT_TRUE(cpu::ApplyTokenBitmask(logits.data(), mask.data(), rows, 2, vocab).ok());
  for (int t = 0; t < vocab; ++t) {
    const bool allowed = t == 0 || t == 31 || t == 32 || t == 69;
    if (allowed) {
      EXPECT_EQ(logits[t], before[t]) << t;
    } else {
      EXPECT_TRUE(std::isinf(logits[t]) && logits[t] < 0) << t;
    }
    EXPECT_EQ(logits[vocab + t], before[vocab + t]) << "row 1 has no mask";
  }
  rows[0].temperature = 0.0f;
  int32_t id = -1;
  ASSERT_TRUE(cpu::Sample(&id, logits.data(), rows, 1, vocab).ok());
  EXPECT_TRUE(id == 0 || id == 31 || id == 32 || id == 69) << id;
}

TEST(SamplingCpuTest, ZeroTemperatureIsArgmax) {
  auto logits = Logits(100, 1);
  logits[42] = 100.0f;
  SamplingRow row;
  row.temperature = 0.0f;
  int32_t id = -1;
  ASSERT_TRUE(cpu::Sample(&id, logits.data(), &row, 1, 100).ok());
  EXPECT_EQ(id, 42);
}

TEST(SamplingCpuTest, TopKKeepsExactlyK) {
  auto logits = Logits(50, 2);
  SamplingRow row;
  row.top_k = 7;
  std::vector<float> p(50);
  ASSERT_TRUE(cpu::SamplingProbs(p.data(), logits.data(), row, 50).ok());
  EXPECT_EQ(CountNonZero(p), 7);
  double sum = 0;
  for (float x : p) sum += x;
  EXPECT_NEAR(sum, 1.0, 1e-5);
}

TEST(SamplingCpuTest, TopPKeepsSmallestPrefixReachingMass) {
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingRow row;
  row.top_p = 0.7f;
  std::vector<float> p(4);
  ASSERT_TRUE(cpu::SamplingProbs(p.data(), logits.data(), row, 4).ok());
  EXPECT_NEAR(p[0], 0.5 / 0.8, 1e-5);
  EXPECT_NEAR(p[1], 0.3 / 0.8, 1e-5);
  EXPECT_EQ(p[2], 0.0f);
  EXPECT_EQ(p[3], 0.0f);
}

TEST(SamplingCpuTest, MinPDropsTokensUnderFractionOfMax) {
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingRow row;
  row.min_p = 0.25f;  // threshold 0.125
  std::vector<float> p(4);
  ASSERT_TRUE(cpu::SamplingProbs(p.data(), logits.data(), row, 4).ok());
  EXPECT_EQ(CountNonZero(p), 3);
  EXPECT_EQ(p[3], 0.0f);
}

TEST(SamplingCpuTest, SameSeedAndOffsetGiveSameDraw) {
  auto logits = Logits(1000, 3);
  SamplingRow row;
  row.seed = 77;
  std::vector<int32_t> a, b;
  for (uint64_t step = 0; step < 50; ++step) {
    row.offset = step;
    int32_t x, y;
    ASSERT_TRUE(cpu::Sample(&x, logits.data(), &row, 1, 1000).ok());
    ASSERT_TRUE(cpu::Sample(&y, logits.data(), &row, 1, 1000).ok());
    a.push_back(x);
    b.push_back(y);
  }
  EXPECT_EQ(a, b);
  int distinct = 0;
  for (size_t i = 1; i < a.size(); ++i) distinct += a[i] != a[i - 1];
  EXPECT_GT(distinct, 10);  // steps draw anew
}

TEST(SamplingCpuTest, FrequenciesFollowFilteredDistribution) {
  const int vocab = 64, draws = 200000;
  auto logits = Logits(vocab, 4);
  SamplingRow row;
  row.temperature = 0.8f;
  row.top_k = 20;
  row.top_p = 0.9f;
  row.seed = 5;
  std::vector<float> p(vocab);
  ASSERT_TRUE(cpu::SamplingProbs(p.data(), logits.data(), row, vocab).ok());
  std::vector<double> freq(vocab);
  for (int i = 0; i < draws; ++i) {
    row.offset = i;
    int32_t id;
    ASSERT_TRUE(cpu::Sample(&id, logits.data(), &row, 1, vocab).ok());
    ASSERT_GT(p[id], 0.0f) << "filtered token " << id << " was drawn";
    freq[id] += 1.0 / draws;
  }
  double dot = 0, na = 0, nb = 0;
  for (int i = 0; i < vocab; ++i) {
    dot += freq[i] * p[i];
    na += freq[i] * freq[i];
    nb += double{p[i]} * p[i];
  }
  EXPECT_GT(dot / std::sqrt(na * nb), 0.999);
}

// The distribution each filter defines, written from the definitions (transformers'
// warpers, in turn, each on the survivors of the last), in double precision.
std::vector<double> Defined(const std::vector<float>& logits, float t, int k, float p,
                            float min_p) {
  const int n = static_cast<int>(logits.size());
  std::vector<bool> alive(n, true);
  auto softmax = [&] {
    double mx = -1e300, z = 0;
    for (int i = 0; i < n; ++i) {
      if (alive[i]) mx = std::max(mx, double{logits[i]} / t);
    }
    std::vector<double> q(n, 0.0);
    for (int i = 0; i < n; ++i) {
      if (alive[i]) z += q[i] = std::exp(double{logits[i]} / t - mx);
    }
    for (double& x : q) x /= z;
    return q;
  };
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  if (k > 0 && k < n) {
    for (int r = k; r < n; ++r) alive[order[r]] = false;
  }
  if (p < 1.0f) {
    const std::vector<double> q = softmax();
    double mass = 0;
    int r = 0;
    for (; r < n && alive[order[r]]; ++r) {
      mass += q[order[r]];
      if (mass >= p) break;
    }
    for (int j = r + 1; j < n; ++j) alive[order[j]] = false;
  }
  if (min_p > 0.0f) {
    const std::vector<double> q = softmax();
    for (int i = 0; i < n; ++i) {
      if (q[i] < min_p * q[order[0]]) alive[i] = false;
    }
  }
  return softmax();
}

TEST(SamplingCpuTest, DrawsFollowTheFiltersDefinitions) {
  struct Case {
    float t;
    int k;
    float p, min_p;
  } cases[] = {{1.0f, 0, 1.0f, 0.0f},  {0.7f, 5, 1.0f, 0.0f},  {1.3f, 0, 0.8f, 0.0f},
               {1.0f, 0, 1.0f, 0.1f},  {2.0f, 10, 0.8f, 0.0f},  // top-p of what top-k kept
               {1.1f, 30, 0.7f, 0.02f}};
  const int vocab = 64, draws = 100000;
  const auto logits = Logits(vocab, 11);
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message()
                 << "t=" << c.t << " k=" << c.k << " p=" << c.p << " min_p=" << c.min_p);
    const std::vector<double> want = Defined(logits, c.t, c.k, c.p, c.min_p);
    SamplingRow row;
    row.temperature = c.t;
    row.top_k = c.k;
    row.top_p = c.p;
    row.min_p = c.min_p;
    row.seed = 1234;
    std::vector<int> count(vocab);
    for (int i = 0; i < draws; ++i) {
      row.offset = i;
      int32_t id;
      ASSERT_TRUE(cpu::Sample(&id, logits.data(), &row, 1, vocab).ok());
      ++count[id];
    }
    // No filtered token is ever drawn; Pearson's chi-square over the kept ones stays
    // under df + 6 sqrt(2 df) (p < 1e-5 for these df), with Philox seeds fixed.
    double chi2 = 0;
    int df = -1;
    for (int i = 0; i < vocab; ++i) {
      if (want[i] == 0.0) {
        EXPECT_EQ(count[i], 0) << "token " << i << " is filtered by definition";
        continue;
      }
      const double expected = want[i] * draws;
      chi2 += (count[i] - expected) * (count[i] - expected) / expected;
      ++df;
    }
    ASSERT_GT(df, 0);
    EXPECT_LT(chi2, df + 6 * std::sqrt(2.0 * df)) << "df " << df;
  }
}

}  // namespace
}  // namespace sluice::kernels
