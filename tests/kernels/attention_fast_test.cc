// The CPU backend's vectorized, threaded paged attention against the reference, on the
// shape table the GPU kernels are tested with (ragged decode, prefill over cached
// prefixes, mixed batches, GQA 1 to 8, windows, sinks), for every ISA this CPU has and
// with 1 and 3 threads; plus a head size no vector path takes.
#include <cmath>
#include <random>
#include <vector>

#include "attention_cases.h"
#include "gtest/gtest.h"
#include "sluice/kernels/attention.h"
#include "sluice/kernels/kv_cache.h"
#include "sluice/kernels/thread_pool.h"

namespace sluice::kernels {
namespace {

using testing::AttentionCase;

// The reference once, then the fast version on each ISA here, alone and on a pool.
void Compare(const AttentionCase& c, const std::vector<cpu::CpuIsa>& isas,
             const std::vector<ThreadPool*>& pools) {
  std::mt19937_64 rng(99);
  testing::AttentionBatch b = testing::BuildAttentionBatch(c, 2, rng);
  KvCacheShape shape{b.num_blocks, c.block_size, c.num_kv_heads, c.head_dim};
  std::normal_distribution<float> normal;
  std::vector<float> k(b.num_blocks * shape.BlockElems()), v(k.size());
  for (float& x : k) x = normal(rng);
  for (float& x : v) x = normal(rng);
  const size_t n = static_cast<size_t>(b.num_q_tokens) * c.num_q_heads * c.head_dim;
  std::vector<float> q(n), want(n);
  for (float& x : q) x = normal(rng);
  std::vector<float> sinks(c.num_q_heads);
  for (float& x : sinks) x = normal(rng);
  if (c.sinks) b.params.sinks = sinks.data();
  ASSERT_TRUE(cpu::PagedAttention(b.params, want.data(), q.data(), k.data(), v.data()).ok());
  for (cpu::CpuIsa isa : isas) {
    for (ThreadPool* pool : pools) {
      std::vector<float> got(n, NAN);
      ASSERT_TRUE(
          cpu::PagedAttentionFast(b.params, got.data(), q.data(), k.data(), v.data(), pool, isa)
              .ok());
      double worst = 0;
      for (size_t i = 0; i < n; ++i) worst = std::max(worst, double{std::fabs(got[i] - want[i])});
      EXPECT_LT(worst, 2e-5) << c.name << " isa " << static_cast<int>(isa) << " pool "
                             << (pool ? pool->size() : 0);
    }
  }
}

TEST(PagedAttentionFastTest, EqualsTheReferenceOnEveryIsaAndThreadCount) {
  ThreadPool three(3);
  std::vector<cpu::CpuIsa> isas;
  for (cpu::CpuIsa isa : {cpu::CpuIsa::kPortable, cpu::CpuIsa::kAvx2, cpu::CpuIsa::kAvx512}) {
    if (cpu::HasCpuIsa(isa, 64)) isas.push_back(isa);
  }
  ASSERT_FALSE(isas.empty());
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) EXPECT_TRUE(cpu::HasCpuIsa(cpu::CpuIsa::kAvx2, 64));
#endif
  for (const AttentionCase& c : testing::AttentionTestCases(/*quick=*/true)) {
    Compare(c, isas, {nullptr, &three});
  }
}

TEST(PagedAttentionFastTest, OddHeadSizesTakeThePortablePath) {
  EXPECT_FALSE(cpu::HasCpuIsa(cpu::CpuIsa::kAvx2, 20));
  EXPECT_TRUE(cpu::HasCpuIsa(cpu::CpuIsa::kBest, 20));
  Compare({"d20", {5, 33}, {5, 2}, 4, 2, 20, 16}, {cpu::CpuIsa::kBest}, {nullptr});
}

TEST(PagedAttentionFastTest, GroupsWiderThanATileTakeTheReference) {
  Compare({"mqa128", {40, 3}, {40, 1}, 128, 1, 64, 16}, {cpu::CpuIsa::kBest}, {nullptr});
}

TEST(PagedAttentionFastTest, OutputDoesNotDependOnThePool) {
  const AttentionCase c{"mixed", {1, 40, 50, 700, 9}, {1, 1, 50, 200, 1}, 32, 8, 64};
  std::mt19937_64 rng(5);
  testing::AttentionBatch b = testing::BuildAttentionBatch(c, 2, rng);
  KvCacheShape shape{b.num_blocks, c.block_size, c.num_kv_heads, c.head_dim};
  std::vector<float> k(b.num_blocks * shape.BlockElems()), v(k.size());
  std::normal_distribution<float> normal;
  for (float& x : k) x = normal(rng);
  for (float& x : v) x = normal(rng);
  const size_t n = static_cast<size_t>(b.num_q_tokens) * c.num_q_heads * c.head_dim;
  std::vector<float> q(n), one(n), two(n);
  for (float& x : q) x = normal(rng);
  ThreadPool pool(2);
  ASSERT_TRUE(cpu::PagedAttentionFast(b.params, one.data(), q.data(), k.data(), v.data()).ok());
  ASSERT_TRUE(
      cpu::PagedAttentionFast(b.params, two.data(), q.data(), k.data(), v.data(), &pool).ok());
  EXPECT_EQ(one, two);
}

TEST(ThreadPoolTest, CoversEveryIndexOnceAndRunsRegionsBackToBack) {
  ThreadPool pool(4);
  EXPECT_EQ(pool.size(), 4);
  for (int round = 0; round < 200; ++round) {
    const int64_t n = 1 + round * 7;
    std::vector<std::atomic<int>> hits(n);
    pool.ParallelFor(n, 1 + round % 5, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << round << " " << i;
  }
  ThreadPool alone(1);
  int64_t sum = 0;
  alone.ParallelFor(10, 3, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum += i;
  });
  EXPECT_EQ(sum, 45);
  EXPECT_GE(DefaultCpuThreads(), 1);
}

}  // namespace
}  // namespace sluice::kernels
