// CPU references of the element-wise ops, the KV-cache writes and the GEMM, each
// against its defining formula in double precision.
#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "sluice/kernels/activation.h"
#include "sluice/kernels/embedding.h"
#include "sluice/kernels/gemm.h"
#include "sluice/kernels/kv_cache.h"
#include "sluice/kernels/norm.h"
#include "sluice/kernels/rope.h"

namespace sluice::kernels {
namespace {

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

TEST(RmsNormCpuTest, MatchesFormulaAndFusedAddAgrees) {
  const int n = 3, h = 96;
  auto x = Random(n * h, 1), w = Random(h, 2), res = Random(n * h, 3);
  std::vector<float> out(n * h);
  ASSERT_TRUE(cpu::RmsNorm(out.data(), x.data(), w.data(), n, h, 1e-5f).ok());
  for (int t = 0; t < n; ++t) {
    double ss = 0;
    for (int i = 0; i < h; ++i) ss += double{x[t * h + i]} * x[t * h + i];
    const double inv = 1.0 / std::sqrt(ss / h + 1e-5);
    for (int i = 0; i < h; ++i) EXPECT_NEAR(out[t * h + i], w[i] * x[t * h + i] * inv, 1e-5);
  }
  // Fused: residual += x, x = norm(residual).
  std::vector<float> sum(n * h), want(n * h), fx = x, fres = res;
  for (int i = 0; i < n * h; ++i) sum[i] = x[i] + res[i];
  ASSERT_TRUE(cpu::RmsNorm(want.data(), sum.data(), w.data(), n, h, 1e-5f).ok());
  ASSERT_TRUE(cpu::FusedAddRmsNorm(fx.data(), fres.data(), w.data(), n, h, 1e-5f).ok());
  EXPECT_EQ(fres, sum);
  EXPECT_EQ(fx, want);
}

TEST(RopeCpuTest, RotatesPairsByPositionTimesFrequency) {
  RopeConfig config;
  config.theta = 10000.0f;
  config.rotary_dim = 8;
  const auto cache = RopeCosSinCache(config, 16);
  const int heads = 2, d = 8;
  auto q = Random(heads * d, 4), k = Random(d, 5);
  auto q0 = q, k0 = k;
  const int32_t pos = 5;
  ASSERT_TRUE(cpu::ApplyRope(q.data(), k.data(), &pos, cache.data(), 1, heads, 1, d, 8).ok());
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < d / 2; ++i) {
      const double f = 1.0 / std::pow(10000.0, 2.0 * i / d), a = pos * f;
      const double x = q0[h * d + i], y = q0[h * d + d / 2 + i];
      EXPECT_NEAR(q[h * d + i], x * std::cos(a) - y * std::sin(a), 1e-5);
      EXPECT_NEAR(q[h * d + d / 2 + i], y * std::cos(a) + x * std::sin(a), 1e-5);
    }
  }
  // Position 0 is the identity.
  const int32_t zero = 0;
  ASSERT_TRUE(cpu::ApplyRope(q0.data(), k0.data(), &zero, cache.data(), 1, heads, 1, d, 8).ok());
  EXPECT_EQ(k0, Random(d, 5));
}

TEST(RopeCpuTest, Llama3ScalingKeepsHighAndDividesLowFrequencies) {
  RopeConfig plain;
  plain.theta = 500000.0f;
  plain.rotary_dim = 128;
  RopeConfig scaled = plain;
  scaled.llama3_factor = 8.0f;
  const auto a = RopeInvFreq(plain), b = RopeInvFreq(scaled);
  ASSERT_EQ(a.size(), 64u);
  EXPECT_EQ(a[0], b[0]);                      // wavelength 2π: untouched
  EXPECT_FLOAT_EQ(b[63], a[63] / 8.0f);       // longest wavelength: divided by the factor
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_LE(b[i], a[i]);
    EXPECT_GE(b[i], a[i] / 8.0f * (1 - 1e-6f));
  }
}

TEST(SiluAndMulCpuTest, MatchesFormula) {
  const int n = 2, inter = 5;
  auto x = Random(n * 2 * inter, 6);
  std::vector<float> out(n * inter);
  ASSERT_TRUE(cpu::SiluAndMul(out.data(), x.data(), n, inter).ok());
  for (int t = 0; t < n; ++t) {
    for (int i = 0; i < inter; ++i) {
      const double g = x[t * 2 * inter + i], u = x[t * 2 * inter + inter + i];
      EXPECT_NEAR(out[t * inter + i], g / (1 + std::exp(-g)) * u, 1e-6);
    }
  }
}

TEST(EmbeddingCpuTest, GathersRowsAndRejectsOutOfRangeIds) {
  auto table = Random(10 * 4, 7);
  const int32_t ids[] = {3, 0, 9};
  std::vector<float> out(3 * 4);
  ASSERT_TRUE(cpu::Embedding(out.data(), ids, table.data(), 3, 10, 4).ok());
  for (int t = 0; t < 3; ++t) {
    for (int i = 0; i < 4; ++i) EXPECT_EQ(out[t * 4 + i], table[ids[t] * 4 + i]);
  }
  const int32_t bad[] = {10};
  const Status s = cpu::Embedding(out.data(), bad, table.data(), 1, 10, 4);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("10"), std::string::npos);
}

TEST(KvCacheCpuTest, WritesSlotsSkipsPaddingAndCopiesBlocks) {
  KvCacheShape shape{4, 2, 2, 3};
  std::vector<float> kc(4 * shape.BlockElems(), -1.0f), vc = kc;
  auto k = Random(3 * 6, 8), v = Random(3 * 6, 9);
  const int64_t slots[] = {5, -1, 0};
  ASSERT_TRUE(cpu::WriteKvCache(kc.data(), vc.data(), k.data(), v.data(), slots, 3, shape).ok());
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(kc[5 * 6 + i], k[i]);
    EXPECT_EQ(vc[0 * 6 + i], v[2 * 6 + i]);
  }
  int untouched = 0;
  for (float x : kc) untouched += x == -1.0f;
  EXPECT_EQ(untouched, static_cast<int>(kc.size()) - 12);
  const int32_t pairs[] = {2, 3};  // block 2 holds slot 5
  ASSERT_TRUE(cpu::CopyBlocks(kc.data(), vc.data(), pairs, 1, shape).ok());
  for (int i = 0; i < shape.BlockElems(); ++i) EXPECT_EQ(kc[3 * 12 + i], kc[2 * 12 + i]);
  const int64_t past[] = {8};
  EXPECT_FALSE(cpu::WriteKvCache(kc.data(), vc.data(), k.data(), v.data(), past, 1, shape).ok());
}

TEST(GemmCpuTest, MatchesNaiveProductWithBias) {
  const int m = 5, n = 7, k = 33;
  auto a = Random(m * k, 10), w = Random(n * k, 11), bias = Random(n, 12);
  std::vector<float> out(m * n);
  ASSERT_TRUE(cpu::Gemm(out.data(), a.data(), w.data(), bias.data(), m, n, k).ok());
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double acc = bias[j];
      for (int p = 0; p < k; ++p) acc += double{a[i * k + p]} * w[j * k + p];
      EXPECT_NEAR(out[i * n + j], acc, 1e-4);
    }
  }
}

}  // namespace
}  // namespace sluice::kernels
