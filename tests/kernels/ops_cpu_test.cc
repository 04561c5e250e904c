// CPU references of the element-wise ops, the KV-cache writes and the GEMM, each
// against its defining formula in double precision.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "sluice/kernels/activation.h"
#include "sluice/kernels/embedding.h"
#include "sluice/kernels/gather.h"
#include "sluice/kernels/gemm.h"
#include "sluice/kernels/kv_cache.h"
#include "sluice/kernels/moe.h"
#include "sluice/kernels/norm.h"
#include "sluice/kernels/qkv.h"
#include "sluice/kernels/random.h"
#include "sluice/kernels/rope.h"
#include "sluice/kernels/thread_pool.h"

namespace sluice::kernels {
namespace {

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// Routing against its definitions: softmax then top-k (renormalized or not), and top-k
// then softmax; experts by descending weight, ties to the lower id.
TEST(MoeRoutingCpuTest, TopKFollowsEachDefinition) {
  const int n = 5, e = 8, k = 3;
  auto logits = Random(n * e, 9);
  logits[2 * e + 1] = logits[2 * e + 6] = 9.0f;  // a tie at the top of token 2
  std::vector<int32_t> ids(n * k);
  std::vector<float> w(n * k);
  for (bool renorm : {false, true}) {
    ASSERT_TRUE(cpu::RouteTopK(ids.data(), w.data(), logits.data(), n, e, k,
                               MoeRouting::kSoftmaxTopK, renorm)
                    .ok());
    for (int t = 0; t < n; ++t) {
      double z = 0, kept = 0;
      for (int x = 0; x < e; ++x) z += std::exp(double{logits[t * e + x]});
      for (int j = 0; j < k; ++j) kept += std::exp(double{logits[t * e + ids[t * k + j]]}) / z;
      for (int j = 0; j < k; ++j) {
        const double p = std::exp(double{logits[t * e + ids[t * k + j]]}) / z;
        EXPECT_NEAR(w[t * k + j], renorm ? p / kept : p, 1e-6);
        if (j > 0) EXPECT_GE(w[t * k + j - 1], w[t * k + j]);
      }
      // No expert left out weighs more than the last one picked.
      for (int x = 0; x < e; ++x) {
        bool picked = false;
        for (int j = 0; j < k; ++j) picked = picked || ids[t * k + j] == x;
        if (!picked) EXPECT_LE(logits[t * e + x], logits[t * e + ids[t * k + k - 1]]);
      }
    }
    EXPECT_EQ(ids[2 * k], 1);
    EXPECT_EQ(ids[2 * k + 1], 6);
  }
  ASSERT_TRUE(
      cpu::RouteTopK(ids.data(), w.data(), logits.data(), n, e, k, MoeRouting::kTopKSoftmax, false)
          .ok());
  for (int t = 0; t < n; ++t) {
    double z = 0;
    for (int j = 0; j < k; ++j) z += std::exp(double{logits[t * e + ids[t * k + j]]});
    for (int j = 0; j < k; ++j) {
      EXPECT_NEAR(w[t * k + j], std::exp(double{logits[t * e + ids[t * k + j]]}) / z, 1e-6);
    }
  }
  EXPECT_FALSE(cpu::RouteTopK(ids.data(), w.data(), logits.data(), n, e, e + 1,
                              MoeRouting::kSoftmaxTopK, false)
                   .ok());
}

// The MoE layer against its definition token by token in double precision: each token
// through its own top-k experts, with and without biases, both activations, more experts
// than tokens (so that some receive none), written over its input.
TEST(MoeExpertsCpuTest, MatchesPerTokenDefinition) {
  for (bool gpt_oss : {false, true}) {
    MoeShape s;
    s.num_experts = 16;
    s.top_k = gpt_oss ? 4 : 2;
    s.hidden = 24;
    s.intermediate = 12;
    s.routing = gpt_oss ? MoeRouting::kTopKSoftmax : MoeRouting::kSoftmaxTopK;
    s.renormalize = !gpt_oss;
    s.activation = gpt_oss ? MoeActivation::kClampedSwiGlu : MoeActivation::kSiluAndMul;
    const int n = 5, e = s.num_experts, h = s.hidden, inter = s.intermediate, k = s.top_k;
    const auto x = Random(n * h, 31), logits = Random(n * e, 32);
    auto gate_up = Random(size_t(e) * 2 * inter * h, 33), down = Random(size_t(e) * h * inter, 34);
    for (float& v : gate_up) v *= 0.3f;
    for (float& v : down) v *= 0.3f;
    const auto gate_up_bias = Random(size_t(e) * 2 * inter, 35),
               down_bias = Random(size_t(e) * h, 36);
    MoeExpertWeights<float> w;
    w.gate_up = gate_up.data();
    w.down = down.data();
    if (gpt_oss) {
      w.gate_up_bias = gate_up_bias.data();
      w.down_bias = down_bias.data();
    }
    std::vector<int32_t> ids(n * k);
    std::vector<float> weights(n * k);
    ASSERT_TRUE(
        cpu::RouteTopK(ids.data(), weights.data(), logits.data(), n, e, k, s.routing, s.renormalize)
            .ok());
    std::vector<float> out = x;  // in place
    ASSERT_TRUE(cpu::MoeExperts(out.data(), out.data(), logits.data(), w, s, n).ok());
    for (int t = 0; t < n; ++t) {
      std::vector<double> want(h, 0.0);
      for (int j = 0; j < k; ++j) {
        const int ex = ids[t * k + j];
        std::vector<double> act(inter);
        for (int i = 0; i < inter; ++i) {
          double g = 0, u = 0;
          for (int c = 0; c < h; ++c) {
            g += double{gate_up[(size_t(ex) * 2 * inter + i) * h + c]} * x[t * h + c];
            u += double{gate_up[(size_t(ex) * 2 * inter + inter + i) * h + c]} * x[t * h + c];
          }
          if (gpt_oss) {
            g = std::min(g + gate_up_bias[size_t(ex) * 2 * inter + i], double{s.swiglu_limit});
            u = std::clamp(u + gate_up_bias[size_t(ex) * 2 * inter + inter + i],
                           -double{s.swiglu_limit}, double{s.swiglu_limit});
            act[i] = (u + 1) * g / (1 + std::exp(-double{s.swiglu_alpha} * g));
          } else {
            act[i] = g / (1 + std::exp(-g)) * u;
          }
        }
        for (int c = 0; c < h; ++c) {
          double y = gpt_oss ? double{down_bias[size_t(ex) * h + c]} : 0.0;
          for (int i = 0; i < inter; ++i)
            y += double{down[(size_t(ex) * h + c) * inter + i]} * act[i];
          want[c] += weights[t * k + j] * y;
        }
      }
      for (int c = 0; c < h; ++c) {
        EXPECT_NEAR(out[t * h + c], want[c], 1e-4 * (1 + std::abs(want[c])))
            << "gpt_oss " << gpt_oss << " token " << t << " column " << c;
      }
    }
  }
}

TEST(ClampedSwiGluCpuTest, MatchesGptOssFormula) {
  const int n = 4, inter = 33;
  auto x = Random(n * 2 * inter, 21);
  for (float& v : x) v *= 6.0f;  // past the limit on both sides
  std::vector<float> out(n * inter);
  ASSERT_TRUE(cpu::ClampedSwiGlu(out.data(), x.data(), n, inter, 1.702f, 7.0f).ok());
  for (int t = 0; t < n; ++t) {
    for (int i = 0; i < inter; ++i) {
      const double g = std::min(double{x[t * 2 * inter + i]}, 7.0);
      const double u = std::clamp(double{x[t * 2 * inter + inter + i]}, -7.0, 7.0);
      EXPECT_NEAR(out[t * inter + i], (u + 1) * g / (1 + std::exp(-1.702 * g)), 1e-4);
    }
  }
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
  EXPECT_EQ(a[0], b[0]);                 // wavelength 2π: untouched
  EXPECT_FLOAT_EQ(b[63], a[63] / 8.0f);  // longest wavelength: divided by the factor
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
  // m = 1 takes the matrix-vector path; a pool splits the columns (the last slice short).
  // Every element is checked: a column no slice covered would keep the NaN put there.
  ThreadPool pool(3);
  for (const auto& [m, n, k, use_pool] : std::vector<std::tuple<int, int, int, bool>>{
           {5, 7, 33, false},
           {1, 7, 33, false},
           {1, 4097, 256, true},  // single rows on the pool
           {9, 1000, 300, true},
           {9, 193, 300, true}}) {  // 193 / 3 rounds to whole vectors: the tail is short
    SCOPED_TRACE(::testing::Message() << m << "x" << n << "x" << k << " pool " << use_pool);
    auto a = Random(m * k, 10), w = Random(n * k, 11), bias = Random(n, 12);
    std::vector<float> out(m * n, NAN);
    ASSERT_TRUE(
        cpu::Gemm(out.data(), a.data(), w.data(), bias.data(), m, n, k, use_pool ? &pool : nullptr)
            .ok());
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < n; ++j) {
        double acc = bias[j];
        for (int p = 0; p < k; ++p) acc += double{a[i * k + p]} * w[j * k + p];
        ASSERT_NEAR(out[i * n + j], acc, 1e-4) << i << " " << j;
      }
    }
  }
}

TEST(GatherRowsCpuTest, CopiesNamedRowsAndRejectsOutOfRange) {
  const std::vector<float> in = {0, 1, 10, 11, 20, 21};  // 3 rows of 2
  const std::vector<int32_t> rows = {2, 0, 2};
  std::vector<float> out(6);
  ASSERT_TRUE(cpu::GatherRows(out.data(), in.data(), rows.data(), 3, 3, 2).ok());
  EXPECT_EQ(out, (std::vector<float>{20, 21, 0, 1, 20, 21}));
  const int32_t bad = 3;
  const Status s = cpu::GatherRows(out.data(), in.data(), &bad, 1, 3, 2);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("row 3"), std::string::npos) << s.message();
}

TEST(FillUniformCpuTest, DeterministicByIndexInRangeAndUniform) {
  const int64_t n = 200000;
  std::vector<float> a(n), b(n / 2);
  ASSERT_TRUE(cpu::FillUniform(a.data(), n, 7, 3, 0, -0.5f, 0.5f).ok());
  // The same values from an offset: each value depends on its index only.
  ASSERT_TRUE(cpu::FillUniform(b.data(), n / 2, 7, 3, n / 2, -0.5f, 0.5f).ok());
  for (int64_t i = 0; i < n / 2; ++i) ASSERT_EQ(a[n / 2 + i], b[i]) << i;
  double sum = 0, sum_sq = 0;
  for (float x : a) {
    ASSERT_GE(x, -0.5f);
    ASSERT_LT(x, 0.5f);
    sum += x;
    sum_sq += double{x} * x;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.005);
  EXPECT_NEAR(sum_sq / n, 1.0 / 12, 0.002);  // variance of U(-0.5, 0.5)
  // Another seed or stream gives other values.
  std::vector<float> c(8), d(8);
  ASSERT_TRUE(cpu::FillUniform(c.data(), 8, 8, 3, 0, -0.5f, 0.5f).ok());
  ASSERT_TRUE(cpu::FillUniform(d.data(), 8, 7, 4, 0, -0.5f, 0.5f).ok());
  EXPECT_NE(std::vector<float>(a.begin(), a.begin() + 8), c);
  EXPECT_NE(std::vector<float>(a.begin(), a.begin() + 8), d);
}

// With QK-norm, each head of q and k is normalized with its weight before the rotation:
// the fused call equals RmsNorm over heads followed by ApplyRope, and differs without it.
TEST(SplitQkvCpuTest, QkNormNormalizesEachHeadBeforeRope) {
  const QkvLayout l{4, 2, 8, 8};
  const KvCacheShape shape{3, 4, 2, 8};
  RopeConfig rope;
  rope.rotary_dim = 8;
  const std::vector<float> cos_sin = RopeCosSinCache(rope, 16);
  const std::vector<float> qkv = Random(3 * l.Width(), 11);
  const std::vector<float> qw = Random(8, 12), kw = Random(8, 13);
  const std::vector<int32_t> positions = {0, 5, 9};
  const std::vector<int64_t> slots = {6, 2, 11};
  const int64_t cache_elems = int64_t{shape.num_blocks} * shape.BlockElems();
  std::vector<float> q(3 * 4 * 8), kc(cache_elems, 0.f), vc(cache_elems, 0.f);
  ASSERT_TRUE(cpu::SplitQkvRopeWriteKv(q.data(), kc.data(), vc.data(), qkv.data(), positions.data(),
                                       slots.data(), cos_sin.data(), 3, l, shape,
                                       {qw.data(), kw.data(), 1e-6f})
                  .ok());
  // The same by hand: split, per-head norm, rope.
  std::vector<float> wq(3 * 32), wk(3 * 16);
  for (int t = 0; t < 3; ++t) {
    std::copy_n(qkv.begin() + t * l.Width(), 32, wq.begin() + t * 32);
    std::copy_n(qkv.begin() + t * l.Width() + 32, 16, wk.begin() + t * 16);
  }
  ASSERT_TRUE(cpu::RmsNorm(wq.data(), wq.data(), qw.data(), 3 * 4, 8, 1e-6f).ok());
  ASSERT_TRUE(cpu::RmsNorm(wk.data(), wk.data(), kw.data(), 3 * 2, 8, 1e-6f).ok());
  ASSERT_TRUE(
      cpu::ApplyRope(wq.data(), wk.data(), positions.data(), cos_sin.data(), 3, 4, 2, 8, 8).ok());
  for (size_t i = 0; i < wq.size(); ++i) EXPECT_NEAR(q[i], wq[i], 1e-6f) << i;
  for (int t = 0; t < 3; ++t) {
    for (int i = 0; i < 16; ++i) EXPECT_NEAR(kc[slots[t] * 16 + i], wk[t * 16 + i], 1e-6f);
  }
  // Without the norm the result is another one.
  std::vector<float> plain(q.size());
  ASSERT_TRUE(cpu::SplitQkvRopeWriteKv(plain.data(), kc.data(), vc.data(), qkv.data(),
                                       positions.data(), slots.data(), cos_sin.data(), 3, l, shape)
                  .ok());
  EXPECT_NE(plain, q);
}

TEST(SplitQkvCpuTest, SplitsRotatesAndWritesSlots) {
  const QkvLayout l{4, 2, 8, 8};
  const KvCacheShape shape{3, 4, 2, 8};
  RopeConfig rope;
  rope.theta = 10000.0f;
  rope.rotary_dim = 8;
  const std::vector<float> cos_sin = RopeCosSinCache(rope, 16);
  const std::vector<float> qkv = Random(3 * l.Width(), 5);
  const std::vector<int32_t> positions = {0, 5, 9};
  const std::vector<int64_t> slots = {6, -1, 11};  // the middle token is padding
  const int64_t cache_elems = int64_t{shape.num_blocks} * shape.BlockElems();
  std::vector<float> q(3 * 4 * 8), k_cache(cache_elems, -7.f), v_cache(cache_elems, -7.f);
  ASSERT_TRUE(cpu::SplitQkvRopeWriteKv(q.data(), k_cache.data(), v_cache.data(), qkv.data(),
                                       positions.data(), slots.data(), cos_sin.data(), 3, l, shape)
                  .ok());
  const int q_w = 32, kv_w = 16;
  // Position 0 rotates by nothing: q, k and v are the projection's own values.
  for (int i = 0; i < q_w; ++i) EXPECT_FLOAT_EQ(q[i], qkv[i]);
  for (int i = 0; i < kv_w; ++i) {
    EXPECT_FLOAT_EQ(k_cache[6 * kv_w + i], qkv[q_w + i]);
    EXPECT_FLOAT_EQ(v_cache[6 * kv_w + i], qkv[q_w + kv_w + i]);
  }
  // Position 9, pair (0, 4) of q head 1: rotated by 9 * theta^0 = 9 radians.
  const float* row = qkv.data() + 2 * l.Width();
  const float a = row[8], b = row[8 + 4];
  EXPECT_NEAR(q[2 * q_w + 8], a * std::cos(9.0f) - b * std::sin(9.0f), 1e-5);
  EXPECT_NEAR(q[2 * q_w + 12], b * std::cos(9.0f) + a * std::sin(9.0f), 1e-5);
  // Rotation keeps each pair's length; v is copied unrotated.
  const float* k_row = k_cache.data() + 11 * kv_w;
  for (int j = 0; j < 4; ++j) {
    EXPECT_NEAR(std::hypot(k_row[j], k_row[j + 4]), std::hypot(row[q_w + j], row[q_w + j + 4]),
                1e-5);
  }
  for (int i = 0; i < kv_w; ++i) EXPECT_FLOAT_EQ(v_cache[11 * kv_w + i], row[q_w + kv_w + i]);
  // Padding wrote nothing: every other slot still holds the fill value.
  for (int64_t slot = 0; slot < 12; ++slot) {
    if (slot == 6 || slot == 11) continue;
    for (int i = 0; i < kv_w; ++i) ASSERT_EQ(k_cache[slot * kv_w + i], -7.f) << slot;
  }
}

}  // namespace
}  // namespace sluice::kernels
