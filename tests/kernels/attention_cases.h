// Paged-attention shape tables shared by the GPU tests and bench/kernels, and the
// builder of a batch's host-side metadata (random block tables over a larger pool).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "sluice/kernels/attention.h"

namespace sluice::kernels::testing {

struct AttentionCase {
  std::string name;
  std::vector<int> seq_lens;  // context per sequence, new tokens included
  std::vector<int> q_lens;    // new tokens per sequence; empty: decode (no cu_seqlens_q)
  int num_q_heads = 32;
  int num_kv_heads = 8;
  int head_dim = 128;
  int block_size = 16;
  int window = 0;      // sliding window (0: none)
  bool sinks = false;  // a random sink logit per query head
};

inline std::vector<int> Repeat(int n, int v) { return std::vector<int>(n, v); }

// Correctness table: ragged lengths, GQA 1/4/8, head_dim 64/128, decode, prefill over a
// cached prefix, and mixed batches. quick: shapes small enough for compute-sanitizer.
inline std::vector<AttentionCase> AttentionTestCases(bool quick) {
  std::vector<AttentionCase> c;
  c.push_back({"decode_b1_len1", {1}, {}, 32, 8, 128});
  c.push_back({"decode_ragged_gqa4", {1, 17, 511, 4097, 100}, {}, 32, 8, 128});
  c.push_back({"decode_mha_d64", {17, 511, 2000}, {}, 8, 8, 64});
  c.push_back({"decode_gqa8_d64", {33, 1, 4097, 250}, {}, 32, 4, 64});
  c.push_back({"decode_block8", {17, 300}, {}, 16, 4, 128, 8});
  c.push_back({"prefill_fresh_gqa4", {17, 300}, {17, 300}, 32, 8, 128});
  c.push_back({"prefill_prefix_gqa8_d64", {4097, 511}, {100, 33}, 32, 4, 64});
  c.push_back({"prefill_mha", {129}, {129}, 4, 4, 128});
  c.push_back({"mixed_batch", {1, 40, 50, 700, 9}, {1, 1, 50, 200, 1}, 32, 8, 128});
  // gpt-oss's attention: 64 q / 8 kv heads of 64, sinks, 128-position windows on half of
  // the layers; and windows that are not a multiple of the block or the K/V tile.
  c.push_back({"decode_window_sinks", {1, 100, 129, 4097, 700}, {}, 64, 8, 64, 16, 128, true});
  c.push_back({"decode_sinks_only", {1, 511, 4097}, {}, 64, 8, 64, 16, 0, true});
  c.push_back({"decode_window_d128", {3000, 17, 300}, {}, 32, 8, 128, 16, 77, false});
  c.push_back({"prefill_window_sinks", {300, 700}, {300, 200}, 64, 8, 64, 16, 128, true});
  c.push_back({"prefill_window_d128", {600}, {450}, 32, 8, 128, 16, 45, true});
  c.push_back({"mixed_window_sinks", {1, 40, 500, 9}, {1, 1, 200, 1}, 64, 8, 64, 16, 16, true});
  if (!quick) {
    std::vector<int> lens(64);
    std::mt19937 rng(7);
    for (int& l : lens) l = 1 + static_cast<int>(rng() % 600);
    c.push_back({"decode_b64_ragged", lens, {}, 32, 8, 128});
    c.push_back({"prefill_many_tiles", {1024, 1024}, {1024, 1024}, 16, 4, 128});
    c.push_back({"prefill_chunk_d64", {4097}, {511}, 8, 8, 64});
  }
  return c;
}

// Benchmark table (bench/kernels): the targets, and one short decode whose time
// is the fixed cost of a launch (no split, one 256-position piece per KV head).
inline std::vector<AttentionCase> AttentionBenchCases() {
  return {
      {"decode_b64_l4096", Repeat(64, 4096), {}, 32, 8, 128},
      {"decode_b1_l4096", {4096}, {}, 32, 8, 128},
      {"decode_b1_l256", {256}, {}, 32, 8, 128},
      {"prefill_b4_l4096_gqa", Repeat(4, 4096), Repeat(4, 4096), 32, 8, 128},
      {"prefill_b4_l4096_mha", Repeat(4, 4096), Repeat(4, 4096), 32, 32, 128},
  };
}

// Host-side metadata of one batch; params point into this struct's vectors.
struct AttentionBatch {
  PagedAttentionParams params;
  std::vector<int32_t> block_tables;  // [num_seqs, max_blocks_per_seq]
  std::vector<int32_t> seq_lens;      // [num_seqs]
  std::vector<int32_t> cu_seqlens_q;  // [num_seqs + 1], empty for decode
  int num_blocks = 0;                 // pool size
  int num_q_tokens = 0;
};

// Gives every sequence distinct blocks drawn at random from a pool of
// pool_factor × the blocks needed (plus a few), so that wrong indexing reads wrong data.
inline AttentionBatch BuildAttentionBatch(const AttentionCase& c, int pool_factor,
                                          std::mt19937_64& rng) {
  AttentionBatch b;
  const int n = static_cast<int>(c.seq_lens.size());
  int needed = 0, max_blocks = 1;
  for (int len : c.seq_lens) {
    const int nb = (len + c.block_size - 1) / c.block_size;
    needed += nb;
    max_blocks = std::max(max_blocks, nb);
  }
  b.num_blocks = needed * pool_factor + 7;
  std::vector<int32_t> pool(b.num_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  b.block_tables.assign(static_cast<size_t>(n) * max_blocks, 0);
  int next = 0;
  for (int s = 0; s < n; ++s) {
    const int nb = (c.seq_lens[s] + c.block_size - 1) / c.block_size;
    for (int i = 0; i < nb; ++i)
      b.block_tables[static_cast<size_t>(s) * max_blocks + i] = pool[next++];
  }
  b.seq_lens.assign(c.seq_lens.begin(), c.seq_lens.end());
  if (c.q_lens.empty()) {
    b.num_q_tokens = n;
  } else {
    b.cu_seqlens_q.assign(1, 0);
    for (int q : c.q_lens) b.cu_seqlens_q.push_back(b.cu_seqlens_q.back() + q);
    b.num_q_tokens = b.cu_seqlens_q.back();
  }
  PagedAttentionParams& p = b.params;
  p.num_seqs = n;
  p.num_q_heads = c.num_q_heads;
  p.num_kv_heads = c.num_kv_heads;
  p.head_dim = c.head_dim;
  p.block_size = c.block_size;
  p.max_blocks_per_seq = max_blocks;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  p.block_tables = b.block_tables.data();
  p.seq_lens = b.seq_lens.data();
  p.cu_seqlens_q = b.cu_seqlens_q.empty() ? nullptr : b.cu_seqlens_q.data();
  p.sliding_window = c.window;
  return b;
}

}  // namespace sluice::kernels::testing
