// Paged attention over the KV cache (see kv_cache.h for its layout).
//
// A batch holds num_seqs sequences. Sequence s has seq_lens[s] tokens of context in
// the cache (its new tokens already written there) and q_len(s) new query tokens,
// the last q_len(s) of its context. Query token i of s (0-based among its new tokens)
// sits at position seq_lens[s] - q_len(s) + i and attends to cache positions
// [0, that position] (bottom-right causal mask), so decode (q_len 1), prefill, chunked
// prefill and prefill over prefix-cached blocks are one case. With a sliding window W,
// only the last W of those (the position itself included). With sinks, head h's softmax
// has one more logit, sinks[h], in its denominator only (gpt-oss).
#pragma once

#include <cstdint>

#include "sluice/kernels/status.h"
#include "sluice/kernels/thread_pool.h"

namespace sluice::kernels {

struct PagedAttentionParams {
  int num_seqs = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;  // num_q_heads % num_kv_heads == 0 (grouped-query attention)
  int head_dim = 0;
  int block_size = 16;
  int max_blocks_per_seq = 0;             // row stride of block_tables
  float scale = 1.0f;                     // usually 1 / sqrt(head_dim)
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  const int32_t* seq_lens = nullptr;      // [num_seqs]
  // [num_seqs + 1] offsets of each sequence's query tokens in q; nullptr means one
  // query token per sequence (decode).
  const int32_t* cu_seqlens_q = nullptr;
  int sliding_window = 0;        // 0: attend to the whole context
  const float* sinks = nullptr;  // [num_q_heads], or nullptr
};

// Checks shapes and head ratios; pointers are not dereferenced.
Status ValidatePagedAttention(const PagedAttentionParams& p);

// Sequence s's query tokens [q_begin, q_begin + q_len) and its context length.
struct SequenceQueries {
  int q_begin = 0, q_len = 0, seq_len = 0;
};
// Those of sequence s, or the error when they do not fit its block-table row.
Status GetSequenceQueries(const PagedAttentionParams& p, int s, SequenceQueries* out);

namespace cpu {

// fp32 reference. REQUIRES: q_len(s) <= seq_lens[s] and every block a sequence
// touches is listed in its block-table row.
Status PagedAttention(const PagedAttentionParams& p,
                      float* out,             // [num_q_tokens, num_q_heads, head_dim]
                      const float* q,         // [num_q_tokens, num_q_heads, head_dim]
                      const float* k_cache,   // [num_blocks, block_size, kv_heads, head_dim]
                      const float* v_cache);  // [num_blocks, block_size, kv_heads, head_dim]

// Vector instructions for the CPU kernels: the best the CPU has, or one named (tests).
enum class CpuIsa { kBest, kPortable, kAvx2, kAvx512 };
// Whether `isa` runs here for heads of `head_dim` (AVX-512: multiples of 16; AVX2: 8).
bool HasCpuIsa(CpuIsa isa, int head_dim);

// What the CPU backend serves with: PagedAttention's math, tiled by (sequence, KV head,
// run of up to 16 query tokens) so that each K and V row is read once for the group's
// query heads, vectorized, and spread over `pool` (nullptr: the calling thread). Sums
// run in another order than the reference's; results agree to float32 rounding, and do
// not depend on the pool's size.
Status PagedAttentionFast(const PagedAttentionParams& p, float* out, const float* q,
                          const float* k_cache, const float* v_cache, ThreadPool* pool = nullptr,
                          CpuIsa isa = CpuIsa::kBest);

}  // namespace cpu
}  // namespace sluice::kernels
