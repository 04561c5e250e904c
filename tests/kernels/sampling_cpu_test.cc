// The CPU sampler: greedy, each filter's definition, seeded reproducibility, and draw
// frequencies against the renormalised distribution.
#include <cmath>
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

}  // namespace
}  // namespace sluice::kernels
