// Configurations of the paged attention kernel: an AttentionTuning names the choices one
// kernel is compiled with, AttentionConfig derives its tile shapes and shared-memory
// footprint, and the two tables below give every decode and prefill variant that
// PagedAttentionOptions can select (kernels/cuda/NOTES.md has what each one measured).
// Naming a configuration here compiles nothing: paged_attention.cu instantiates the
// variants serving plans with, paged_attention_bench_variants.cu the others.
#pragma once

#include <cstddef>

#include "paged_attention_merge.cuh"
#include "sluice/kernels/cuda/attention.h"

namespace sluice::kernels::cuda {

// The choices one kernel is compiled with; a structural type, so that a value of it is
// the kernel's template argument (and its name in a profiler).
struct AttentionTuning {
  int head_dim = 0;  // the tables below leave it to DecodeConfig and PrefillConfig
  // Warps form a warps_m × warps_n grid: each warp owns 16 query rows and block_n /
  // warps_n positions of every K/V tile of block_n positions.
  int warps_m = 0;
  int warps_n = 0;
  int block_n = 0;
  int stages = 0;      // depth of the cp.async K/V pipeline
  int min_blocks = 0;  // CTAs per multiprocessor the register allocation must allow
  // S and PV run as warpgroup MMAs reading K/V from 128-byte-swizzled tiles (sm_90a;
  // warpgroups of 64 rows each, 64-position tiles, head_dim 128).
  bool wgmma = false;
  // (wgmma only, 3+ stages) the next tile's scores overlap this tile's softmax.
  bool pipelined = false;
  // Shorter dependent-load chains at both ends of an item: block ids are fetched against
  // the planned kv_end (not after the seq_lens load), the merge item is read at the
  // start, and the last piece merges in one pass over the partials (no separate
  // log-sum-exp pass), with one fence by one thread.
  bool fast_tail = false;
  // (decode, sm_90) the pieces of a split tile are one thread-block cluster and merge
  // through distributed shared memory (no partials in the workspace, no counter).
  bool cluster_merge = false;
  // (with fast_tail) the piece's arrival is one acquire-release atomic by one thread (no
  // sequentially consistent fences).
  bool lean_tail = false;
  // (prefill) a warp rescales its O accumulators and running sums only when some row's
  // maximum grew by more than kRescaleSlack (log2 units) since the last rescale;
  // otherwise the stale maximum stays the exponent base (probabilities up to 2^slack).
  bool lazy_rescale = false;
  // The launch passes up to kMaxInlineItems work items in the kernel parameters, so that
  // a CTA's first load is the block table rather than its work item.
  bool inline_items = false;

  constexpr AttentionTuning WithHeadDim(int d) const {
    AttentionTuning t = *this;
    t.head_dim = d;
    return t;
  }
};

template <AttentionTuning kTuning>
struct AttentionConfig {
  static constexpr int kHeadDim = kTuning.head_dim;
  static constexpr int kWarpsM = kTuning.warps_m;
  static constexpr int kWarpsN = kTuning.warps_n;
  static constexpr int kBlockN = kTuning.block_n;
  static constexpr int kStages = kTuning.stages;
  static constexpr int kMinBlocks = kTuning.min_blocks;
  static constexpr bool kWgmma = kTuning.wgmma;
  static constexpr bool kPipelined = kTuning.pipelined;
  static constexpr bool kFastTail = kTuning.fast_tail;
  static constexpr bool kClusterMerge = kTuning.cluster_merge;
  static constexpr bool kLeanTail = kTuning.lean_tail;
  static constexpr bool kLazyRescale = kTuning.lazy_rescale;
  static constexpr bool kInlineItems = kTuning.inline_items;
  static constexpr int kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kBlockM = 16 * kWarpsM;
  static constexpr int kWarpKeys = kBlockN / kWarpsN;
  static constexpr int kChunks = kHeadDim / 8;  // 16-byte chunks per row
  static constexpr int kQElems = kBlockM * kHeadDim;
  static constexpr int kTileElems = kBlockN * kHeadDim;
  static constexpr int kOStride = kHeadDim + 4;  // fp32 epilogue row, padded
  static constexpr size_t kPipeBytes = size_t{kStages} * 2 * kTileElems * 2;
  static constexpr size_t kEpilogueBytes = size_t{kWarpsN} * kBlockM * (kOStride + 2) * 4;
  // The query tile lives in the last pipeline stage until the first K/V tile is used.
  // (+1 KiB to align the tiles to the 1024-byte swizzle atoms.)
  static constexpr size_t kSmemBytes =
      (kPipeBytes > kEpilogueBytes ? kPipeBytes : kEpilogueBytes) + 1024;
  static_assert(kWarpKeys % 16 == 0, "each warp needs whole k16 steps of positions");
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head_dim 64 or 128");
  static_assert(kBlockM <= kPartialRows, "tile taller than a partial slot");
  static_assert(kQElems <= 2 * kTileElems, "the query tile must fit in one pipeline stage");
  static_assert(kStages >= 2, "at least double buffering");
  static_assert(!kWgmma || (kWarpsM % 4 == 0 && kWarpsN == 1 && kBlockN == 64 && kHeadDim == 128),
                "the wgmma path is whole warpgroups of 64 rows, 64 positions, head_dim 128");
  static_assert(!kPipelined || (kWgmma && kStages >= 3), "pipelining needs wgmma, 3+ stages");
  static_assert(!kLeanTail || (kFastTail && !kClusterMerge), "the lean tail extends the fast one");
  // A cluster piece's merged rows (fp32 O, then the log-sum-exps) follow the epilogue.
  static constexpr size_t kClusterBytes = size_t{kBlockM} * (kHeadDim + 1) * 4;
  static_assert(!kClusterMerge || kEpilogueBytes + kClusterBytes <= kPipeBytes,
                "the cluster merge area must fit in the pipeline");
};

// Decode configurations by PagedAttentionOptions::decode_variant (any head_dim): one row
// tile of up to 16 rows, the K/V tile split over warps_n warps.
inline constexpr AttentionTuning kDecodeTunings[kNumDecodeVariants] = {
    // d0: 4 warps, 64-position tiles, 3 stages, 2 CTAs per multiprocessor (runs 1-3).
    {.warps_m = 1, .warps_n = 4, .block_n = 64, .stages = 3, .min_blocks = 2},
    // d1: the same with the short-chain head and one-pass merge tail.
    {.warps_m = 1, .warps_n = 4, .block_n = 64, .stages = 3, .min_blocks = 2, .fast_tail = true},
    // d2: 5 stages (a 256-position piece is in flight at once), one CTA per multiprocessor.
    {.warps_m = 1, .warps_n = 4, .block_n = 64, .stages = 5, .min_blocks = 1, .fast_tail = true},
    // d3: 8 warps over 128-position tiles, 3 stages, one CTA per multiprocessor.
    {.warps_m = 1, .warps_n = 8, .block_n = 128, .stages = 3, .min_blocks = 1, .fast_tail = true},
    // d4: d1 with the pieces of a split tile as one cluster merging in distributed shared
    // memory (sm_90).
    {.warps_m = 1,
     .warps_n = 4,
     .block_n = 64,
     .stages = 3,
     .min_blocks = 2,
     .fast_tail = true,
     .cluster_merge = true},
    // d5: d1 with the lean tail (one acquire-release atomic) and the work items in the
    // kernel parameters.
    {.warps_m = 1,
     .warps_n = 4,
     .block_n = 64,
     .stages = 3,
     .min_blocks = 2,
     .fast_tail = true,
     .lean_tail = true,
     .inline_items = true},
    // d6: d3 (8 warps over 128-position tiles, the whole 256-position piece in flight at
    // once) with the lean tail and the work items in the kernel parameters.
    {.warps_m = 1,
     .warps_n = 8,
     .block_n = 128,
     .stages = 3,
     .min_blocks = 1,
     .fast_tail = true,
     .lean_tail = true,
     .inline_items = true},
    // d7: d1 with the lean tail only (items read from the workspace as in d1).
    {.warps_m = 1,
     .warps_n = 4,
     .block_n = 64,
     .stages = 3,
     .min_blocks = 2,
     .fast_tail = true,
     .lean_tail = true},
};
inline constexpr int kClusterDecodeVariant = 4;

// Prefill configurations by PagedAttentionOptions::prefill_variant: rows per CTA, K/V
// tile, stages and CTAs per multiprocessor. Only head_dim 128 offers the alternatives;
// other head dims take v0. v3 and up use Hopper wgmma.
inline constexpr AttentionTuning kPrefillTunings[kNumPrefillVariants] = {
    {.warps_m = 4, .warps_n = 1, .block_n = 64, .stages = 2, .min_blocks = 2},  // v0
    {.warps_m = 4, .warps_n = 1, .block_n = 32, .stages = 3, .min_blocks = 3},  // v1
    {.warps_m = 8, .warps_n = 1, .block_n = 64, .stages = 2, .min_blocks = 1},  // v2
    // v3
    {.warps_m = 4, .warps_n = 1, .block_n = 64, .stages = 2, .min_blocks = 2, .wgmma = true},
    // v4
    {.warps_m = 8, .warps_n = 1, .block_n = 64, .stages = 2, .min_blocks = 1, .wgmma = true},
    // v5
    {.warps_m = 8,
     .warps_n = 1,
     .block_n = 64,
     .stages = 4,
     .min_blocks = 1,
     .wgmma = true,
     .pipelined = true},
    // v6
    {.warps_m = 4, .warps_n = 1, .block_n = 64, .stages = 2, .min_blocks = 3, .wgmma = true},
    // v7
    {.warps_m = 4,
     .warps_n = 1,
     .block_n = 64,
     .stages = 3,
     .min_blocks = 2,
     .wgmma = true,
     .pipelined = true},
    // v8
    {.warps_m = 8,
     .warps_n = 1,
     .block_n = 64,
     .stages = 6,
     .min_blocks = 1,
     .wgmma = true,
     .pipelined = true},
    // v9: v5 with the lazy rescale: most tiles skip the 64 multiplies of O and the running
    // sums' rescale.
    {.warps_m = 8,
     .warps_n = 1,
     .block_n = 64,
     .stages = 4,
     .min_blocks = 1,
     .wgmma = true,
     .pipelined = true,
     .lazy_rescale = true},
};
inline constexpr int kFirstWgmmaVariant = 3;

// The configurations of decode and prefill variant kVariant at kHeadDim.
template <int kHeadDim, int kVariant>
using DecodeConfig = AttentionConfig<kDecodeTunings[kVariant].WithHeadDim(kHeadDim)>;

template <int kHeadDim, int kVariant>
using PrefillConfig = AttentionConfig<kPrefillTunings[kVariant].WithHeadDim(kHeadDim)>;

}  // namespace sluice::kernels::cuda
