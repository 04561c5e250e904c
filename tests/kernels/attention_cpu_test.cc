// The CPU paged attention against a dense, contiguous causal attention computed in
// double precision, over random block tables and ragged lengths, with and without
// sliding windows and sinks.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "sluice/kernels/attention.h"
#include "sluice/kernels/kv_cache.h"

namespace sluice::kernels {
namespace {

struct Case {
  std::vector<int> seq_lens;
  std::vector<int> q_lens;
  int q_heads, kv_heads, head_dim, block_size;
  int window = 0;      // a sliding window (0: none)
  bool sinks = false;  // a learned logit per head in the denominator
};

class PagedAttentionCpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(PagedAttentionCpuTest, MatchesDenseCausalAttention) {
  const Case& c = GetParam();
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal;
  const int num_seqs = static_cast<int>(c.seq_lens.size());
  int max_blocks = 0, total_blocks = 0;
  for (int len : c.seq_lens) {
    max_blocks = std::max(max_blocks, (len + c.block_size - 1) / c.block_size);
    total_blocks += (len + c.block_size - 1) / c.block_size;
  }
  const int pool = total_blocks * 2 + 3;
  KvCacheShape shape{pool, c.block_size, c.kv_heads, c.head_dim};
  std::vector<float> k_cache(pool * shape.BlockElems()), v_cache(k_cache.size());
  for (float& x : k_cache) x = normal(rng);
  for (float& x : v_cache) x = normal(rng);
  // Random distinct blocks per sequence.
  std::vector<int32_t> perm(pool);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> tables(num_seqs * max_blocks, -1);
  int next = 0;
  std::vector<int32_t> cu{0};
  for (int s = 0; s < num_seqs; ++s) {
    for (int b = 0; b < (c.seq_lens[s] + c.block_size - 1) / c.block_size; ++b) {
      tables[s * max_blocks + b] = perm[next++];
    }
    cu.push_back(cu.back() + c.q_lens[s]);
  }
  const int tokens = cu.back();
  const int width = c.q_heads * c.head_dim;
  std::vector<float> q(tokens * width), out(tokens * width, NAN);
  for (float& x : q) x = normal(rng);

  PagedAttentionParams p;
  p.num_seqs = num_seqs;
  p.num_q_heads = c.q_heads;
  p.num_kv_heads = c.kv_heads;
  p.head_dim = c.head_dim;
  p.block_size = c.block_size;
  p.max_blocks_per_seq = max_blocks;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  p.block_tables = tables.data();
  p.seq_lens = c.seq_lens.data();
  p.cu_seqlens_q = cu.data();
  std::vector<float> sinks(c.q_heads);
  for (float& x : sinks) x = 2.0f * normal(rng);
  p.sliding_window = c.window;
  p.sinks = c.sinks ? sinks.data() : nullptr;
  ASSERT_TRUE(cpu::PagedAttention(p, out.data(), q.data(), k_cache.data(), v_cache.data()).ok());

  const int group = c.q_heads / c.kv_heads;
  for (int s = 0; s < num_seqs; ++s) {
    auto kv_at = [&](const std::vector<float>& cache, int pos, int h, int d) {
      const int block = tables[s * max_blocks + pos / c.block_size];
      return cache[((int64_t{block} * c.block_size + pos % c.block_size) * c.kv_heads + h) *
                       c.head_dim +
                   d];
    };
    for (int i = 0; i < c.q_lens[s]; ++i) {
      const int t = cu[s] + i, last = c.seq_lens[s] - c.q_lens[s] + i;
      for (int h = 0; h < c.q_heads; ++h) {
        std::vector<double> w(last + 1);
        const int first = c.window > 0 ? std::max(0, last + 1 - c.window) : 0;
        double mx = c.sinks ? double{sinks[h]} : -1e300, denom = 0;
        for (int pos = first; pos <= last; ++pos) {
          double dot = 0;
          for (int d = 0; d < c.head_dim; ++d) {
            dot += double{q[t * width + h * c.head_dim + d]} * kv_at(k_cache, pos, h / group, d);
          }
          w[pos] = dot * p.scale;
          mx = std::max(mx, w[pos]);
        }
        if (c.sinks) denom = std::exp(double{sinks[h]} - mx);
        for (int pos = first; pos <= last; ++pos) denom += (w[pos] = std::exp(w[pos] - mx));
        for (int d = 0; d < c.head_dim; ++d) {
          double acc = 0;
          for (int pos = first; pos <= last; ++pos)
            acc += w[pos] / denom * kv_at(v_cache, pos, h / group, d);
          ASSERT_NEAR(out[t * width + h * c.head_dim + d], acc, 1e-4)
              << "seq " << s << " token " << i << " head " << h << " dim " << d;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, PagedAttentionCpuTest,
    ::testing::Values(Case{{1, 17, 40}, {1, 1, 1}, 4, 4, 64, 16},  // decode, MHA
                      Case{{33, 5}, {33, 5}, 8, 2, 64, 16},        // full prefill, GQA 4
                      Case{{50, 70}, {10, 1}, 8, 1, 128, 16},      // prefix + decode, GQA 8
                      Case{{29}, {7}, 4, 2, 64, 8},                // chunk over a cached prefix
                      // gpt-oss: windows shorter than the context, sinks, both.
                      Case{{40, 9}, {1, 9}, 4, 2, 64, 16, 16, false},
                      Case{{33, 5}, {33, 5}, 8, 2, 64, 16, 0, true},
                      Case{{50, 70}, {10, 1}, 8, 1, 64, 16, 7, true}));

TEST(PagedAttentionCpuTest, RejectsBadHeadRatio) {
  PagedAttentionParams p;
  p.num_q_heads = 6;
  p.num_kv_heads = 4;
  p.head_dim = 64;
  p.max_blocks_per_seq = 1;
  EXPECT_FALSE(ValidatePagedAttention(p).ok());
}

}  // namespace
}  // namespace sluice::kernels
