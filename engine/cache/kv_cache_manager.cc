#include "engine/cache/kv_cache_manager.h"

#include <algorithm>

namespace sluice {

KvCacheManager::KvCacheManager(int num_blocks, int block_size, bool enable_prefix_caching)
    : pool_(num_blocks, block_size), enable_prefix_caching_(enable_prefix_caching) {}

int KvCacheManager::AcquireCachedPrefix(std::span<const int32_t> tokens,
                                        std::string_view cache_salt, SeqBlocks& seq) {
  counters_.queried_tokens += static_cast<int64_t>(tokens.size());
  if (!enable_prefix_caching_ || tokens.empty()) return 0;
  const int bs = block_size();
  const int max_blocks = (static_cast<int>(tokens.size()) - 1) / bs;
  const std::span<const char> salt(cache_salt.data(), cache_salt.size());
  BlockHash parent = 0;
  for (int i = 0; i < max_blocks; ++i) {
    const auto block_tokens = tokens.subspan(static_cast<size_t>(i) * bs, bs);
    const BlockHash h = HashBlock(parent, block_tokens, salt);
    const std::optional<int32_t> b = pool_.TakeCached(h, block_tokens);
    if (!b) break;
    seq.blocks.push_back(*b);
    seq.hashes.push_back(h);
    parent = h;
  }
  const int hit = static_cast<int>(seq.blocks.size()) * bs;
  counters_.hit_tokens += hit;
  return hit;
}

bool KvCacheManager::Reserve(SeqBlocks& seq, int num_tokens) {
  const int need = BlocksFor(num_tokens) - static_cast<int>(seq.blocks.size());
  if (need <= 0) return true;
  std::optional<std::vector<int32_t>> fresh = pool_.Allocate(need);
  if (!fresh) return false;
  seq.blocks.insert(seq.blocks.end(), fresh->begin(), fresh->end());
  return true;
}

void KvCacheManager::CacheFullBlocks(SeqBlocks& seq, std::span<const int32_t> tokens,
                                     int num_computed, std::string_view cache_salt) {
  if (!enable_prefix_caching_) return;
  const int bs = block_size();
  const int full = std::min(num_computed / bs, static_cast<int>(seq.blocks.size()));
  const std::span<const char> salt(cache_salt.data(), cache_salt.size());
  for (int i = static_cast<int>(seq.hashes.size()); i < full; ++i) {
    const BlockHash parent = i == 0 ? BlockHash{0} : seq.hashes[i - 1];
    const auto block_tokens = tokens.subspan(static_cast<size_t>(i) * bs, bs);
    const BlockHash h = HashBlock(parent, block_tokens, salt);
    pool_.Register(seq.blocks[i], h, block_tokens);
    seq.hashes.push_back(h);
  }
}

void KvCacheManager::Release(SeqBlocks& seq) {
  std::vector<int32_t> reversed(seq.blocks.rbegin(), seq.blocks.rend());
  pool_.Free(reversed);
  seq.blocks.clear();
  seq.hashes.clear();
}

}  // namespace sluice
