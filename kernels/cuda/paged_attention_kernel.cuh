// The paged attention kernel: a persistent CTA loops over planned work items; each item
// is one tile of query rows of a (sequence, KV head) pair, where a row is (query token,
// query head of the group), against a range of cache positions. K/V tiles of kBlockN
// positions stream through a kStages-deep cp.async pipeline (block ids fetched a tile
// ahead); S = QKᵀ and O += PV run on tensor cores (m16n8k16 mma.sync, or Hopper wgmma)
// with an online softmax in fp32 (log2 domain).
//
// Warps form a kWarpsM × kWarpsN grid: each warp owns 16 query rows and kBlockN /
// kWarpsN positions of every K/V tile. Prefill uses kWarpsN = 1 (64 or 128 rows, whole
// tiles); decode uses 1 × 4 or 1 × 8 (a group of up to 16 rows, the tile split four or
// eight ways), and the warps' partial softmax states are merged in shared memory at the
// end. Split items write fp32 partials; the last piece of a tile to finish merges them
// (MergeTile, or MergeTileOnePass), or the pieces of a cluster merge them from each
// other's shared memory (ClusterMergeTile); see paged_attention_merge.cuh.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "common.cuh"
#include "mma.cuh"
#include "paged_attention_merge.cuh"
#include "sluice/kernels/cuda/attention.h"
#include "wgmma.cuh"

namespace sluice::kernels::cuda {

// kMinBlocks_ is the CTAs per multiprocessor the register allocation must allow.
// kWgmma_: S and PV run as warpgroup MMAs reading K/V from 128-byte-swizzled tiles
// (sm_90a; warpgroups of 64 rows each, 64-position tiles, head_dim 128).
// kPipelined_ (wgmma only, 3+ stages): the next tile's scores overlap this tile's softmax.
// kFastTail_: shorter dependent-load chains at both ends of an item: block ids are fetched
// against the planned kv_end (not after the seq_lens load), the merge item is read at
// the start, and the last piece merges in one pass over the partials (no separate
// log-sum-exp pass), with one fence by one thread.
// kClusterMerge_ (decode, sm_90): the pieces of a split tile are one thread-block cluster
// and merge through distributed shared memory (no partials in the workspace, no counter).
// kLeanTail_ (with kFastTail_): the piece's arrival is one acquire-release atomic by one
// thread (no sequentially consistent fences).
// kInlineItems_: the launch passes up to kMaxInlineItems work items in the kernel
// parameters, so that a CTA's first load is the block table rather than its work item.
// kLazyRescale_ (prefill): a warp rescales its O accumulators and running sums only when
// some row's maximum grew by more than kRescaleSlack (log2 units) since the last rescale;
// otherwise the stale maximum stays the exponent base (probabilities up to 2^slack).
template <int kHeadDim_, int kWarpsM_, int kWarpsN_, int kBlockN_, int kStages_, int kMinBlocks_,
          bool kWgmma_ = false, bool kPipelined_ = false, bool kFastTail_ = false,
          bool kClusterMerge_ = false, bool kLeanTail_ = false, bool kLazyRescale_ = false,
          bool kInlineItems_ = false>
struct AttentionConfig {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kWarpsM = kWarpsM_;
  static constexpr int kWarpsN = kWarpsN_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kStages = kStages_;
  static constexpr int kMinBlocks = kMinBlocks_;
  static constexpr bool kWgmma = kWgmma_;
  static constexpr bool kPipelined = kPipelined_;
  static constexpr bool kFastTail = kFastTail_;
  static constexpr bool kClusterMerge = kClusterMerge_;
  static constexpr bool kLeanTail = kLeanTail_;
  static constexpr bool kLazyRescale = kLazyRescale_;
  static constexpr bool kInlineItems = kInlineItems_;
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

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows, kHeadDim] bf16 tile,
// XOR-swizzled so that ldmatrix over 8 rows of one chunk column hits distinct banks.
template <int kHeadDim>
__device__ __forceinline__ int Swizzle(int row, int chunk) {
  return row * kHeadDim + ((chunk ^ (row & 7)) << 3);
}

// Element offset of a K/V tile chunk: Swizzle, or for wgmma the 128-byte-swizzle layout
// of column blocks of 64 elements, each [kBlockN rows][64].
template <class C>
__device__ __forceinline__ int KvOffset(int row, int chunk) {
  if constexpr (C::kWgmma) {
    return (chunk >> 3) * (C::kBlockN * 64) + row * 64 + (((chunk & 7) ^ (row & 7)) << 3);
  } else {
    return Swizzle<C::kHeadDim>(row, chunk);
  }
}

// How far (log2 units) a row's maximum may grow before kLazyRescale rescales: the
// probabilities stay below 2^8, well inside bf16 and the fp32 sums.
inline constexpr float kRescaleSlack = 8.0f;

// Rows of a K/V tile that one thread loads (one 16-byte chunk column each).
template <class C>
inline constexpr int kRowsPerThread = C::kBlockN* C::kChunks / C::kThreads;

// Cache block ids of this thread's rows of the tile at k0 (0 past kv_end). Fetched one
// tile ahead of LoadKvTile so that the copies never wait on the block table.
template <class C>
__device__ __forceinline__ void FetchBlockIds(const AttentionKernelArgs& a, const int32_t* table,
                                              int k0, int kv_end,
                                              int32_t (&ids)[kRowsPerThread<C>]) {
#pragma unroll
  for (int it = 0; it < kRowsPerThread<C>; ++it) {
    const int pos = k0 + (threadIdx.x + it * C::kThreads) / C::kChunks;
    const int blk = a.block_shift >= 0 ? pos >> a.block_shift : pos / a.block_size;
    ids[it] = pos < kv_end ? table[blk] : 0;
  }
}

// Loads K and V for positions [k0, k0 + kBlockN) (zeros past kv_end) into one stage.
template <class C>
__device__ __forceinline__ void LoadKvTile(const AttentionKernelArgs& a,
                                           const int32_t (&ids)[kRowsPerThread<C>], int kv_head,
                                           int k0, int kv_end, __nv_bfloat16* ks,
                                           __nv_bfloat16* vs) {
  const int64_t token_stride = int64_t{a.num_kv_heads} * C::kHeadDim;
  const int64_t head_off = int64_t{kv_head} * C::kHeadDim;
  static_assert(C::kBlockN * C::kChunks % C::kThreads == 0);
#pragma unroll
  for (int it = 0; it < kRowsPerThread<C>; ++it) {
    const int i = threadIdx.x + it * C::kThreads;
    const int row = i / C::kChunks, chunk = i % C::kChunks;
    const int pos = k0 + row;
    const bool valid = pos < kv_end;
    const int in_block = a.block_shift >= 0 ? pos & (a.block_size - 1) : pos % a.block_size;
    const int64_t slot = int64_t{ids[it]} * a.block_size + in_block;
    const int64_t off = valid ? slot * token_stride + head_off + chunk * 8 : 0;
    const int s = KvOffset<C>(row, chunk);
    CpAsync16(ks + s, a.k_cache + off, valid);
    CpAsync16(vs + s, a.v_cache + off, valid);
  }
}

template <class C>
__device__ void AttendItem(const AttentionKernelArgs& a, const AttentionWorkItem& item,
                           __nv_bfloat16* smem) {
  constexpr int D = C::kHeadDim;
  __nv_bfloat16* pipe = smem;
  __nv_bfloat16* q_s = pipe + (C::kStages - 1) * 2 * C::kTileElems;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warp_m = warp / C::kWarpsN, warp_n = warp % C::kWarpsN;

  const int seq = item.seq, kv_head = item.kv_head, row0 = item.row_begin;
  const int q_begin = a.cu_seqlens_q ? a.cu_seqlens_q[seq] : seq;
  const int q_len = a.cu_seqlens_q ? a.cu_seqlens_q[seq + 1] - q_begin : 1;
  const int seq_len = a.seq_lens[seq];
  const int num_rows = q_len * a.group;
  const int last_row = min(row0 + C::kBlockM, num_rows) - 1;
  const int first_pos = seq_len - q_len;  // position of query token 0
  const int kv_end = min(item.kv_end, first_pos + last_row / a.group + 1);
  const int kv_begin = item.kv_begin;
  const int num_tiles = kv_end > kv_begin ? (kv_end - kv_begin + C::kBlockN - 1) / C::kBlockN : 0;
  // Block ids are fetched up to fetch_end; with kFastTail that is the planned end, known
  // before seq_lens arrives (the copies themselves still stop at kv_end).
  const int fetch_end = C::kFastTail ? item.kv_end : kv_end;
  const int32_t* table = a.block_tables + int64_t{seq} * a.max_blocks_per_seq;
  AttentionMergeItem merge_item{};
  if (C::kFastTail && !C::kClusterMerge && item.partial >= 0) {
    merge_item = a.merges[item.merge];
  }
  const int64_t q_token_stride = int64_t{a.num_q_heads} * D;
  const int64_t q_head0 = int64_t{q_begin} * q_token_stride + int64_t{kv_head} * a.group * D;

  // Query rows and K/V tile 0 form the first cp.async group.
  constexpr int kQChunks = C::kBlockM * C::kChunks;
  constexpr bool kQExact = kQChunks % C::kThreads == 0;
#pragma unroll
  for (int it = 0; it < (kQChunks + C::kThreads - 1) / C::kThreads; ++it) {
    const int i = threadIdx.x + it * C::kThreads;
    if (!kQExact && i >= kQChunks) break;
    const int r = i / C::kChunks, chunk = i % C::kChunks;
    const int gr = row0 + r;
    const bool valid = gr < num_rows;
    const int64_t off = valid ? q_head0 + int64_t{gr / a.group} * q_token_stride +
                                    int64_t{gr % a.group} * D + chunk * 8
                              : 0;
    CpAsync16(q_s + Swizzle<D>(r, chunk), a.q + off, valid);
  }
  // The first tiles' block ids are all fetched before any copy waits on them.
  int32_t ids[kRowsPerThread<C>];
  int32_t first_ids[C::kStages - 1][kRowsPerThread<C>];
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    FetchBlockIds<C>(a, table, kv_begin + s * C::kBlockN, fetch_end, first_ids[s]);
  }
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < num_tiles) {
      __nv_bfloat16* ks = pipe + s * 2 * C::kTileElems;
      LoadKvTile<C>(a, first_ids[s], kv_head, kv_begin + s * C::kBlockN, kv_end, ks,
                    ks + C::kTileElems);
    }
    CpAsyncCommit();
  }
  if (C::kStages - 1 < num_tiles) {
    FetchBlockIds<C>(a, table, kv_begin + (C::kStages - 1) * C::kBlockN, fetch_end, ids);
  }

  // This lane's two rows (r and r + 8 of the warp's 16) and their causal limits.
  const int ra = warp_m * 16 + (lane >> 2);
  const int pos_a = first_pos + min(row0 + ra, last_row) / a.group;
  const int pos_b = first_pos + min(row0 + ra + 8, last_row) / a.group;
  const int pos_min = first_pos + row0 / a.group;

  uint32_t qf[D / 16][4];
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;
  constexpr int kNT = C::kWarpKeys / 8;  // n8 tiles of positions per warp

  // Probabilities as bf16 A fragments.
  auto pack = [&](const float(&s)[kNT][4], uint32_t(&p)[C::kWarpKeys / 16][4]) {
#pragma unroll
    for (int kk = 0; kk < C::kWarpKeys / 16; ++kk) {
      p[kk][0] = PackBf16(s[2 * kk][0], s[2 * kk][1]);
      p[kk][1] = PackBf16(s[2 * kk][2], s[2 * kk][3]);
      p[kk][2] = PackBf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      p[kk][3] = PackBf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
  };
  // Masks tile t's scores, updates the running max and sum, rescales o, and leaves the
  // probabilities in p (bf16 A fragments).
  auto softmax = [&](float(&s)[kNT][4], int t, uint32_t(&p)[C::kWarpKeys / 16][4]) {
    const int key0 = warp_n * C::kWarpKeys;
    const int tile_k0 = kv_begin + t * C::kBlockN;
    const bool need_mask = tile_k0 + C::kBlockN > kv_end || tile_k0 + C::kBlockN - 1 > pos_min;
    // Raw scores are masked and maxed; the scale folds into the exponent's FFMA.
    float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
    for (int j = 0; j < kNT; ++j) {
      if (need_mask) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = tile_k0 + key0 + j * 8 + (lane & 3) * 2 + (e & 1);
          const int limit = e < 2 ? pos_a : pos_b;
          if (key >= kv_end || key > limit) s[j][e] = -INFINITY;
        }
      }
      mx_a = fmaxf(mx_a, fmaxf(s[j][0], s[j][1]));
      mx_b = fmaxf(mx_b, fmaxf(s[j][2], s[j][3]));
    }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, off));
      mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, off));
    }
    const float sc = a.scale_log2;
    const float new_a = fmaxf(m_a, mx_a * sc), new_b = fmaxf(m_b, mx_b * sc);
    if constexpr (C::kLazyRescale) {
      // -INFINITY + slack stays -INFINITY: a row's first finite score always rescales.
      const bool grew = new_a > m_a + kRescaleSlack || new_b > m_b + kRescaleSlack;
      if (!__any_sync(0xffffffffu, grew)) {
        const float base_a = m_a == -INFINITY ? 0.0f : m_a;
        const float base_b = m_b == -INFINITY ? 0.0f : m_b;
        float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
        for (int j = 0; j < kNT; ++j) {
          s[j][0] = FastExp2(fmaf(s[j][0], sc, -base_a));
          s[j][1] = FastExp2(fmaf(s[j][1], sc, -base_a));
          s[j][2] = FastExp2(fmaf(s[j][2], sc, -base_b));
          s[j][3] = FastExp2(fmaf(s[j][3], sc, -base_b));
          sum_a += s[j][0] + s[j][1];
          sum_b += s[j][2] + s[j][3];
        }
        l_a += sum_a;
        l_b += sum_b;
        pack(s, p);
        return;
      }
    }
    const float base_a = new_a == -INFINITY ? 0.0f : new_a;
    const float base_b = new_b == -INFINITY ? 0.0f : new_b;
    const float alpha_a = FastExp2(m_a - base_a), alpha_b = FastExp2(m_b - base_b);
    m_a = new_a;
    m_b = new_b;
    float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
    for (int j = 0; j < kNT; ++j) {
      s[j][0] = FastExp2(fmaf(s[j][0], sc, -base_a));
      s[j][1] = FastExp2(fmaf(s[j][1], sc, -base_a));
      s[j][2] = FastExp2(fmaf(s[j][2], sc, -base_b));
      s[j][3] = FastExp2(fmaf(s[j][3], sc, -base_b));
      sum_a += s[j][0] + s[j][1];
      sum_b += s[j][2] + s[j][3];
    }
    l_a = l_a * alpha_a + sum_a;
    l_b = l_b * alpha_b + sum_b;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      o[i][0] *= alpha_a;
      o[i][1] *= alpha_a;
      o[i][2] *= alpha_b;
      o[i][3] *= alpha_b;
    }
    pack(s, p);
  };
  // Issues O += P · V for the tile in vs as warpgroup MMAs (completion: WgmmaWaitAll).
  auto issue_pv_wgmma = [&](const __nv_bfloat16* vs, const uint32_t(&p)[C::kWarpKeys / 16][4]) {
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
#pragma unroll
      for (int e = 0; e < 4; ++e) FenceOperand(o[i][e]);
    }
    WgmmaFence();
#pragma unroll
    for (int kk = 0; kk < C::kWarpKeys / 16; ++kk) {
#pragma unroll
      for (int h = 0; h < D / 64; ++h) {
        const uint64_t desc = WgmmaDesc(vs + h * (C::kBlockN * 64) + kk * 16 * 64, 1024, 1024);
        WgmmaM64N64K16<1>(&o[8 * h][0], p[kk], desc, 1);
      }
    }
    WgmmaCommit();
  };
  // Issues S = Q · Kᵀ for the tile in ks as warpgroup MMAs (completion: WgmmaWaitAll).
  auto issue_scores_wgmma = [&](const __nv_bfloat16* ks, float(&s)[kNT][4]) {
#pragma unroll
    for (int j = 0; j < kNT; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) FenceOperand(s[j][e]);
    }
    WgmmaFence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint64_t desc =
          WgmmaDesc(ks + (kk >> 2) * (C::kBlockN * 64) + (kk & 3) * 16, 1024, 1024);
      WgmmaM64N64K16<0>(&s[0][0], qf[kk], desc, kk > 0);
    }
    WgmmaCommit();
  };
  auto fence_all = [&](float(&s)[kNT][4]) {
#pragma unroll
    for (int j = 0; j < kNT; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) FenceOperand(s[j][e]);
    }
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
#pragma unroll
      for (int e = 0; e < 4; ++e) FenceOperand(o[i][e]);
    }
  };
  auto load_query = [&]() {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const int r = warp_m * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
      LdMatrixX4(qf[kk], q_s + Swizzle<D>(r, 2 * kk + (lane >> 4)));
    }
  };
  // Issues the copy of tile nt (if any) and fetches the block ids of the tile after it.
  auto load_ahead = [&](int nt) {
    if (nt < num_tiles) {
      __nv_bfloat16* ks = pipe + (nt % C::kStages) * 2 * C::kTileElems;
      LoadKvTile<C>(a, ids, kv_head, kv_begin + nt * C::kBlockN, kv_end, ks, ks + C::kTileElems);
      if (nt + 1 < num_tiles) {
        FetchBlockIds<C>(a, table, kv_begin + (nt + 1) * C::kBlockN, kv_end, ids);
      }
    }
    CpAsyncCommit();
  };

  if constexpr (C::kPipelined) {
    // Scores of tile t + 1 run on the tensor cores while the softmax of tile t runs on
    // the ALUs. Tile t + 1 must have landed at the top of iteration t.
    float s[kNT][4];
    if (num_tiles > 0) {
      CpAsyncWait<C::kStages - 2>();
      FenceProxyAsync();
      __syncthreads();
      load_query();
      issue_scores_wgmma(pipe, s);
      WgmmaWaitAll();
      fence_all(s);
    }
    for (int t = 0; t < num_tiles; ++t) {
      CpAsyncWait<C::kStages - 3>();
      FenceProxyAsync();
      __syncthreads();  // also: every warp is done with the stage refilled next
      load_ahead(t + C::kStages - 1);
      float s_next[kNT][4];
      if (t + 1 < num_tiles) {
        issue_scores_wgmma(pipe + ((t + 1) % C::kStages) * 2 * C::kTileElems, s_next);
      }
      uint32_t p[C::kWarpKeys / 16][4];
      softmax(s, t, p);
      issue_pv_wgmma(pipe + (t % C::kStages) * 2 * C::kTileElems + C::kTileElems, p);
      WgmmaWaitAll();
      fence_all(s_next);
#pragma unroll
      for (int j = 0; j < kNT; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) s[j][e] = s_next[j][e];
      }
    }
  } else {
    for (int t = 0; t < num_tiles; ++t) {
      CpAsyncWait<C::kStages - 2>();
      if constexpr (C::kWgmma) FenceProxyAsync();
      __syncthreads();
      if (t == 0) {
        load_query();
        __syncthreads();  // the next load overwrites the query tile
      }
      load_ahead(t + C::kStages - 1);
      const __nv_bfloat16* ks = pipe + (t % C::kStages) * 2 * C::kTileElems;
      const __nv_bfloat16* vs = ks + C::kTileElems;
      const int key0 = warp_n * C::kWarpKeys;
      float s[kNT][4];
      uint32_t p[C::kWarpKeys / 16][4];
      if constexpr (C::kWgmma) {
        issue_scores_wgmma(ks, s);
        WgmmaWaitAll();
        fence_all(s);
        softmax(s, t, p);
        issue_pv_wgmma(vs, p);
        WgmmaWaitAll();
        fence_all(s);
      } else {
#pragma unroll
        for (int j = 0; j < kNT; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
          for (int j = 0; j < kNT; j += 2) {
            uint32_t b[4];
            const int key = key0 + j * 8 + (lane & 7) + (lane >> 4) * 8;
            LdMatrixX4(b, ks + Swizzle<D>(key, 2 * kk + ((lane >> 3) & 1)));
            MmaBf16(s[j], qf[kk], b[0], b[1]);
            MmaBf16(s[j + 1], qf[kk], b[2], b[3]);
          }
        }
        softmax(s, t, p);
#pragma unroll
        for (int kk = 0; kk < C::kWarpKeys / 16; ++kk) {
          const int key = key0 + kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
#pragma unroll
          for (int i = 0; i < D / 8; i += 2) {
            uint32_t b[4];
            LdMatrixX4Trans(b, vs + Swizzle<D>(key, i + (lane >> 4)));
            MmaBf16(o[i], p[kk], b[0], b[1]);
            MmaBf16(o[i + 1], p[kk], b[2], b[3]);
          }
        }
      }
    }
  }
  CpAsyncWait<0>();
  __syncthreads();

  // Epilogue: every warp leaves its rows' (m, l, unnormalised O) in shared memory; the
  // CTA then merges the kWarpsN partial states per row and writes 8 columns per thread.
  float* o_s = reinterpret_cast<float*>(pipe);
  float* m_s = o_s + C::kWarpsN * C::kBlockM * C::kOStride;
  float* l_s = m_s + C::kWarpsN * C::kBlockM;
#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    l_a += __shfl_xor_sync(0xffffffffu, l_a, off);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, off);
  }
  {
    const int sa = warp_n * C::kBlockM + ra;
    if ((lane & 3) == 0) {
      m_s[sa] = m_a;
      l_s[sa] = l_a;
      m_s[sa + 8] = m_b;
      l_s[sa + 8] = l_b;
    }
    float* row_a = o_s + sa * C::kOStride + (lane & 3) * 2;
    float* row_b = row_a + 8 * C::kOStride;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      *reinterpret_cast<float2*>(row_a + i * 8) = make_float2(o[i][0], o[i][1]);
      *reinterpret_cast<float2*>(row_b + i * 8) = make_float2(o[i][2], o[i][3]);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < C::kBlockM * C::kChunks; i += C::kThreads) {
    const int r = i / C::kChunks, c0 = (i % C::kChunks) * 8;
    const int gr = row0 + r;
    if (gr >= num_rows) continue;
    float m = -INFINITY;
#pragma unroll
    for (int w = 0; w < C::kWarpsN; ++w) m = fmaxf(m, m_s[w * C::kBlockM + r]);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float l = 0.0f;
    if (m != -INFINITY) {
#pragma unroll
      for (int w = 0; w < C::kWarpsN; ++w) {
        const float f = exp2f(m_s[w * C::kBlockM + r] - m);
        l += l_s[w * C::kBlockM + r] * f;
        const float* src = o_s + (w * C::kBlockM + r) * C::kOStride + c0;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] += src[e] * f;
      }
    }
    const float inv_l = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] *= inv_l;
    if (item.partial < 0) {
      const int64_t off =
          q_head0 + int64_t{gr / a.group} * q_token_stride + int64_t{gr % a.group} * D + c0;
      *reinterpret_cast<Bf16x8*>(a.out + off) = Pack(acc);
    } else if constexpr (C::kClusterMerge) {
      float* cl = reinterpret_cast<float*>(reinterpret_cast<char*>(pipe) + C::kEpilogueBytes);
      float4* dst = reinterpret_cast<float4*>(cl + r * D + c0);
      dst[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
      dst[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
      if (c0 == 0) cl[C::kBlockM * D + r] = l > 0.0f ? m + log2f(l) : -INFINITY;
    } else {
      const int64_t slot = int64_t{item.partial} * kPartialRows + r;
      float4* dst = reinterpret_cast<float4*>(a.partial_o + slot * D + c0);
      dst[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
      dst[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
      if (c0 == 0) a.partial_lse[slot] = l > 0.0f ? m + log2f(l) : -INFINITY;
    }
  }
  // The pieces of a cluster merge the tile, each a share of its columns, from the
  // pieces' shared memory.
  if constexpr (C::kClusterMerge) {
    if (item.partial >= 0) {
      ClusterMergeTile<C>(a, reinterpret_cast<char*>(pipe) + C::kEpilogueBytes, item.kv_head, row0,
                          num_rows - row0 < C::kBlockM ? num_rows - row0 : C::kBlockM, q_begin);
    }
  } else if (C::kLeanTail && item.partial >= 0) {
    __shared__ int is_last_lean;
    __syncthreads();  // every thread's partial stores before thread 0's release
    if (threadIdx.x == 0) {
      const int done = AtomicAddAcqRel(&a.merge_counters[item.merge], 1) + 1;
      is_last_lean = done == merge_item.num_partials;
    }
    __syncthreads();  // thread 0's acquire before the merge's loads
    if (is_last_lean) {
      MergeTileOnePass<C>(a, merge_item);
      if (threadIdx.x == 0) a.merge_counters[item.merge] = 0;
    }
  } else if (C::kFastTail && item.partial >= 0) {
    __shared__ int is_last_fast;
    __syncthreads();
    if (threadIdx.x == 0) {
      __threadfence();  // this CTA's partial (ordered by the barrier) before the count
      const int done = atomicAdd(&a.merge_counters[item.merge], 1) + 1;
      __threadfence();  // the other pieces' partials before the merge reads them
      is_last_fast = done == merge_item.num_partials;
    }
    __syncthreads();
    if (is_last_fast) {
      MergeTileOnePass<C>(a, merge_item);
      if (threadIdx.x == 0) a.merge_counters[item.merge] = 0;
    }
  } else if (item.partial >= 0) {
    __shared__ int is_last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
      const int done = atomicAdd(&a.merge_counters[item.merge], 1) + 1;
      is_last = done == a.merges[item.merge].num_partials;
    }
    __syncthreads();
    if (is_last) {
      __threadfence();
      MergeTile<C>(a, a.merges[item.merge], reinterpret_cast<float*>(pipe));
      if (threadIdx.x == 0) a.merge_counters[item.merge] = 0;
    }
  }
  __syncthreads();
}

template <class C>
__global__ void __launch_bounds__(C::kThreads, C::kMinBlocks)
    PagedAttentionKernel(const __grid_constant__ AttentionKernelArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t pad = (1024u - (SmemAddr(smem_raw) & 1023u)) & 1023u;
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw + pad);
  for (int i = blockIdx.x; i < a.num_items; i += gridDim.x) {
    const AttentionWorkItem item = a.items[i];
    AttendItem<C>(a, item, smem);
  }
}

// The same with the work items in the kernel parameters (kInlineItems launches of at
// most kMaxInlineItems items).
template <class C>
__global__ void __launch_bounds__(C::kThreads, C::kMinBlocks)
    PagedAttentionInlineKernel(const __grid_constant__ AttentionKernelArgs a,
                               const __grid_constant__ AttentionInlineItems items) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t pad = (1024u - (SmemAddr(smem_raw) & 1023u)) & 1023u;
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw + pad);
  for (int i = blockIdx.x; i < a.num_items; i += gridDim.x) {
    const AttentionWorkItem item = items.items[i];
    AttendItem<C>(a, item, smem);
  }
}

}  // namespace sluice::kernels::cuda
