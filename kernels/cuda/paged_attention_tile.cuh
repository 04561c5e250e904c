// The phases of one work item of the paged attention kernel, in the order AttendItem
// (paged_attention_kernel.cuh) runs them: locate the item, copy its query rows and first
// K/V tiles, then per K/V tile the scores S = QKᵀ, the online softmax (fp32, log2
// domain) and O += PV, on m16n8k16 mma.sync or Hopper wgmma.
//
// Fragments follow the m16n8k16 layouts: a thread holds rows r and r + 8 of its warp's
// 16 (the "a" and "b" rows below), r = lane / 4.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "common.cuh"
#include "mma.cuh"
#include "paged_attention_config.cuh"
#include "paged_attention_merge.cuh"
#include "sluice/kernels/cuda/attention.h"
#include "wgmma.cuh"

namespace sluice::kernels::cuda {

// A warp's fragments: S for its kWarpKeys positions (n8 tiles), P as bf16 A fragments
// (k16 steps), the query as A fragments (k16 steps over head_dim) and O (n8 tiles).
template <class C>
using ScoreFrags = float[C::kWarpKeys / 8][4];
template <class C>
using ProbFrags = uint32_t[C::kWarpKeys / 16][4];
template <class C>
using QueryFrags = uint32_t[C::kHeadDim / 16][4];
template <class C>
using OutFrags = float[C::kHeadDim / 8][4];

// Where one work item's rows and cache positions lie; the same in every thread.
struct ItemSpan {
  int kv_head;
  int row0;                       // first row of the tile
  int q_begin;                    // the sequence's first query token
  int num_rows;                   // the sequence's rows: q_len × group
  int last_row;                   // the tile's last row
  int first_pos;                  // cache position of query token 0
  int kv_end;                     // end of the piece, clipped to the tile's last causal position
  int kv_begin;                   // start of the piece
  int num_tiles;                  // K/V tiles of kBlockN positions in [kv_begin, kv_end)
  int fetch_end;                  // block ids are fetched below it (the planned end with kFastTail)
  const int32_t* table;           // [max_blocks_per_seq], the sequence's block table
  AttentionMergeItem merge_item;  // kFastTail pieces of split tiles: read at the start
  int64_t q_token_stride;         // elements from one query token to the next
  int64_t q_head0;                // element offset of the tile's first query head
};

// This lane's place in the tile: its warp in the kWarpsM × kWarpsN grid and its two
// rows, ra and ra + 8 of the warp's 16, with the last cache position each attends to.
struct LaneRows {
  int lane, warp_m, warp_n;
  int ra;
  int pos_a, pos_b;
  int pos_min;  // the last position the tile's first row attends to
};

// The online softmax state of a lane's rows a and b: running maxima (scaled, log2 units)
// and sums. (Their unnormalised O is an OutFrags beside it.)
struct RowStats {
  float m_a, m_b, l_a, l_b;
};

// The item's span, from its sequence's lengths (and, for a kFastTail piece of a split
// tile, its merge item, read this early so that the tail need not wait for it).
template <class C>
__device__ __forceinline__ ItemSpan LocateItem(const AttentionKernelArgs& a,
                                               const AttentionWorkItem& item) {
  constexpr int D = C::kHeadDim;
  ItemSpan sp;
  const int seq = item.seq;
  sp.kv_head = item.kv_head;
  sp.row0 = item.row_begin;
  sp.q_begin = a.cu_seqlens_q ? a.cu_seqlens_q[seq] : seq;
  const int q_len = a.cu_seqlens_q ? a.cu_seqlens_q[seq + 1] - sp.q_begin : 1;
  const int seq_len = a.seq_lens[seq];
  sp.num_rows = q_len * a.group;
  sp.last_row = min(sp.row0 + C::kBlockM, sp.num_rows) - 1;
  sp.first_pos = seq_len - q_len;
  sp.kv_end = min(item.kv_end, sp.first_pos + sp.last_row / a.group + 1);
  sp.kv_begin = item.kv_begin;
  sp.num_tiles =
      sp.kv_end > sp.kv_begin ? (sp.kv_end - sp.kv_begin + C::kBlockN - 1) / C::kBlockN : 0;
  sp.fetch_end = C::kFastTail ? item.kv_end : sp.kv_end;
  sp.table = a.block_tables + int64_t{seq} * a.max_blocks_per_seq;
  sp.merge_item = AttentionMergeItem{};
  if (C::kFastTail && !C::kClusterMerge && item.partial >= 0) {
    sp.merge_item = a.merges[item.merge];
  }
  sp.q_token_stride = int64_t{a.num_q_heads} * D;
  sp.q_head0 = int64_t{sp.q_begin} * sp.q_token_stride + int64_t{sp.kv_head} * a.group * D;
  return sp;
}

// This lane's rows of the tile and their causal limits.
__device__ __forceinline__ LaneRows LocateLane(const AttentionKernelArgs& a, const ItemSpan& sp,
                                               int lane, int warp_m, int warp_n) {
  LaneRows lr;
  lr.lane = lane;
  lr.warp_m = warp_m;
  lr.warp_n = warp_n;
  lr.ra = lr.warp_m * 16 + (lr.lane >> 2);
  lr.pos_a = sp.first_pos + min(sp.row0 + lr.ra, sp.last_row) / a.group;
  lr.pos_b = sp.first_pos + min(sp.row0 + lr.ra + 8, sp.last_row) / a.group;
  lr.pos_min = sp.first_pos + sp.row0 / a.group;
  return lr;
}

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

// The query tile [kBlockM, kHeadDim] lives in the last pipeline stage until the first
// K/V tile is used.
template <class C>
__device__ __forceinline__ __nv_bfloat16* QueryTile(__nv_bfloat16* pipe) {
  return pipe + (C::kStages - 1) * 2 * C::kTileElems;
}

// Issues the copies of the tile's query rows into q_s (zeros past the sequence's rows);
// they join K/V tile 0's cp.async group.
template <class C>
__device__ __forceinline__ void LoadQueryRows(const AttentionKernelArgs& a, const ItemSpan& sp,
                                              __nv_bfloat16* q_s) {
  constexpr int D = C::kHeadDim;
  constexpr int kQChunks = C::kBlockM * C::kChunks;
  constexpr bool kQExact = kQChunks % C::kThreads == 0;
#pragma unroll
  for (int it = 0; it < (kQChunks + C::kThreads - 1) / C::kThreads; ++it) {
    const int i = threadIdx.x + it * C::kThreads;
    if (!kQExact && i >= kQChunks) break;
    const int r = i / C::kChunks, chunk = i % C::kChunks;
    const int gr = sp.row0 + r;
    const bool valid = gr < sp.num_rows;
    const int64_t off = valid ? sp.q_head0 + int64_t{gr / a.group} * sp.q_token_stride +
                                    int64_t{gr % a.group} * D + chunk * 8
                              : 0;
    CpAsync16(q_s + Swizzle<D>(r, chunk), a.q + off, valid);
  }
}

// Issues K/V tiles 0 .. kStages - 2, one cp.async group each (empty past the piece's
// end), then fetches tile kStages - 1's block ids into ids. The first tiles' block ids
// are all fetched before any copy waits on them.
template <class C>
__device__ __forceinline__ void LoadFirstTiles(const AttentionKernelArgs& a, const ItemSpan& sp,
                                               __nv_bfloat16* pipe,
                                               int32_t (&ids)[kRowsPerThread<C>]) {
  int32_t first_ids[C::kStages - 1][kRowsPerThread<C>];
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    FetchBlockIds<C>(a, sp.table, sp.kv_begin + s * C::kBlockN, sp.fetch_end, first_ids[s]);
  }
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < sp.num_tiles) {
      __nv_bfloat16* ks = pipe + s * 2 * C::kTileElems;
      LoadKvTile<C>(a, first_ids[s], sp.kv_head, sp.kv_begin + s * C::kBlockN, sp.kv_end, ks,
                    ks + C::kTileElems);
    }
    CpAsyncCommit();
  }
  if (C::kStages - 1 < sp.num_tiles) {
    FetchBlockIds<C>(a, sp.table, sp.kv_begin + (C::kStages - 1) * C::kBlockN, sp.fetch_end, ids);
  }
}

// Issues the copy of tile nt (if any) into its stage and fetches the block ids of the
// tile after it; one cp.async group either way.
template <class C>
__device__ __forceinline__ void LoadTileAhead(const AttentionKernelArgs& a, const ItemSpan& sp,
                                              __nv_bfloat16* pipe, int nt,
                                              int32_t (&ids)[kRowsPerThread<C>]) {
  if (nt < sp.num_tiles) {
    __nv_bfloat16* ks = pipe + (nt % C::kStages) * 2 * C::kTileElems;
    LoadKvTile<C>(a, ids, sp.kv_head, sp.kv_begin + nt * C::kBlockN, sp.kv_end, ks,
                  ks + C::kTileElems);
    if (nt + 1 < sp.num_tiles) {
      FetchBlockIds<C>(a, sp.table, sp.kv_begin + (nt + 1) * C::kBlockN, sp.kv_end, ids);
    }
  }
  CpAsyncCommit();
}

// The warp's query A fragments from the query tile in shared memory.
template <class C>
__device__ __forceinline__ void LoadQueryFragments(const __nv_bfloat16* q_s, int warp_m, int lane,
                                                   QueryFrags<C>& qf) {
#pragma unroll
  for (int kk = 0; kk < C::kHeadDim / 16; ++kk) {
    const int r = warp_m * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
    LdMatrixX4(qf[kk], q_s + Swizzle<C::kHeadDim>(r, 2 * kk + (lane >> 4)));
  }
}

// S = Q · Kᵀ over the warp's positions [key0, key0 + kWarpKeys) of the tile in ks
// (mma.sync).
template <class C>
__device__ __forceinline__ void ScoresMma(const __nv_bfloat16* ks, const QueryFrags<C>& qf,
                                          int key0, int lane, ScoreFrags<C>& s) {
  constexpr int kNT = C::kWarpKeys / 8;
#pragma unroll
  for (int j = 0; j < kNT; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < C::kHeadDim / 16; ++kk) {
#pragma unroll
    for (int j = 0; j < kNT; j += 2) {
      uint32_t b[4];
      const int key = key0 + j * 8 + (lane & 7) + (lane >> 4) * 8;
      LdMatrixX4(b, ks + Swizzle<C::kHeadDim>(key, 2 * kk + ((lane >> 3) & 1)));
      MmaBf16(s[j], qf[kk], b[0], b[1]);
      MmaBf16(s[j + 1], qf[kk], b[2], b[3]);
    }
  }
}

// O += P · V over the warp's positions [key0, key0 + kWarpKeys) of the tile in vs
// (mma.sync).
template <class C>
__device__ __forceinline__ void AccumulatePvMma(const __nv_bfloat16* vs, const ProbFrags<C>& p,
                                                int key0, int lane, OutFrags<C>& o) {
#pragma unroll
  for (int kk = 0; kk < C::kWarpKeys / 16; ++kk) {
    const int key = key0 + kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
#pragma unroll
    for (int i = 0; i < C::kHeadDim / 8; i += 2) {
      uint32_t b[4];
      LdMatrixX4Trans(b, vs + Swizzle<C::kHeadDim>(key, i + (lane >> 4)));
      MmaBf16(o[i], p[kk], b[0], b[1]);
      MmaBf16(o[i + 1], p[kk], b[2], b[3]);
    }
  }
}

// Issues S = Q · Kᵀ for the tile in ks as warpgroup MMAs (completion: WgmmaWaitAll).
template <class C>
__device__ __forceinline__ void IssueScoresWgmma(const __nv_bfloat16* ks, const QueryFrags<C>& qf,
                                                 ScoreFrags<C>& s) {
#pragma unroll
  for (int j = 0; j < C::kWarpKeys / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) FenceOperand(s[j][e]);
  }
  WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < C::kHeadDim / 16; ++kk) {
    const uint64_t desc = WgmmaDesc(ks + (kk >> 2) * (C::kBlockN * 64) + (kk & 3) * 16, 1024, 1024);
    WgmmaM64N64K16<0>(&s[0][0], qf[kk], desc, kk > 0);
  }
  WgmmaCommit();
}

// Issues O += P · V for the tile in vs as warpgroup MMAs (completion: WgmmaWaitAll).
template <class C>
__device__ __forceinline__ void IssuePvWgmma(const __nv_bfloat16* vs, const ProbFrags<C>& p,
                                             OutFrags<C>& o) {
#pragma unroll
  for (int i = 0; i < C::kHeadDim / 8; ++i) {
#pragma unroll
    for (int e = 0; e < 4; ++e) FenceOperand(o[i][e]);
  }
  WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < C::kWarpKeys / 16; ++kk) {
#pragma unroll
    for (int h = 0; h < C::kHeadDim / 64; ++h) {
      const uint64_t desc = WgmmaDesc(vs + h * (C::kBlockN * 64) + kk * 16 * 64, 1024, 1024);
      WgmmaM64N64K16<1>(&o[8 * h][0], p[kk], desc, 1);
    }
  }
  WgmmaCommit();
}

// Keeps the compiler from moving the wgmma accumulators s and o across a WgmmaWaitAll.
template <class C>
__device__ __forceinline__ void FenceAccumulators(ScoreFrags<C>& s, OutFrags<C>& o) {
#pragma unroll
  for (int j = 0; j < C::kWarpKeys / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) FenceOperand(s[j][e]);
  }
#pragma unroll
  for (int i = 0; i < C::kHeadDim / 8; ++i) {
#pragma unroll
    for (int e = 0; e < 4; ++e) FenceOperand(o[i][e]);
  }
}

// Probabilities as bf16 A fragments.
template <class C>
__device__ __forceinline__ void PackProbabilities(const ScoreFrags<C>& s, ProbFrags<C>& p) {
#pragma unroll
  for (int kk = 0; kk < C::kWarpKeys / 16; ++kk) {
    p[kk][0] = PackBf16(s[2 * kk][0], s[2 * kk][1]);
    p[kk][1] = PackBf16(s[2 * kk][2], s[2 * kk][3]);
    p[kk][2] = PackBf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    p[kk][3] = PackBf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
  }
}

// Masks tile t's scores, updates the running max and sum, rescales O, and leaves the
// probabilities in p (bf16 A fragments).
template <class C>
__device__ __forceinline__ void OnlineSoftmax(const AttentionKernelArgs& a, const ItemSpan& sp,
                                              const LaneRows& lr, int t, ScoreFrags<C>& s,
                                              ProbFrags<C>& p, RowStats& st, OutFrags<C>& o) {
  constexpr int kNT = C::kWarpKeys / 8;
  const int key0 = lr.warp_n * C::kWarpKeys;
  const int tile_k0 = sp.kv_begin + t * C::kBlockN;
  const bool need_mask =
      tile_k0 + C::kBlockN > sp.kv_end || tile_k0 + C::kBlockN - 1 > lr.pos_min || a.window > 0;
  // Raw scores are masked and maxed; the scale folds into the exponent's FFMA.
  float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
  for (int j = 0; j < kNT; ++j) {
    if (need_mask) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = tile_k0 + key0 + j * 8 + (lr.lane & 3) * 2 + (e & 1);
        const int limit = e < 2 ? lr.pos_a : lr.pos_b;
        if (key >= sp.kv_end || key > limit || (a.window > 0 && key <= limit - a.window)) {
          s[j][e] = -INFINITY;
        }
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
  const float new_a = fmaxf(st.m_a, mx_a * sc), new_b = fmaxf(st.m_b, mx_b * sc);
  if constexpr (C::kLazyRescale) {
    // -INFINITY + slack stays -INFINITY: a row's first finite score always rescales.
    const bool grew = new_a > st.m_a + kRescaleSlack || new_b > st.m_b + kRescaleSlack;
    if (!__any_sync(0xffffffffu, grew)) {
      const float base_a = st.m_a == -INFINITY ? 0.0f : st.m_a;
      const float base_b = st.m_b == -INFINITY ? 0.0f : st.m_b;
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
      st.l_a += sum_a;
      st.l_b += sum_b;
      PackProbabilities<C>(s, p);
      return;
    }
  }
  const float base_a = new_a == -INFINITY ? 0.0f : new_a;
  const float base_b = new_b == -INFINITY ? 0.0f : new_b;
  const float alpha_a = FastExp2(st.m_a - base_a), alpha_b = FastExp2(st.m_b - base_b);
  st.m_a = new_a;
  st.m_b = new_b;
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
  st.l_a = st.l_a * alpha_a + sum_a;
  st.l_b = st.l_b * alpha_b + sum_b;
#pragma unroll
  for (int i = 0; i < C::kHeadDim / 8; ++i) {
    o[i][0] *= alpha_a;
    o[i][1] *= alpha_a;
    o[i][2] *= alpha_b;
    o[i][3] *= alpha_b;
  }
  PackProbabilities<C>(s, p);
}

}  // namespace sluice::kernels::cuda
