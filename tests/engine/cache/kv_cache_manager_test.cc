// Exact block ids, free-list order and eviction order of the pool and the manager.
#include <numeric>
#include <string>
#include <vector>

#include "engine/cache/kv_cache_manager.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

std::vector<int32_t> Tokens(int n, int start = 1000) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), start);
  return t;
}

TEST(BlockPoolTest, AllocatesFromHeadAndFreesToTail) {
  BlockPool pool(6, 4);
  EXPECT_EQ(pool.FreeListForTest(), (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
  auto a = pool.Allocate(2);
  ASSERT_TRUE(a);
  EXPECT_EQ(*a, (std::vector<int32_t>{0, 1}));
  auto b = pool.Allocate(3);
  EXPECT_EQ(*b, (std::vector<int32_t>{2, 3, 4}));
  EXPECT_FALSE(pool.Allocate(2));  // one left
  EXPECT_EQ(pool.num_free(), 1);
  pool.Free(std::vector<int32_t>{4, 2});
  EXPECT_EQ(pool.FreeListForTest(), (std::vector<int32_t>{5, 4, 2}));
  auto c = pool.Allocate(2);
  EXPECT_EQ(*c, (std::vector<int32_t>{5, 4}));
  EXPECT_DOUBLE_EQ(pool.Usage(), 5.0 / 6.0);
}

TEST(BlockPoolTest, RefCountsKeepSharedBlocksOutOfTheFreeList) {
  BlockPool pool(3, 4);
  auto a = *pool.Allocate(1);
  const auto toks = Tokens(4);
  const BlockHash h = HashBlock(0, toks, {});
  pool.Register(a[0], h, toks);
  auto hit = pool.TakeCached(h, toks);
  ASSERT_TRUE(hit);
  EXPECT_EQ(*hit, a[0]);
  EXPECT_EQ(pool.ref_count(a[0]), 2);
  pool.Free(a);
  EXPECT_EQ(pool.num_free(), 2);  // still held once
  pool.Free(a);
  EXPECT_EQ(pool.FreeListForTest(), (std::vector<int32_t>{1, 2, 0}));
  // A free block with a cached hash is still a hit and leaves the free list.
  EXPECT_EQ(pool.TakeCached(h, toks), std::optional<int32_t>(0));
  EXPECT_EQ(pool.FreeListForTest(), (std::vector<int32_t>{1, 2}));
}

TEST(BlockPoolTest, CollisionWithDifferentTokensIsAMiss) {
  BlockPool pool(2, 4);
  auto a = *pool.Allocate(1);
  const BlockHash forged = 42;
  pool.Register(a[0], forged, Tokens(4));
  EXPECT_FALSE(pool.TakeCached(forged, Tokens(4, 7)));
  EXPECT_TRUE(pool.TakeCached(forged, Tokens(4)));
}

TEST(BlockPoolTest, AllocationEvictsLeastRecentlyFreedCachedBlocksFirst) {
  BlockPool pool(3, 2);
  auto blocks = *pool.Allocate(3);
  std::vector<BlockHash> hashes;
  for (int i = 0; i < 3; ++i) {
    const auto t = Tokens(2, 10 * i);
    hashes.push_back(HashBlock(0, t, {}));
    pool.Register(blocks[i], hashes[i], t);
  }
  pool.Free(std::vector<int32_t>{2, 0, 1});  // free-list order 2, 0, 1
  EXPECT_EQ(*pool.Allocate(1), (std::vector<int32_t>{2}));
  EXPECT_EQ(pool.num_evictions(), 1);
  EXPECT_FALSE(pool.TakeCached(hashes[2], Tokens(2, 20)));
  EXPECT_TRUE(pool.TakeCached(hashes[0], Tokens(2, 0)));
  EXPECT_TRUE(pool.TakeCached(hashes[1], Tokens(2, 10)));
}

TEST(KvCacheManagerTest, SecondSequenceHitsFullBlocksOfTheFirst) {
  KvCacheManager m(10, 4);
  const auto prompt = Tokens(10);
  SeqBlocks a;
  EXPECT_EQ(m.AcquireCachedPrefix(prompt, "", a), 0);
  ASSERT_TRUE(m.Reserve(a, 10));
  EXPECT_EQ(a.blocks, (std::vector<int32_t>{0, 1, 2}));
  m.CacheFullBlocks(a, prompt, 10, "");
  EXPECT_EQ(a.hashes.size(), 2u);  // block 2 holds 2 tokens: not full
  m.Release(a);
  EXPECT_EQ(m.pool().FreeListForTest(), (std::vector<int32_t>{3, 4, 5, 6, 7, 8, 9, 2, 1, 0}));
  EXPECT_EQ(a.hashes.size(), 2u);  // kept: a released sequence is not hashed again
  EXPECT_EQ(a.num_registered, 0);

  SeqBlocks b;
  EXPECT_EQ(m.AcquireCachedPrefix(prompt, "", b), 8);
  EXPECT_EQ(b.blocks, (std::vector<int32_t>{0, 1}));
  ASSERT_TRUE(m.Reserve(b, 11));
  EXPECT_EQ(b.blocks, (std::vector<int32_t>{0, 1, 3}));
  // Lookups are counted by the caller once it keeps the blocks, not per attempt.
  EXPECT_EQ(m.prefix_counters().queried_tokens, 0);
  m.CountPrefixQuery(10, 8);
  EXPECT_EQ(m.prefix_counters().queried_tokens, 10);
  EXPECT_EQ(m.prefix_counters().hit_tokens, 8);
}

TEST(KvCacheManagerTest, HitIsCappedToLeaveTheLastTokenToCompute) {
  KvCacheManager m(10, 4);
  const auto prompt = Tokens(8);
  SeqBlocks a;
  m.AcquireCachedPrefix(prompt, "", a);
  ASSERT_TRUE(m.Reserve(a, 8));
  m.CacheFullBlocks(a, prompt, 8, "");
  EXPECT_EQ(a.hashes.size(), 2u);
  SeqBlocks b;
  EXPECT_EQ(m.AcquireCachedPrefix(prompt, "", b), 4);  // not 8: the last token must run
}

TEST(KvCacheManagerTest, DifferentSaltNeverShares) {
  KvCacheManager m(10, 4);
  const auto prompt = Tokens(9);
  SeqBlocks a;
  m.AcquireCachedPrefix(prompt, "tenant-a", a);
  ASSERT_TRUE(m.Reserve(a, 9));
  m.CacheFullBlocks(a, prompt, 9, "tenant-a");
  SeqBlocks b;
  EXPECT_EQ(m.AcquireCachedPrefix(prompt, "tenant-b", b), 0);
  SeqBlocks c;
  EXPECT_EQ(m.AcquireCachedPrefix(prompt, "tenant-a", c), 8);
}

TEST(KvCacheManagerTest, ReserveFailsWithoutSideEffects) {
  KvCacheManager m(3, 4);
  SeqBlocks a;
  ASSERT_TRUE(m.Reserve(a, 8));
  SeqBlocks b;
  EXPECT_FALSE(m.Reserve(b, 8));
  EXPECT_TRUE(b.blocks.empty());
  EXPECT_EQ(m.num_free_blocks(), 1);
  m.Release(a);
  EXPECT_EQ(m.num_free_blocks(), 3);
}

TEST(KvCacheManagerTest, DisabledPrefixCachingNeverHits) {
  KvCacheManager m(10, 4, /*enable_prefix_caching=*/false);
  const auto prompt = Tokens(9);
  SeqBlocks a;
  m.AcquireCachedPrefix(prompt, "", a);
  ASSERT_TRUE(m.Reserve(a, 9));
  m.CacheFullBlocks(a, prompt, 9, "");
  m.Release(a);
  SeqBlocks b;
  EXPECT_EQ(m.AcquireCachedPrefix(prompt, "", b), 0);
}

}  // namespace
}  // namespace sluice
