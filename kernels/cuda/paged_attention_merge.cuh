// Arguments of the paged attention kernel and the merges of split tiles: the last piece
// of a tile to finish merges the pieces' fp32 partials by log-sum-exp (MergeTile, or
// MergeTileOnePass), or the pieces of a cluster merge from each other's shared memory
// (ClusterMergeTile).
#pragma once

#include <cooperative_groups.h>
#include <cuda_bf16.h>

#include <cstdint>

#include "common.cuh"
#include "sluice/kernels/cuda/attention.h"

namespace sluice::kernels::cuda {

// Rows of a partial-output slot in the workspace (the largest tile height).
inline constexpr int kPartialRows = 128;

struct AttentionKernelArgs {
  const AttentionWorkItem* items;  // [num_items]
  int num_items;
  const int32_t* block_tables;  // [num_seqs, max_blocks_per_seq]
  const int32_t* seq_lens;      // [num_seqs]
  const int32_t* cu_seqlens_q;  // [num_seqs + 1] or nullptr
  int max_blocks_per_seq;
  int block_size;
  int block_shift;  // log2(block_size) when a power of two, else -1
  int num_q_heads;
  int num_kv_heads;
  int group;                         // num_q_heads / num_kv_heads
  float scale_log2;                  // scale * log2(e)
  const __nv_bfloat16* q;            // [num_q_tokens, num_q_heads, head_dim]
  __nv_bfloat16* out;                // [num_q_tokens, num_q_heads, head_dim]
  const __nv_bfloat16* k_cache;      // [num_blocks, block_size, num_kv_heads, head_dim]
  const __nv_bfloat16* v_cache;      // [num_blocks, block_size, num_kv_heads, head_dim]
  float* partial_o;                  // [num_partials, kPartialRows, head_dim]
  float* partial_lse;                // [num_partials, kPartialRows], log2 domain
  const AttentionMergeItem* merges;  // [num_merges]
  int32_t* merge_counters;           // [num_merges], zero between launches
  int window;                        // sliding window (0: none)
  const float* sinks;                // [num_q_heads] fp32 logits, or nullptr
};

// The sink logit of row `row` of (sequence, kv_head) — query head kv_head × group +
// row % group — in the kernels' log2 domain (sinks are in the units of the scaled
// scores, as gpt-oss concatenates them), or -inf without sinks.
__device__ __forceinline__ float SinkLog2(const AttentionKernelArgs& a, int kv_head, int row) {
  if (a.sinks == nullptr) return -INFINITY;
  return __ldg(a.sinks + kv_head * a.group + row % a.group) * 1.4426950408889634f;
}

// 1 / the softmax denominator of a row whose scores have maximum m (log2 units, -inf
// when no position was attended) and sum l of exp2(score - m): the sink's term joins l.
__device__ __forceinline__ float InverseDenominator(float m, float l, float sink_log2) {
  if (sink_log2 != -INFINITY) l += exp2f(sink_log2 - (m == -INFINITY ? 0.0f : m));
  return l > 0.0f ? 1.0f / l : 0.0f;
}

// Work items carried in the kernel parameters (3.5 KiB; with AttentionKernelArgs the
// parameters stay under the classic 4 KiB limit).
inline constexpr int kMaxInlineItems = 128;
struct AttentionInlineItems {
  AttentionWorkItem items[kMaxInlineItems];
};
static_assert(sizeof(AttentionKernelArgs) + sizeof(AttentionInlineItems) <= 4000);

// atomicAdd with acquire-release semantics at device scope: the caller's earlier writes
// (and, through a preceding barrier, its CTA's) are visible to whoever acquires the
// counter after it, and later reads see what the earlier arrivals released.
__device__ __forceinline__ int AtomicAddAcqRel(int32_t* p, int v) {
  int old;
  asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], %2;\n"
               : "=r"(old)
               : "l"(p), "r"(v)
               : "memory");
  return old;
}

template <class C>
__device__ void MergeTile(const AttentionKernelArgs& a, const AttentionMergeItem& m,
                          float* scratch) {
  constexpr int D = C::kHeadDim;
  float* row_max = scratch;
  float* row_inv = scratch + kPartialRows;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float* lse = a.partial_lse + int64_t{m.first_partial} * kPartialRows;
  for (int r = warp; r < m.num_rows; r += C::kThreads / 32) {
    float mx = -INFINITY;
    for (int j = lane; j < m.num_partials; j += 32)
      mx = fmaxf(mx, __ldcg(lse + j * kPartialRows + r));
    mx = WarpMax(mx);
    float sum = 0.0f;
    if (mx != -INFINITY) {
      for (int j = lane; j < m.num_partials; j += 32) {
        sum += exp2f(__ldcg(lse + j * kPartialRows + r) - mx);
      }
    }
    sum = WarpSum(sum);
    if (lane == 0) {
      row_max[r] = mx == -INFINITY ? 0.0f : mx;
      row_inv[r] = InverseDenominator(mx, sum, SinkLog2(a, m.kv_head, m.row_begin + r));
    }
  }
  __syncthreads();
  const int q_begin = a.cu_seqlens_q ? a.cu_seqlens_q[m.seq] : m.seq;
  for (int i = threadIdx.x; i < m.num_rows * (D / 4); i += C::kThreads) {
    const int r = i / (D / 4), c0 = (i % (D / 4)) * 4;
    const float mx = row_max[r];
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 16
    for (int j = 0; j < m.num_partials; ++j) {
      const int64_t slot = int64_t{m.first_partial + j} * kPartialRows + r;
      const float w = exp2f(__ldcg(a.partial_lse + slot) - mx);
      const float4 v = __ldcg(reinterpret_cast<const float4*>(a.partial_o + slot * D + c0));
      acc.x += w * v.x;
      acc.y += w * v.y;
      acc.z += w * v.z;
      acc.w += w * v.w;
    }
    const float inv = row_inv[r];
    const int gr = m.row_begin + r;
    const int64_t off = (int64_t{q_begin + gr / a.group} * a.num_q_heads +
                         int64_t{m.kv_head} * a.group + gr % a.group) *
                            D +
                        c0;
    __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(a.out + off);
    dst[0] = __floats2bfloat162_rn(acc.x * inv, acc.y * inv);
    dst[1] = __floats2bfloat162_rn(acc.z * inv, acc.w * inv);
  }
}

// MergeTile in one pass: each thread loads its column group of every partial together
// with the partials' log-sum-exps (16 at a time, all in flight) and rescales online.
template <class C>
__device__ void MergeTileOnePass(const AttentionKernelArgs& a, const AttentionMergeItem& m) {
  constexpr int D = C::kHeadDim;
  constexpr int kBatch = 16;
  const int q_begin = a.cu_seqlens_q ? a.cu_seqlens_q[m.seq] : m.seq;
  for (int i = threadIdx.x; i < m.num_rows * (D / 4); i += C::kThreads) {
    const int r = i / (D / 4), c0 = (i % (D / 4)) * 4;
    float mx = -INFINITY, l = 0.0f;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int j0 = 0; j0 < m.num_partials; j0 += kBatch) {
      float lse[kBatch];
      float4 v[kBatch];
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        const int64_t slot = int64_t{m.first_partial + j0 + k} * kPartialRows + r;
        if (j0 + k < m.num_partials) {
          lse[k] = __ldcg(a.partial_lse + slot);
          v[k] = __ldcg(reinterpret_cast<const float4*>(a.partial_o + slot * D + c0));
        } else {
          lse[k] = -INFINITY;
          v[k] = make_float4(0.f, 0.f, 0.f, 0.f);
        }
      }
      float new_mx = mx;
#pragma unroll
      for (int k = 0; k < kBatch; ++k) new_mx = fmaxf(new_mx, lse[k]);
      if (new_mx == -INFINITY) continue;
      const float f = exp2f(mx - new_mx);
      mx = new_mx;
      l *= f;
      acc.x *= f;
      acc.y *= f;
      acc.z *= f;
      acc.w *= f;
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        const float w = exp2f(lse[k] - mx);
        l += w;
        acc.x += w * v[k].x;
        acc.y += w * v[k].y;
        acc.z += w * v[k].z;
        acc.w += w * v[k].w;
      }
    }
    const int gr = m.row_begin + r;
    const float inv = InverseDenominator(mx, l, SinkLog2(a, m.kv_head, gr));
    const int64_t off = (int64_t{q_begin + gr / a.group} * a.num_q_heads +
                         int64_t{m.kv_head} * a.group + gr % a.group) *
                            D +
                        c0;
    __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(a.out + off);
    dst[0] = __floats2bfloat162_rn(acc.x * inv, acc.y * inv);
    dst[1] = __floats2bfloat162_rn(acc.z * inv, acc.w * inv);
  }
}

// The cluster's pieces of one tile merge their rows: piece k of n writes its share of
// the (row, 4-column) groups, reading every piece's O and log-sum-exp through
// distributed shared memory. Called by every CTA of the cluster.
template <class C>
__device__ void ClusterMergeTile(const AttentionKernelArgs& a, void* area, int kv_head, int row0,
                                 int rows, int q_begin) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr int D = C::kHeadDim;
  constexpr int kMaxPieces = 16;
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  float* mine = static_cast<float*>(area);
  cluster.sync();  // every piece's rows are in its shared memory
  const int n = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());
  const int groups = rows * (D / 4);
  const int per = (groups + n - 1) / n;
  const int end = min(groups, (rank + 1) * per);
  for (int g = rank * per + static_cast<int>(threadIdx.x); g < end; g += C::kThreads) {
    const int r = g / (D / 4), c0 = (g % (D / 4)) * 4;
    float lse[kMaxPieces];
    float4 v[kMaxPieces];
#pragma unroll
    for (int k = 0; k < kMaxPieces; ++k) {
      if (k < n) {
        const float* remote = cluster.map_shared_rank(mine, k);
        lse[k] = remote[C::kBlockM * D + r];
        v[k] = *reinterpret_cast<const float4*>(remote + r * D + c0);
      } else {
        lse[k] = -INFINITY;
        v[k] = make_float4(0.f, 0.f, 0.f, 0.f);
      }
    }
    float mx = -INFINITY;
#pragma unroll
    for (int k = 0; k < kMaxPieces; ++k) mx = fmaxf(mx, lse[k]);
    float l = 0.0f;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    if (mx != -INFINITY) {
#pragma unroll
      for (int k = 0; k < kMaxPieces; ++k) {
        const float w = exp2f(lse[k] - mx);
        l += w;
        acc.x += w * v[k].x;
        acc.y += w * v[k].y;
        acc.z += w * v[k].z;
        acc.w += w * v[k].w;
      }
    }
    const int gr = row0 + r;
    const float inv = InverseDenominator(mx, l, SinkLog2(a, kv_head, gr));
    const int64_t off = (int64_t{q_begin + gr / a.group} * a.num_q_heads +
                         int64_t{kv_head} * a.group + gr % a.group) *
                            D +
                        c0;
    __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(a.out + off);
    dst[0] = __floats2bfloat162_rn(acc.x * inv, acc.y * inv);
    dst[1] = __floats2bfloat162_rn(acc.z * inv, acc.w * inv);
  }
  cluster.sync();  // no piece leaves while another still reads its shared memory
#else
  __trap();
#endif
}

}  // namespace sluice::kernels::cuda
