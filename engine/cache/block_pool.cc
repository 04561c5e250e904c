#include "engine/cache/block_pool.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace sluice {

BlockHash HashBlock(BlockHash parent, std::span<const int32_t> token_ids,
                    std::span<const char> cache_salt) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_128bits_reset(state);
  const uint64_t parent_words[2] = {absl::Uint128High64(parent), absl::Uint128Low64(parent)};
  XXH3_128bits_update(state, parent_words, sizeof(parent_words));
  XXH3_128bits_update(state, token_ids.data(), token_ids.size_bytes());
  const uint64_t salt_len = cache_salt.size();
  XXH3_128bits_update(state, &salt_len, sizeof(salt_len));
  XXH3_128bits_update(state, cache_salt.data(), cache_salt.size());
  const XXH128_hash_t h = XXH3_128bits_digest(state);
  XXH3_freeState(state);
  return absl::MakeUint128(h.high64, h.low64);
}

BlockPool::BlockPool(int num_blocks, int block_size)
    : block_size_(block_size),
      ref_(num_blocks, 0),
      prev_(num_blocks, kNone),
      next_(num_blocks, kNone),
      cached_(num_blocks) {
  for (int32_t b = 0; b < num_blocks; ++b) PushTail(b);
}

void BlockPool::Unlink(int32_t b) {
  (prev_[b] == kNone ? head_ : next_[prev_[b]]) = next_[b];
  (next_[b] == kNone ? tail_ : prev_[next_[b]]) = prev_[b];
  prev_[b] = next_[b] = kNone;
  --num_free_;
}

void BlockPool::PushTail(int32_t b) {
  prev_[b] = tail_;
  next_[b] = kNone;
  (tail_ == kNone ? head_ : next_[tail_]) = b;
  tail_ = b;
  ++num_free_;
}

void BlockPool::Evict(int32_t b) {
  if (!cached_[b]) return;
  hash_to_block_.erase(cached_[b]->hash);
  cached_[b].reset();
  ++num_evictions_;
}

std::optional<std::vector<int32_t>> BlockPool::Allocate(int n) {
  if (n > num_free_) return std::nullopt;
  std::vector<int32_t> blocks;
  blocks.reserve(n);
  for (int i = 0; i < n; ++i) {
    const int32_t b = head_;
    Unlink(b);
    Evict(b);
    ref_[b] = 1;
    blocks.push_back(b);
  }
  return blocks;
}

void BlockPool::Free(std::span<const int32_t> blocks) {
  for (int32_t b : blocks) {
    if (--ref_[b] == 0) PushTail(b);
  }
}

std::optional<int32_t> BlockPool::TakeCached(BlockHash hash, std::span<const int32_t> token_ids) {
  auto it = hash_to_block_.find(hash);
  if (it == hash_to_block_.end()) return std::nullopt;
  const int32_t b = it->second;
  const std::vector<int32_t>& stored = cached_[b]->token_ids;
  if (stored.size() != token_ids.size() ||
      !std::equal(stored.begin(), stored.end(), token_ids.begin())) {
    return std::nullopt;
  }
  if (ref_[b]++ == 0) Unlink(b);
  return b;
}

void BlockPool::Register(int32_t block, BlockHash hash, std::span<const int32_t> token_ids) {
  if (cached_[block] || hash_to_block_.contains(hash)) return;
  cached_[block] = Cached{hash, std::vector<int32_t>(token_ids.begin(), token_ids.end())};
  hash_to_block_.emplace(hash, block);
}

std::vector<int32_t> BlockPool::FreeListForTest() const {
  std::vector<int32_t> order;
  for (int32_t b = head_; b != kNone; b = next_[b]) order.push_back(b);
  return order;
}

}  // namespace sluice
