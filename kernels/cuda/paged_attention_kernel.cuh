// The paged attention kernel: a persistent CTA loops over planned work items; each item
// is one tile of query rows of a (sequence, KV head) pair, where a row is (query token,
// query head of the group), against a range of cache positions. K/V tiles of kBlockN
// positions stream through a kStages-deep cp.async pipeline (block ids fetched a tile
// ahead); S = QKᵀ and O += PV run on tensor cores (m16n8k16 mma.sync, or Hopper wgmma)
// with an online softmax in fp32 (log2 domain). The phases of one tile are in
// paged_attention_tile.cuh, the configurations in paged_attention_config.cuh.
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
#include "paged_attention_config.cuh"
#include "paged_attention_merge.cuh"
#include "paged_attention_tile.cuh"
#include "sluice/kernels/cuda/attention.h"
#include "wgmma.cuh"

namespace sluice::kernels::cuda {

// The loop over the piece's K/V tiles, one tile's scores, softmax and PV after another.
template <class C>
__device__ __forceinline__ void AttendTiles(const AttentionKernelArgs& a, const ItemSpan& sp,
                                            const LaneRows& lr, __nv_bfloat16* pipe,
                                            int32_t (&ids)[kRowsPerThread<C>], QueryFrags<C>& qf,
                                            RowStats& st, OutFrags<C>& o) {
  const __nv_bfloat16* q_s = QueryTile<C>(pipe);
  for (int t = 0; t < sp.num_tiles; ++t) {
    CpAsyncWait<C::kStages - 2>();
    if constexpr (C::kWgmma) FenceProxyAsync();
    __syncthreads();
    if (t == 0) {
      LoadQueryFragments<C>(q_s, lr.warp_m, lr.lane, qf);
      __syncthreads();  // the next load overwrites the query tile
    }
    LoadTileAhead<C>(a, sp, pipe, t + C::kStages - 1, ids);
    const __nv_bfloat16* ks = pipe + (t % C::kStages) * 2 * C::kTileElems;
    const __nv_bfloat16* vs = ks + C::kTileElems;
    const int key0 = lr.warp_n * C::kWarpKeys;
    ScoreFrags<C> s;
    ProbFrags<C> p;
    if constexpr (C::kWgmma) {
      IssueScoresWgmma<C>(ks, qf, s);
      WgmmaWaitAll();
      FenceAccumulators<C>(s, o);
      OnlineSoftmax<C>(a, sp, lr, t, s, p, st, o);
      IssuePvWgmma<C>(vs, p, o);
      WgmmaWaitAll();
      FenceAccumulators<C>(s, o);
    } else {
      ScoresMma<C>(ks, qf, key0, lr.lane, s);
      OnlineSoftmax<C>(a, sp, lr, t, s, p, st, o);
      AccumulatePvMma<C>(vs, p, key0, lr.lane, o);
    }
  }
}

// The loop over the piece's K/V tiles for kPipelined: the scores of tile t + 1 run on the
// tensor cores while the softmax of tile t runs on the ALUs. Tile t + 1 must have landed
// at the top of iteration t.
template <class C>
__device__ __forceinline__ void AttendTilesPipelined(
    const AttentionKernelArgs& a, const ItemSpan& sp, const LaneRows& lr, __nv_bfloat16* pipe,
    int32_t (&ids)[kRowsPerThread<C>], QueryFrags<C>& qf, RowStats& st, OutFrags<C>& o) {
  const __nv_bfloat16* q_s = QueryTile<C>(pipe);
  ScoreFrags<C> s;
  if (sp.num_tiles > 0) {
    CpAsyncWait<C::kStages - 2>();
    FenceProxyAsync();
    __syncthreads();
    LoadQueryFragments<C>(q_s, lr.warp_m, lr.lane, qf);
    IssueScoresWgmma<C>(pipe, qf, s);
    WgmmaWaitAll();
    FenceAccumulators<C>(s, o);
  }
  for (int t = 0; t < sp.num_tiles; ++t) {
    CpAsyncWait<C::kStages - 3>();
    FenceProxyAsync();
    __syncthreads();  // also: every warp is done with the stage refilled next
    LoadTileAhead<C>(a, sp, pipe, t + C::kStages - 1, ids);
    ScoreFrags<C> s_next;
    if (t + 1 < sp.num_tiles) {
      IssueScoresWgmma<C>(pipe + ((t + 1) % C::kStages) * 2 * C::kTileElems, qf, s_next);
    }
    ProbFrags<C> p;
    OnlineSoftmax<C>(a, sp, lr, t, s, p, st, o);
    IssuePvWgmma<C>(pipe + (t % C::kStages) * 2 * C::kTileElems + C::kTileElems, p, o);
    WgmmaWaitAll();
    FenceAccumulators<C>(s_next, o);
#pragma unroll
    for (int j = 0; j < C::kWarpKeys / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[j][e] = s_next[j][e];
    }
  }
}

// Epilogue, first half: every warp leaves its rows' (m, l, unnormalised O) in shared
// memory, o_s [kWarpsN × kBlockM rows of kOStride], then m_s and l_s [kWarpsN × kBlockM].
template <class C>
__device__ __forceinline__ void StoreWarpRows(__nv_bfloat16* pipe, const LaneRows& lr, RowStats& st,
                                              const OutFrags<C>& o) {
  float* o_s = reinterpret_cast<float*>(pipe);
  float* m_s = o_s + C::kWarpsN * C::kBlockM * C::kOStride;
  float* l_s = m_s + C::kWarpsN * C::kBlockM;
#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    st.l_a += __shfl_xor_sync(0xffffffffu, st.l_a, off);
    st.l_b += __shfl_xor_sync(0xffffffffu, st.l_b, off);
  }
  const int sa = lr.warp_n * C::kBlockM + lr.ra;
  if ((lr.lane & 3) == 0) {
    m_s[sa] = st.m_a;
    l_s[sa] = st.l_a;
    m_s[sa + 8] = st.m_b;
    l_s[sa + 8] = st.l_b;
  }
  float* row_a = o_s + sa * C::kOStride + (lr.lane & 3) * 2;
  float* row_b = row_a + 8 * C::kOStride;
#pragma unroll
  for (int i = 0; i < C::kHeadDim / 8; ++i) {
    *reinterpret_cast<float2*>(row_a + i * 8) = make_float2(o[i][0], o[i][1]);
    *reinterpret_cast<float2*>(row_b + i * 8) = make_float2(o[i][2], o[i][3]);
  }
}

// Epilogue, second half: the CTA merges the kWarpsN partial states per row and writes 8
// columns per thread, as bf16 output (unsplit items), into the piece's cluster area
// (cluster pieces) or into its fp32 partial slot with the row's log-sum-exp.
template <class C>
__device__ __forceinline__ void WriteRows(const AttentionKernelArgs& a,
                                          const AttentionWorkItem& item, const ItemSpan& sp,
                                          __nv_bfloat16* pipe) {
  constexpr int D = C::kHeadDim;
  const float* o_s = reinterpret_cast<float*>(pipe);
  const float* m_s = o_s + C::kWarpsN * C::kBlockM * C::kOStride;
  const float* l_s = m_s + C::kWarpsN * C::kBlockM;
  for (int i = threadIdx.x; i < C::kBlockM * C::kChunks; i += C::kThreads) {
    const int r = i / C::kChunks, c0 = (i % C::kChunks) * 8;
    const int gr = sp.row0 + r;
    if (gr >= sp.num_rows) continue;
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
    // The sink joins the denominator once: here for unsplit items, in the merge for split
    // ones.
    const float inv_l =
        InverseDenominator(m, l, item.partial < 0 ? SinkLog2(a, sp.kv_head, gr) : -INFINITY);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] *= inv_l;
    if (item.partial < 0) {
      const int64_t off =
          sp.q_head0 + int64_t{gr / a.group} * sp.q_token_stride + int64_t{gr % a.group} * D + c0;
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
}

// The end of a piece of a split tile: the pieces of a cluster merge the tile, each a
// share of its columns, from the pieces' shared memory; otherwise the last piece to
// arrive (counted in merge_counters) merges the partials and resets the count.
template <class C>
__device__ __forceinline__ void FinishPiece(const AttentionKernelArgs& a,
                                            const AttentionWorkItem& item, const ItemSpan& sp,
                                            __nv_bfloat16* pipe) {
  if constexpr (C::kClusterMerge) {
    if (item.partial >= 0) {
      ClusterMergeTile<C>(
          a, reinterpret_cast<char*>(pipe) + C::kEpilogueBytes, item.kv_head, sp.row0,
          sp.num_rows - sp.row0 < C::kBlockM ? sp.num_rows - sp.row0 : C::kBlockM, sp.q_begin);
    }
  } else if (C::kLeanTail && item.partial >= 0) {
    __shared__ int is_last_lean;
    __syncthreads();  // every thread's partial stores before thread 0's release
    if (threadIdx.x == 0) {
      const int done = AtomicAddAcqRel(&a.merge_counters[item.merge], 1) + 1;
      is_last_lean = done == sp.merge_item.num_partials;
    }
    __syncthreads();  // thread 0's acquire before the merge's loads
    if (is_last_lean) {
      MergeTileOnePass<C>(a, sp.merge_item);
      if (threadIdx.x == 0) a.merge_counters[item.merge] = 0;
    }
  } else if (C::kFastTail && item.partial >= 0) {
    __shared__ int is_last_fast;
    __syncthreads();
    if (threadIdx.x == 0) {
      __threadfence();  // this CTA's partial (ordered by the barrier) before the count
      const int done = atomicAdd(&a.merge_counters[item.merge], 1) + 1;
      __threadfence();  // the other pieces' partials before the merge reads them
      is_last_fast = done == sp.merge_item.num_partials;
    }
    __syncthreads();
    if (is_last_fast) {
      MergeTileOnePass<C>(a, sp.merge_item);
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
}

// One work item, by the whole CTA: the tile's rows against the piece's cache positions,
// then the write-out (and, for a piece of a split tile, its share of the merge). smem is
// the 1024-byte-aligned dynamic shared memory, kSmemBytes - 1024 bytes of it.
template <class C>
__device__ void AttendItem(const AttentionKernelArgs& a, const AttentionWorkItem& item,
                           __nv_bfloat16* smem) {
  __nv_bfloat16* pipe = smem;  // [kStages][K, V][kBlockN, kHeadDim], swizzled (KvOffset)
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warp_m = warp / C::kWarpsN, warp_n = warp % C::kWarpsN;
  const ItemSpan sp = LocateItem<C>(a, item);
  // Query rows and K/V tile 0 form the first cp.async group.
  LoadQueryRows<C>(a, sp, QueryTile<C>(pipe));
  int32_t ids[kRowsPerThread<C>];
  LoadFirstTiles<C>(a, sp, pipe, ids);

  const LaneRows lr = LocateLane(a, sp, lane, warp_m, warp_n);
  QueryFrags<C> qf;  // loaded once the first tile has landed
  OutFrags<C> o;
#pragma unroll
  for (int i = 0; i < C::kHeadDim / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  RowStats st{-INFINITY, -INFINITY, 0.0f, 0.0f};
  if constexpr (C::kPipelined) {
    AttendTilesPipelined<C>(a, sp, lr, pipe, ids, qf, st, o);
  } else {
    AttendTiles<C>(a, sp, lr, pipe, ids, qf, st, o);
  }
  CpAsyncWait<0>();
  __syncthreads();

  // The epilogue reuses the pipeline's shared memory.
  StoreWarpRows<C>(pipe, lr, st, o);
  __syncthreads();
  WriteRows<C>(a, item, sp, pipe);
  FinishPiece<C>(a, item, sp, pipe);
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
