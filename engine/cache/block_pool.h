// A pool of fixed-size KV blocks with reference counts, an O(1) LRU free list, and the
// prefix cache's hash index. It hands out block ids and knows nothing of tensors.
//
// Invariants: a block is in the free list iff its ref count is 0; a free block may still
// hold a cached hash (it is then reusable by a prefix hit until evicted); block ids are
// [0, num_blocks).
// Thread safety: none; the engine thread owns it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/numeric/int128.h"

namespace sluice {

using BlockHash = absl::uint128;

// H(parent, token ids, salt) over XXH3-128. `parent` is 0 for a request's first block.
BlockHash HashBlock(BlockHash parent, std::span<const int32_t> token_ids,
                    std::span<const char> cache_salt);

class BlockPool {
 public:
  BlockPool(int num_blocks, int block_size);

  int num_blocks() const { return static_cast<int>(ref_.size()); }
  int block_size() const { return block_size_; }
  int num_free() const { return num_free_; }
  // Fraction of blocks held by running requests (0..1).
  double Usage() const { return 1.0 - static_cast<double>(num_free_) / num_blocks(); }
  int64_t num_evictions() const { return num_evictions_; }

  // Takes `n` blocks from the head of the free list (least recently freed first),
  // evicting their cached hashes; ref count 1 each. nullopt when fewer are free.
  std::optional<std::vector<int32_t>> Allocate(int n);

  // Drops one reference per block, in the order given; blocks reaching 0 join the tail
  // of the free list (so the first given is evicted first).
  void Free(std::span<const int32_t> blocks);

  // The cached block holding exactly `token_ids` under `hash`, with a reference taken;
  // nullopt on a miss or when the stored tokens differ (a hash collision).
  std::optional<int32_t> TakeCached(BlockHash hash, std::span<const int32_t> token_ids);

  // Marks a full block as holding `token_ids` under `hash`. A hash already cached by
  // another block is left to that block.
  void Register(int32_t block, BlockHash hash, std::span<const int32_t> token_ids);

  int ref_count(int32_t block) const { return ref_[block]; }
  // Free-list order, head first (for tests).
  std::vector<int32_t> FreeListForTest() const;

 private:
  static constexpr int32_t kNone = -1;
  void Unlink(int32_t b);
  void PushTail(int32_t b);
  void Evict(int32_t b);

  int block_size_;
  std::vector<int32_t> ref_;
  std::vector<int32_t> prev_, next_;  // free-list links
  int32_t head_ = kNone, tail_ = kNone;
  int num_free_ = 0;
  int64_t num_evictions_ = 0;
  struct Cached {
    BlockHash hash;
    std::vector<int32_t> token_ids;
  };
  std::vector<std::optional<Cached>> cached_;              // per block
  absl::flat_hash_map<BlockHash, int32_t> hash_to_block_;  // cached hash -> block
};

}  // namespace sluice
