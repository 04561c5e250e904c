// The fused MoE of cuda/moe.h: routing, the pairs aligned to row tiles expert by expert,
// two grouped GEMMs on the tensor cores (mma.sync m16n8k16, bf16 in, fp32 accumulators,
// a three-stage cp.async pipeline) and the weighted combine.
#include <algorithm>
#include <climits>
#include <string>

#include "common.cuh"
#include "mma.cuh"
#include "sluice/kernels/cuda/moe.h"

namespace sluice::kernels::cuda {
namespace {

constexpr int kMaxTopK = 32;       // one lane of the routing warp per choice
constexpr int kMaxExperts = 1024;  // one thread of the align block per expert
constexpr int kAlignThreads = 1024;
constexpr int kRouteThreads = 128;  // four tokens per block
constexpr int kCombineThreads = 128;

// The grouped GEMMs: a block computes a tile of BM rows (16 or 64) by kBN output columns,
// stepping kBK along the reduction; shared-memory rows are padded by kPad elements so
// that ldmatrix's eight row addresses fall in distinct banks.
constexpr int kBN = 64;
constexpr int kBK = 32;
constexpr int kStages = 3;
constexpr int kPad = 8;
constexpr int kRowStride = kBK + kPad;
constexpr int kGemmThreads = 128;

// Row tile: 16 rows while experts receive few tokens each (decode), 64 once they receive
// 32 or more on average.
int BlockM(const MoeShape& s, int num_tokens) {
  return int64_t{num_tokens} * s.top_k >= int64_t{32} * s.num_experts ? 64 : 16;
}

// The most row tiles a routing of n tokens can need: each expert that receives tokens
// rounds its rows up by less than one tile.
int64_t MaxTiles(const MoeShape& s, int n, int bm) {
  const int64_t pairs = int64_t{n} * s.top_k;
  return pairs / bm + std::min<int64_t>(pairs, s.num_experts);
}

// Where each buffer lives in the workspace (sized for max_tokens, whatever the step's
// tokens, so that the addresses stay fixed for graphs).
struct Layout {
  size_t ids = 0, weights = 0, tile_expert = 0, total_tiles = 0, sorted_src = 0, inv_pos = 0,
         act = 0, y = 0, total = 0;
};

Layout MakeLayout(const MoeShape& s, int max_tokens) {
  const int64_t pairs = int64_t{max_tokens} * s.top_k;
  int64_t tiles = 0, rows = 0;
  for (int bm : {16, 64}) {
    tiles = std::max(tiles, MaxTiles(s, max_tokens, bm));
    rows = std::max(rows, MaxTiles(s, max_tokens, bm) * bm);
  }
  Layout l;
  size_t at = 0;
  auto take = [&](size_t bytes) {
    const size_t off = at;
    at = (at + bytes + 255) / 256 * 256;
    return off;
  };
  l.ids = take(sizeof(int32_t) * pairs);
  l.weights = take(sizeof(float) * pairs);
  l.tile_expert = take(sizeof(int32_t) * tiles);
  l.total_tiles = take(sizeof(int32_t));
  l.sorted_src = take(sizeof(int32_t) * rows);
  l.inv_pos = take(sizeof(int32_t) * pairs);
  l.act = take(sizeof(__nv_bfloat16) * rows * s.intermediate);
  l.y = take(sizeof(__nv_bfloat16) * rows * s.hidden);
  l.total = at;
  return l;
}

// One warp per token. The choices come out in ranking order (value descending, ties to
// the lower id), choice j in lane j: each round takes the best expert ranked after the
// previous round's, so no set of taken experts is kept.
__global__ void __launch_bounds__(kRouteThreads)
    RouteKernel(int32_t* expert_ids, float* weights, const float* logits, int num_tokens,
                int num_experts, int k, bool softmax_first, bool renormalize) {
  const int token = (blockIdx.x * kRouteThreads + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (token >= num_tokens) return;  // the whole warp
  const float* row = logits + int64_t{token} * num_experts;
  float mx = 0.0f, sum = 1.0f;
  if (softmax_first) {
    mx = -INFINITY;
    for (int e = lane; e < num_experts; e += 32) mx = fmaxf(mx, row[e]);
    mx = WarpMax(mx);
    sum = 0.0f;
    for (int e = lane; e < num_experts; e += 32) sum += expf(row[e] - mx);
    sum = WarpSum(sum);
  }
  float prev_v = INFINITY, mine_v = 0.0f;
  int prev_id = -1, mine_id = 0;
  for (int j = 0; j < k; ++j) {
    float best_v = -INFINITY;
    int best_id = INT_MAX;
    for (int e = lane; e < num_experts; e += 32) {
      const float v = softmax_first ? expf(row[e] - mx) / sum : row[e];
      const bool after = v < prev_v || (v == prev_v && e > prev_id);
      if (after && (v > best_v || (v == best_v && e < best_id))) {
        best_v = v;
        best_id = e;
      }
    }
    WarpArgmax(best_v, best_id);
    if (lane == j) {
      mine_v = best_v;
      mine_id = best_id;
    }
    prev_v = best_v;
    prev_id = best_id;
  }
  float w = mine_v;
  if (!softmax_first) {  // top-k, then a softmax over the k logits (choice 0 is their max)
    const float top = __shfl_sync(0xffffffffu, mine_v, 0);
    w = lane < k ? expf(mine_v - top) : 0.0f;
    w /= WarpSum(w);
  } else if (renormalize) {
    w /= WarpSum(lane < k ? mine_v : 0.0f);
  }
  if (lane < k) {
    expert_ids[int64_t{token} * k + lane] = mine_id;
    weights[int64_t{token} * k + lane] = w;
  }
}

// Exclusive prefix sum over the block of one value per thread; *total gets the sum.
// REQUIRES: every thread calls it; blockDim.x a multiple of 32.
__device__ int BlockExclusiveScan(int v, int* warp_sums, int* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, num_warps = blockDim.x >> 5;
  int incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int t = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += t;
  }
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int s = lane < num_warps ? warp_sums[lane] : 0;
    int inc = s;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int t = __shfl_up_sync(0xffffffffu, inc, o);
      if (lane >= o) inc += t;
    }
    warp_sums[lane] = inc - s;
    if (lane == 31) *total = inc;
  }
  __syncthreads();
  return incl - v + warp_sums[warp];
}

// One block: counts the pairs (token t, choice j) = t * k + j per expert, gives each
// expert a run of rows rounded up to bm, names each tile's expert, and places every pair
// in its expert's run (sorted_src[row] = pair, -1 on padding; inv_pos[pair] = row).
__global__ void __launch_bounds__(kAlignThreads)
    AlignKernel(const int32_t* expert_ids, int pairs, int num_experts, int bm, int32_t* tile_expert,
                int32_t* total_tiles, int32_t* sorted_src, int32_t* inv_pos) {
  __shared__ int count[kMaxExperts], offset[kMaxExperts], cursor[kMaxExperts];
  __shared__ int warp_sums[32], total_rows;
  const int tid = threadIdx.x;
  if (tid < num_experts) count[tid] = cursor[tid] = 0;
  __syncthreads();
  for (int p = tid; p < pairs; p += kAlignThreads) atomicAdd(&count[expert_ids[p]], 1);
  __syncthreads();
  const int padded = tid < num_experts ? (count[tid] + bm - 1) / bm * bm : 0;
  const int start = BlockExclusiveScan(padded, warp_sums, &total_rows);
  if (tid < num_experts) {
    offset[tid] = start;
    for (int r = start; r < start + padded; r += bm) tile_expert[r / bm] = tid;
  }
  if (tid == 0) *total_tiles = total_rows / bm;
  for (int r = tid; r < total_rows; r += kAlignThreads) sorted_src[r] = -1;
  __syncthreads();
  for (int p = tid; p < pairs; p += kAlignThreads) {
    const int e = expert_ids[p];
    const int row = offset[e] + atomicAdd(&cursor[e], 1);
    sorted_src[row] = p;
    inv_pos[p] = row;
  }
}

struct GemmArgs {
  const __nv_bfloat16* a;     // gate_up: x [tokens, K], rows picked by pair; down: act [rows, K]
  const __nv_bfloat16* w;     // [experts, w_rows, K]
  const __nv_bfloat16* bias;  // [experts, w_rows] or nullptr
  __nv_bfloat16* c;           // [rows, N]
  const int32_t* sorted_src;
  const int32_t* tile_expert;
  const int32_t* total_tiles;
  int K, N, w_rows, top_k;
  float alpha, limit;  // the clamped SwiGLU's
};

template <bool kClamped>
__device__ __forceinline__ float Activate(float g, float u, float alpha, float limit) {
  if (kClamped) {
    g = fminf(g, limit);
    u = fminf(fmaxf(u, -limit), limit);
    return (u + 1.0f) * (g / (1.0f + expf(-alpha * g)));
  }
  return g / (1.0f + expf(-g)) * u;
}

// One row tile of one expert by kBN columns. The gate/up pass (kGateUp) reads x's rows
// through the pairs and the gate rows [n0, n0 + kBN) with the matching up rows
// (N + n0 ...) of the expert's weights, and writes the activation; the down pass reads
// the activations in row order and writes the expert outputs of the rows that hold a
// pair.
template <int BM, bool kGateUp, bool kClamped>
__global__ void __launch_bounds__(kGemmThreads) ExpertGemmKernel(GemmArgs g) {
  constexpr int kBRows = kGateUp ? 2 * kBN : kBN;
  constexpr int kHalves = kGateUp ? 2 : 1;
  constexpr int kWarpsM = BM / 16, kWarpsN = (kGemmThreads / 32) / kWarpsM;
  constexpr int kWarpCols = kBN / kWarpsN, kNT = kWarpCols / 8;
  static_assert(kNT % 2 == 0, "B fragments load two n8 tiles at a time");
  const int tile = blockIdx.x;
  if (tile >= *g.total_tiles) return;  // past the tiles this routing uses
  const int expert = g.tile_expert[tile];
  const int row0 = tile * BM, n0 = blockIdx.y * kBN;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp / kWarpsN, warp_n = warp % kWarpsN;

  __shared__ alignas(16) __nv_bfloat16 sa[kStages][BM][kRowStride];
  __shared__ alignas(16) __nv_bfloat16 sb[kStages][kBRows][kRowStride];
  __shared__ int src[BM];    // the pair of each row, -1 on padding
  __shared__ int a_row[BM];  // the row of `a` each tile row reads, -1 for zeros
  for (int r = tid; r < BM; r += kGemmThreads) {
    const int s = g.sorted_src[row0 + r];
    src[r] = s;
    a_row[r] = kGateUp ? (s >= 0 ? s / g.top_k : -1) : row0 + r;
  }
  __syncthreads();

  const __nv_bfloat16* w = g.w + int64_t{expert} * g.w_rows * g.K;
  auto load = [&](int stage, int kt) {
    const int k0 = kt * kBK;
    for (int i = tid; i < BM * (kBK / 8); i += kGemmThreads) {
      const int r = i / (kBK / 8), kc = k0 + (i % (kBK / 8)) * 8;
      const int row = a_row[r];
      const bool valid = row >= 0 && kc < g.K;
      CpAsync16(&sa[stage][r][kc - k0], valid ? g.a + int64_t{row} * g.K + kc : g.a, valid);
    }
    for (int i = tid; i < kBRows * (kBK / 8); i += kGemmThreads) {
      const int r = i / (kBK / 8), kc = k0 + (i % (kBK / 8)) * 8;
      const int col = n0 + r % kBN;
      const int wrow = r >= kBN ? g.N + col : col;  // up rows follow the gate rows
      const bool valid = col < g.N && kc < g.K;
      CpAsync16(&sb[stage][r][kc - k0], valid ? w + int64_t{wrow} * g.K + kc : w, valid);
    }
  };

  float acc[kHalves][kNT][4];
#pragma unroll
  for (int h = 0; h < kHalves; ++h) {
#pragma unroll
    for (int i = 0; i < kNT; ++i) {
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[h][i][e] = 0.0f;
    }
  }
  const int num_k_tiles = (g.K + kBK - 1) / kBK;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < num_k_tiles) load(s, s);
    CpAsyncCommit();
  }
  for (int kt = 0; kt < num_k_tiles; ++kt) {
    CpAsyncWait<kStages - 2>();
    __syncthreads();  // tile kt landed for all; everyone is done with the stage refilled next
    if (kt + kStages - 1 < num_k_tiles) load((kt + kStages - 1) % kStages, kt + kStages - 1);
    CpAsyncCommit();
    const int st = kt % kStages;
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      uint32_t af[4];
      LdMatrixX4(
          af, &sa[st][warp_m * 16 + (lane & 7) + ((lane >> 3) & 1) * 8][kk * 16 + (lane >> 4) * 8]);
#pragma unroll
      for (int h = 0; h < kHalves; ++h) {
#pragma unroll
        for (int j = 0; j < kNT / 2; ++j) {
          uint32_t b[4];
          const int r = h * kBN + warp_n * kWarpCols + j * 16 + (lane & 7) + (lane >> 4) * 8;
          LdMatrixX4(b, &sb[st][r][kk * 16 + ((lane >> 3) & 1) * 8]);
          MmaBf16(acc[h][2 * j], af, b[0], b[1]);
          MmaBf16(acc[h][2 * j + 1], af, b[2], b[3]);
        }
      }
    }
  }
  CpAsyncWait<0>();

  // Accumulator e of an m16n8 tile: row lane / 4 (+ 8 for e >= 2), column
  // 2 * (lane % 4) + e % 2.
  const __nv_bfloat16* bias = g.bias ? g.bias + int64_t{expert} * g.w_rows : nullptr;
#pragma unroll
  for (int i = 0; i < kNT; ++i) {
    const int col = n0 + warp_n * kWarpCols + i * 8 + (lane & 3) * 2;
    if (col >= g.N) continue;  // N is a multiple of 8: col + 1 < N as well
    float bg0 = 0.0f, bg1 = 0.0f, bu0 = 0.0f, bu1 = 0.0f;
    if (bias != nullptr) {
      bg0 = __bfloat162float(bias[col]);
      bg1 = __bfloat162float(bias[col + 1]);
      if (kGateUp) {
        bu0 = __bfloat162float(bias[g.N + col]);
        bu1 = __bfloat162float(bias[g.N + col + 1]);
      }
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = warp_m * 16 + (lane >> 2) + half * 8;
      float v0 = acc[0][i][2 * half] + bg0, v1 = acc[0][i][2 * half + 1] + bg1;
      if (kGateUp) {
        v0 = Activate<kClamped>(v0, acc[kHalves - 1][i][2 * half] + bu0, g.alpha, g.limit);
        v1 = Activate<kClamped>(v1, acc[kHalves - 1][i][2 * half + 1] + bu1, g.alpha, g.limit);
      } else if (src[r] < 0) {
        continue;  // padding: nobody reads this row's output
      }
      *reinterpret_cast<__nv_bfloat162*>(g.c + int64_t{row0 + r} * g.N + col) =
          __floats2bfloat162_rn(v0, v1);
    }
  }
}

// out[t] = sum over j of weight[t, j] * y[inv_pos[t, j]], eight columns a thread.
__global__ void __launch_bounds__(kCombineThreads)
    CombineKernel(__nv_bfloat16* out, const __nv_bfloat16* y, const float* weights,
                  const int32_t* inv_pos, int hidden, int k) {
  const int64_t t = blockIdx.x;
  const int c = (blockIdx.y * kCombineThreads + threadIdx.x) * 8;
  if (c >= hidden) return;
  float sum[8] = {};
  for (int j = 0; j < k; ++j) {
    const float wt = weights[t * k + j];
    float v[8];
    Unpack(*reinterpret_cast<const Bf16x8*>(y + int64_t{inv_pos[t * k + j]} * hidden + c), v);
#pragma unroll
    for (int e = 0; e < 8; ++e) sum[e] += wt * v[e];
  }
  *reinterpret_cast<Bf16x8*>(out + t * hidden + c) = Pack(sum);
}

template <int BM, bool kGateUp>
void LaunchGemm(const GemmArgs& args, bool clamped, dim3 grid, cudaStream_t stream) {
  if constexpr (kGateUp) {
    if (clamped) {
      ExpertGemmKernel<BM, true, true><<<grid, kGemmThreads, 0, stream>>>(args);
      return;
    }
  }
  ExpertGemmKernel<BM, kGateUp, false><<<grid, kGemmThreads, 0, stream>>>(args);
}

void Gemm(const GemmArgs& args, int bm, bool gate_up, bool clamped, dim3 grid,
          cudaStream_t stream) {
  if (bm == 64) {
    gate_up ? LaunchGemm<64, true>(args, clamped, grid, stream)
            : LaunchGemm<64, false>(args, clamped, grid, stream);
  } else {
    gate_up ? LaunchGemm<16, true>(args, clamped, grid, stream)
            : LaunchGemm<16, false>(args, clamped, grid, stream);
  }
}

Status CheckRouting(int num_tokens, int num_experts, int k) {
  if (num_tokens < 0 || num_experts <= 0 || k <= 0 || k > std::min(num_experts, kMaxTopK)) {
    return Status::InvalidArgument("moe: " + std::to_string(num_experts) + " experts, top-k " +
                                   std::to_string(k) + " (need 0 < k <= min(experts, " +
                                   std::to_string(kMaxTopK) + "))");
  }
  return Status::Ok();
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

size_t MoeWorkspaceBytes(const MoeShape& shape, int max_tokens) {
  return MakeLayout(shape, std::max(max_tokens, 1)).total;
}

Status MoeRoute(int32_t* expert_ids, float* weights, const float* logits, int num_tokens,
                int num_experts, int k, MoeRouting routing, bool renormalize, cudaStream_t stream) {
  Status st = CheckRouting(num_tokens, num_experts, k);
  if (!st.ok()) return st;
  if (num_tokens == 0) return Status::Ok();
  const int grid = CeilDiv(num_tokens, kRouteThreads / 32);
  RouteKernel<<<grid, kRouteThreads, 0, stream>>>(expert_ids, weights, logits, num_tokens,
                                                  num_experts, k,
                                                  routing == MoeRouting::kSoftmaxTopK, renormalize);
  return LaunchStatus("moe_route");
}

Status Moe(bf16* out, const bf16* x, const float* router_logits,
           const MoeExpertWeights<bf16>& weights, const MoeShape& shape, int num_tokens,
           void* workspace, int max_tokens, cudaStream_t stream) {
  const MoeShape& s = shape;
  Status st = CheckRouting(num_tokens, s.num_experts, s.top_k);
  if (!st.ok()) return st;
  if (s.num_experts > kMaxExperts) {
    return Status::InvalidArgument("moe: " + std::to_string(s.num_experts) +
                                   " experts; the alignment takes at most " +
                                   std::to_string(kMaxExperts));
  }
  if (s.activation == MoeActivation::kClampedSwiGlu && !(s.swiglu_limit > 0.0f)) {
    return Status::InvalidArgument("moe: the clamped SwiGLU needs a positive limit");
  }
  if (!Aligned16(x) || !Aligned16(out)) {
    return Status::InvalidArgument("moe: x and out must be 16-byte aligned");
  }
  if (s.hidden <= 0 || s.hidden % 8 != 0 || s.intermediate <= 0 || s.intermediate % 8 != 0) {
    return Status::InvalidArgument("moe: hidden " + std::to_string(s.hidden) +
                                   " and intermediate " + std::to_string(s.intermediate) +
                                   " must be positive multiples of 8");
  }
  if (num_tokens > max_tokens) {
    return Status::InvalidArgument("moe: " + std::to_string(num_tokens) +
                                   " tokens, workspace sized for " + std::to_string(max_tokens));
  }
  if (weights.gate_up == nullptr || weights.down == nullptr || workspace == nullptr ||
      reinterpret_cast<uintptr_t>(workspace) % 256 != 0) {
    return Status::InvalidArgument(
        "moe: need both expert weights and a 256-byte aligned workspace");
  }
  if (num_tokens == 0) return Status::Ok();
  const Layout l = MakeLayout(s, max_tokens);
  char* ws = static_cast<char*>(workspace);
  auto* ids = reinterpret_cast<int32_t*>(ws + l.ids);
  auto* routed = reinterpret_cast<float*>(ws + l.weights);
  auto* tile_expert = reinterpret_cast<int32_t*>(ws + l.tile_expert);
  auto* total_tiles = reinterpret_cast<int32_t*>(ws + l.total_tiles);
  auto* sorted_src = reinterpret_cast<int32_t*>(ws + l.sorted_src);
  auto* inv_pos = reinterpret_cast<int32_t*>(ws + l.inv_pos);
  auto* act = reinterpret_cast<__nv_bfloat16*>(ws + l.act);
  auto* y = reinterpret_cast<__nv_bfloat16*>(ws + l.y);

  st = MoeRoute(ids, routed, router_logits, num_tokens, s.num_experts, s.top_k, s.routing,
                s.renormalize, stream);
  if (!st.ok()) return st;
  const int bm = BlockM(s, num_tokens);
  const int pairs = num_tokens * s.top_k;
  AlignKernel<<<1, kAlignThreads, 0, stream>>>(ids, pairs, s.num_experts, bm, tile_expert,
                                               total_tiles, sorted_src, inv_pos);
  st = LaunchStatus("moe_align");
  if (!st.ok()) return st;

  const bool clamped = s.activation == MoeActivation::kClampedSwiGlu;
  const unsigned tiles = static_cast<unsigned>(MaxTiles(s, num_tokens, bm));
  GemmArgs up{Nv(x),
              Nv(weights.gate_up),
              Nv(weights.gate_up_bias),
              act,
              sorted_src,
              tile_expert,
              total_tiles,
              s.hidden,
              s.intermediate,
              2 * s.intermediate,
              s.top_k,
              s.swiglu_alpha,
              s.swiglu_limit};
  Gemm(up, bm, /*gate_up=*/true, clamped, dim3(tiles, CeilDiv(s.intermediate, kBN)), stream);
  st = LaunchStatus("moe_gate_up");
  if (!st.ok()) return st;
  GemmArgs down{act,         Nv(weights.down), Nv(weights.down_bias), y,        sorted_src,
                tile_expert, total_tiles,      s.intermediate,        s.hidden, s.hidden,
                s.top_k,     s.swiglu_alpha,   s.swiglu_limit};
  Gemm(down, bm, /*gate_up=*/false, clamped, dim3(tiles, CeilDiv(s.hidden, kBN)), stream);
  st = LaunchStatus("moe_down");
  if (!st.ok()) return st;
  const dim3 grid(num_tokens, CeilDiv(s.hidden / 8, kCombineThreads));
  CombineKernel<<<grid, kCombineThreads, 0, stream>>>(Nv(out), y, routed, inv_pos, s.hidden,
                                                      s.top_k);
  return LaunchStatus("moe_combine");
}

}  // namespace sluice::kernels::cuda
