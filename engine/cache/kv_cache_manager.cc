#include "engine/cache/kv_cache_manager.h"

#include <algorithm>

namespace sluice {

KvCacheManager::KvCacheManager(int num_blocks, int block_size, bool enable_prefix_caching)
    : pool_(num_blocks, block_size), enable_prefix_caching_(enable_prefix_caching) {}

void KvCacheManager::HashBlocks(SeqBlocks& seq, std::span<const int32_t> tokens, int num_blocks,
                                std::span<const char> salt) const {
  const int bs = block_size();
  for (int i = static_cast<int>(seq.hashes.size()); i < num_blocks; ++i) {
    const BlockHash parent = i == 0 ? BlockHash{0} : seq.hashes[i - 1];
    seq.hashes.push_back(HashBlock(parent, tokens.subspan(static_cast<size_t>(i) * bs, bs), salt));
  }
}

int KvCacheManager::AcquireCachedPrefix(std::span<const int32_t> tokens,
                                        std::string_view cache_salt, SeqBlocks& seq) {
  if (!enable_prefix_caching_ || tokens.empty()) return 0;
  const int bs = block_size();
  const int max_blocks = (static_cast<int>(tokens.size()) - 1) / bs;
  const std::span<const char> salt(cache_salt.data(), cache_salt.size());
  HashBlocks(seq, tokens, max_blocks, salt);
  for (int i = 0; i < max_blocks; ++i) {
    const std::optional<int32_t> b =
        pool_.TakeCached(seq.hashes[i], tokens.subspan(static_cast<size_t>(i) * bs, bs));
    if (!b) break;
    seq.blocks.push_back(*b);
  }
  // The blocks taken from the cache are registered already.
  seq.num_registered = static_cast<int>(seq.blocks.size());
  return static_cast<int>(seq.blocks.size()) * bs;
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
  if (seq.num_registered >= full) return;
  HashBlocks(seq, tokens, full, std::span<const char>(cache_salt.data(), cache_salt.size()));
  for (int i = seq.num_registered; i < full; ++i) {
    pool_.Register(seq.blocks[i], seq.hashes[i], tokens.subspan(static_cast<size_t>(i) * bs, bs));
  }
  seq.num_registered = full;
}

void KvCacheManager::Release(SeqBlocks& seq) {
  std::vector<int32_t> reversed(seq.blocks.rbegin(), seq.blocks.rend());
  pool_.Free(reversed);
  seq.blocks.clear();
  seq.num_registered = 0;
}

}  // namespace sluice
