// Per-sequence KV block bookkeeping over a BlockPool: prefix-cache hits for new
// sequences, growing a sequence's block list, registering full blocks, release.
// Returns opaque block lists; knows nothing of tensors.
// Thread safety: none; the engine thread owns it.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "engine/cache/block_pool.h"

namespace sluice {

// A sequence's blocks and the chained hashes of its full blocks of tokens (they live on
// the request). The hashes depend only on the tokens and the salt, so each is computed once
// and kept when the blocks are released (a failed admission, a preemption).
struct SeqBlocks {
  std::vector<int32_t> blocks;
  std::vector<BlockHash> hashes;  // hashes[i]: chained hash of the tokens of block i
  int num_registered = 0;         // leading blocks registered in the prefix cache
};

struct PrefixCacheCounters {
  int64_t queried_tokens = 0;
  int64_t hit_tokens = 0;
};

class KvCacheManager {
 public:
  KvCacheManager(int num_blocks, int block_size, bool enable_prefix_caching = true);

  int block_size() const { return pool_.block_size(); }
  int num_blocks() const { return pool_.num_blocks(); }
  int num_free_blocks() const { return pool_.num_free(); }
  double Usage() const { return pool_.Usage(); }
  int64_t num_evictions() const { return pool_.num_evictions(); }
  const PrefixCacheCounters& prefix_counters() const { return counters_; }
  const BlockPool& pool() const { return pool_; }

  // For a sequence holding no blocks: takes the longest cached run of its leading full
  // blocks, capped so that at least the last token is left to compute. Returns the
  // number of tokens hit (a multiple of block_size). Counts nothing: the caller counts
  // the query once it keeps the blocks (CountPrefixQuery).
  int AcquireCachedPrefix(std::span<const int32_t> tokens, std::string_view cache_salt,
                          SeqBlocks& seq);

  // Counts one prefix-cache lookup of `num_tokens` tokens that hit `hit_tokens`.
  void CountPrefixQuery(int num_tokens, int hit_tokens) {
    counters_.queried_tokens += num_tokens;
    counters_.hit_tokens += hit_tokens;
  }

  // Ensures `seq` has blocks for its first `num_tokens` tokens. Returns false and changes
  // nothing when the pool is short.
  bool Reserve(SeqBlocks& seq, int num_tokens);

  // Hashes and registers every full block among the first `num_computed` tokens that is
  // not yet registered.
  void CacheFullBlocks(SeqBlocks& seq, std::span<const int32_t> tokens, int num_computed,
                       std::string_view cache_salt);

  // Returns all of `seq`'s blocks to the pool, last block first (evicted first); the
  // hashes stay.
  void Release(SeqBlocks& seq);

  // Number of blocks a sequence of `num_tokens` tokens needs.
  int BlocksFor(int num_tokens) const { return (num_tokens + block_size() - 1) / block_size(); }

 private:
  BlockPool pool_;
  bool enable_prefix_caching_;
  PrefixCacheCounters counters_;

  // Extends seq.hashes to the first `num_blocks` full blocks of `tokens`.
  void HashBlocks(SeqBlocks& seq, std::span<const int32_t> tokens, int num_blocks,
                  std::span<const char> salt) const;
};

}  // namespace sluice
