// Paged attention on the GPU (bf16 storage, fp32 accumulation). Same semantics as
// cpu::PagedAttention (see ../attention.h): bottom-right causal, so decode, prefill,
// chunked prefill and prefill over prefix-cached blocks are one call, and a batch may
// mix them.
//
// Work is planned on the host, once per batch and shared by every layer:
//   PagedAttentionPlan plan;
//   PlanPagedAttention(params, seq_lens_host, cu_seqlens_q_host, &plan);
//   UploadPagedAttentionPlan(plan, workspace, plan.workspace_bytes, stream);
//   for each layer: PagedAttention(plan, params, out, q, k_cache, v_cache, workspace, stream);
//
// The plan tiles each (sequence, KV head) pair's query rows (query token × the query
// heads of that KV head's group, so each K/V tile is read once for the whole group),
// splits the KV range of those tiles when there are too few to fill the GPU, and
// assigns them to a persistent grid no larger than occupancy × multiprocessors.
// Split tiles write fp32 partial outputs and log-sum-exps to the workspace; the last
// CTA to finish a tile's pieces (counted with an atomic per tile) merges them. (Decode
// variant 4 instead runs a tile's pieces as one thread-block cluster that merges in
// distributed shared memory.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "sluice/kernels/attention.h"
#include "sluice/kernels/dtype.h"
#include "sluice/kernels/status.h"
#include "sluice/kernels/stream.h"

namespace sluice::kernels::cuda {

// One unit of work: rows [row_begin, row_begin + tile rows) of a (seq, kv_head) pair
// against cache positions [kv_begin, kv_end). partial >= 0 names the workspace slot its
// fp32 result goes to and merge the AttentionMergeItem it belongs to; partial -1 writes
// the bf16 output directly.
struct AttentionWorkItem {
  int32_t seq;
  int32_t kv_head;
  int32_t row_begin;
  int32_t kv_begin;
  int32_t kv_end;
  int32_t partial;
  int32_t merge;
};

// Rows of one split tile, merged from partial slots [first_partial, + num_partials).
struct AttentionMergeItem {
  int32_t seq;
  int32_t kv_head;
  int32_t row_begin;
  int32_t num_rows;
  int32_t first_partial;
  int32_t num_partials;
};

inline constexpr int kNumPrefillVariants = 10;
inline constexpr int kNumDecodeVariants = 8;

// Tuning knobs; the defaults are what bench/kernels measured best. The alternatives
// exist so that the benchmark can compare them: sluice_kernels_cuda compiles only the
// defaults (decode 7; prefill 0 at head_dim 64, 2 and, with sm_90a, 5 at head_dim 128),
// the others exist where a binary compiles in kernels/cuda/paged_attention_bench_variants.cu
// (kernel_bench does), and elsewhere PlanPagedAttention reports them as unsupported.
struct PagedAttentionOptions {
  // Prefill kernel configuration for head_dim 128 (0..9; 3..9 use Hopper wgmma and need
  // sm_90a); -1 takes the default.
  int prefill_variant = -1;
  // Decode kernel configuration (0..7; 4 uses thread-block clusters and needs sm_90; 5 and 6
  // pass up to 128 work items in the kernel parameters); -1 takes the default.
  int decode_variant = -1;
  // Fewest cache positions per split piece of a decode tile (at least 128); 0 takes the
  // default (256).
  int decode_min_chunk = 0;
  // Order of the work items over the persistent grid: 0 longest first, round robin;
  // 1 longest first in serpentine rounds; -1 takes the defaults (serpentine for prefill
  // items, round robin for decode items).
  int schedule = -1;
};

struct PagedAttentionPlan {
  // Tiles of single-query (decode) sequences and of the rest (prefill chunks); each
  // list goes to its own kernel configuration.
  std::vector<AttentionWorkItem> decode_items;
  std::vector<AttentionWorkItem> prefill_items;
  std::vector<AttentionMergeItem> merge_items;
  int decode_grid = 0;     // CTAs of the persistent decode launch
  int decode_cluster = 1;  // > 1: decode CTAs run in clusters of this many (variant 4)
  int prefill_grid = 0;    // CTAs of the persistent prefill launch
  int num_partials = 0;
  int head_dim = 0;
  int prefill_variant = 0;
  int decode_variant = 0;
  int decode_schedule = 0;     // order of decode_items (PagedAttentionOptions::schedule)
  int prefill_schedule = 0;    // order of prefill_items
  size_t workspace_bytes = 0;  // what UploadPagedAttentionPlan and PagedAttention need
};

// Plans a batch. seq_lens_host [num_seqs] and cu_seqlens_q_host [num_seqs + 1] (nullptr:
// decode) are host copies of the device arrays in p. Reads the current device's
// multiprocessor count and the kernels' occupancy.
// REQUIRES: head_dim is 64 or 128; q_len(s) <= seq_lens[s].
Status PlanPagedAttention(const PagedAttentionParams& p, const int32_t* seq_lens_host,
                          const int32_t* cu_seqlens_q_host, PagedAttentionPlan* plan,
                          const PagedAttentionOptions& options = {});

// Copies the plan's work lists into the workspace (asynchronously, from the plan's host
// memory: keep the plan alive until the copy completes).
Status UploadPagedAttentionPlan(const PagedAttentionPlan& plan, void* workspace,
                                size_t workspace_bytes, cudaStream_t stream);

// Runs the planned attention. REQUIRES: p has the shapes the plan was made for and the
// workspace holds the uploaded plan.
Status PagedAttention(const PagedAttentionPlan& plan, const PagedAttentionParams& p,
                      bf16* out,            // [num_q_tokens, num_q_heads, head_dim]
                      const bf16* q,        // [num_q_tokens, num_q_heads, head_dim]
                      const bf16* k_cache,  // [num_blocks, block_size, num_kv_heads, head_dim]
                      const bf16* v_cache,  // [num_blocks, block_size, num_kv_heads, head_dim]
                      void* workspace,      // [plan.workspace_bytes]
                      cudaStream_t stream);

}  // namespace sluice::kernels::cuda
