// Sampling, one CTA per row. Probabilities are never sorted: each filter is a threshold
// on a monotone 32-bit key of the scaled logit x = (logit - max) / T, found by a 4-pass
// radix selection (8 bits a pass) over per-warp histograms of counts (top-k) or of
// exp(x) (top-p). The draw is an inverse CDF over token ids in ascending order.
// NOTE: histogram masses are summed with shared-memory atomics, so a top-p threshold
// that falls on a near-tie of masses may differ between runs in the last float bit.
#include <cmath>
#include <string>

#include "common.cuh"
#include "sluice/kernels/cuda/sampling.h"
#include "sluice/kernels/philox.h"

namespace sluice::kernels::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;

// Monotone: x < y  <=>  Key(x) < Key(y), for non-NaN floats.
__device__ __forceinline__ uint32_t Key(float x) {
  const uint32_t u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

struct SampleSmem {
  float hist[kWarps][kBins];
  float bins[kBins];
  float scratch[32];
  float target;
  int bin;
  int found;
  int chosen;
  int last_kept;
};

// Warp 0: the highest bin b at which the weight of bins >= b reaches target. Stores b
// and target minus the weight above b; found = 0 when even all bins weigh less.
__device__ void PickBin(float target, bool first_pass, SampleSmem& sm) {
  const int lane = threadIdx.x & 31;
  // Lane l owns bins 255 - 8l down to 248 - 8l.
  float own = 0.0f;
  for (int j = 0; j < 8; ++j) own += sm.bins[255 - 8 * lane - j];
  float incl = own;
  for (int o = 1; o < 32; o <<= 1) {
    const float v = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += v;
  }
  const float total = __shfl_sync(0xffffffffu, incl, 31);
  float above = incl - own;
  int bin = -1;
  for (int j = 0; j < 8 && bin < 0; ++j) {
    const float h = sm.bins[255 - 8 * lane - j];
    if (h > 0.0f && above + h >= target) {
      bin = 255 - 8 * lane - j;
    } else {
      above += h;
    }
  }
  int found = 1;
  const uint32_t hits = __ballot_sync(0xffffffffu, bin >= 0);
  if (hits != 0) {
    const int src = __ffs(hits) - 1;
    bin = __shfl_sync(0xffffffffu, bin, src);
    above = __shfl_sync(0xffffffffu, above, src);
  } else {
    // The whole set is lighter than target (first pass), or rounding left later passes a
    // hair short: then the lowest non-empty bin holds the answer.
    int low = kBins;
    for (int b = lane; b < kBins; b += 32) {
      if (sm.bins[b] > 0.0f) low = min(low, b);
    }
    for (int o = 16; o > 0; o >>= 1) low = min(low, __shfl_xor_sync(0xffffffffu, low, o));
    found = !first_pass && low < kBins;
    bin = low < kBins ? low : 0;
    above = total - sm.bins[bin];
  }
  if (lane == 0) {
    sm.bin = bin;
    sm.target = target - above;
    sm.found = found;
  }
}

// The largest key K such that the weight of {key >= K} ∩ {key >= floor_key} reaches
// target, weight being 1 per token (kCount) or exp(x). Returns floor_key when that whole
// set weighs less than target.
template <bool kCount>
__device__ uint32_t RadixSelect(const float* logits, int vocab, float max_logit, float inv_t,
                                uint32_t floor_key, float target, SampleSmem& sm) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  uint32_t prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = lane; b < kBins; b += 32) sm.hist[warp][b] = 0.0f;
    __syncwarp();
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const float x = (logits[i] - max_logit) * inv_t;
      const uint32_t key = Key(x);
      if (key >= floor_key && (key & mask) == prefix) {
        atomicAdd(&sm.hist[warp][(key >> shift) & 0xffu], kCount ? 1.0f : __expf(x));
      }
    }
    __syncthreads();
    if (threadIdx.x < kBins) {
      float s = 0.0f;
      for (int w = 0; w < kWarps; ++w) s += sm.hist[w][threadIdx.x];
      sm.bins[threadIdx.x] = s;
    }
    __syncthreads();
    if (warp == 0) PickBin(shift == 24 ? target : sm.target, shift == 24, sm);
    __syncthreads();
    if (!sm.found) return floor_key;
    prefix |= static_cast<uint32_t>(sm.bin) << shift;
    mask |= 0xffu << shift;
    __syncthreads();  // sm.bin and sm.target are rewritten by the next pass
  }
  return prefix > floor_key ? prefix : floor_key;
}

// Lowest index of the largest logit.
__device__ int Argmax(const float* logits, int vocab, SampleSmem& sm) {
  float best = -INFINITY;
  int idx = vocab;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    if (logits[i] > best) {
      best = logits[i];
      idx = i;
    }
  }
  WarpArgmax(best, idx);
  if (threadIdx.x == 0) sm.chosen = vocab;
  __syncthreads();
  const float row_max = BlockMax(best, sm.scratch);
  if (best == row_max) atomicMin(&sm.chosen, idx);
  __syncthreads();
  return sm.chosen < vocab ? sm.chosen : 0;
}

// Inverse CDF over ids ascending, among tokens with Key(x) >= threshold. Each thread owns
// a contiguous segment; a block scan of segment masses finds the segment holding u.
__device__ int Draw(const float* logits, int vocab, float max_logit, float inv_t,
                    uint32_t threshold, float u, SampleSmem& sm) {
  const int seg = (vocab + kThreads - 1) / kThreads;
  const int begin = min(vocab, static_cast<int>(threadIdx.x) * seg);
  const int end = min(vocab, begin + seg);
  float own = 0.0f;
  int last = -1;
  for (int i = begin; i < end; ++i) {
    const float x = (logits[i] - max_logit) * inv_t;
    if (Key(x) >= threshold) {
      own += __expf(x);
      last = i;
    }
  }
  if (threadIdx.x == 0) {
    sm.chosen = vocab;
    sm.last_kept = -1;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float incl = own;
  for (int o = 1; o < 32; o <<= 1) {
    const float v = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += v;
  }
  __syncthreads();
  if (lane == 31) sm.scratch[warp] = incl;
  if (last >= 0) atomicMax(&sm.last_kept, last);
  __syncthreads();
  float warp_prefix = 0.0f, total = 0.0f;
  for (int w = 0; w < kWarps; ++w) {
    if (w < warp) warp_prefix += sm.scratch[w];
    total += sm.scratch[w];
  }
  const float target = u * total;
  float c = warp_prefix + incl - own;
  if (own > 0.0f && c <= target && target < c + own) {
    int pick = last;
    for (int i = begin; i < end; ++i) {
      const float x = (logits[i] - max_logit) * inv_t;
      if (Key(x) < threshold) continue;
      c += __expf(x);
      if (target < c) {
        pick = i;
        break;
      }
    }
    atomicMin(&sm.chosen, pick);
  }
  __syncthreads();
  return sm.chosen < vocab ? sm.chosen : sm.last_kept;
}

__global__ void __launch_bounds__(kThreads)
    SampleKernel(int32_t* out_ids, const float* logits, const SamplingRow* rows, int vocab) {
  __shared__ SampleSmem sm;
  const float* row_logits = logits + int64_t{blockIdx.x} * vocab;
  const SamplingRow row = rows[blockIdx.x];
  if (!(row.temperature > 0.0f)) {
    const int id = Argmax(row_logits, vocab, sm);
    if (threadIdx.x == 0) out_ids[blockIdx.x] = id;
    return;
  }
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < vocab; i += kThreads) mx = fmaxf(mx, row_logits[i]);
  mx = BlockMax(mx, sm.scratch);
  const float inv_t = 1.0f / row.temperature;
  float z = 0.0f;
  for (int i = threadIdx.x; i < vocab; i += kThreads) z += __expf((row_logits[i] - mx) * inv_t);
  z = BlockSum(z, sm.scratch);

  uint32_t threshold = 0;
  if (row.top_k > 0 && row.top_k < vocab) {
    threshold =
        RadixSelect<true>(row_logits, vocab, mx, inv_t, 0, static_cast<float>(row.top_k), sm);
  }
  if (row.top_p < 1.0f) {
    // top_p of the mass top-k kept (the distribution renormalised over it), as the CPU
    // sampler, transformers and vLLM define it.
    float kept = z;
    if (threshold != 0) {
      kept = 0.0f;
      for (int i = threadIdx.x; i < vocab; i += kThreads) {
        const float x = (row_logits[i] - mx) * inv_t;
        if (Key(x) >= threshold) kept += __expf(x);
      }
      kept = BlockSum(kept, sm.scratch);
    }
    threshold = RadixSelect<false>(row_logits, vocab, mx, inv_t, threshold, row.top_p * kept, sm);
  }
  if (row.min_p > 0.0f) {
    // p >= min_p * p_max  <=>  x >= log(min_p), as x of the top token is 0.
    threshold = max(threshold, Key(logf(fminf(row.min_p, 1.0f))));
  }
  const float u = PhiloxUniform(row.seed, row.offset);
  const int id = Draw(row_logits, vocab, mx, inv_t, threshold, u, sm);
  if (threadIdx.x == 0) out_ids[blockIdx.x] = id;
}

// One thread per bitmask word (32 tokens); blockIdx.y is the row.
__global__ void ApplyTokenBitmaskKernel(float* logits, const uint32_t* bitmask,
                                        const SamplingRow* rows, int vocab, int words) {
  const int mask_row = rows[blockIdx.y].mask_row;
  const int w = blockIdx.x * blockDim.x + threadIdx.x;
  if (mask_row < 0 || w >= words) return;
  const uint32_t bits = bitmask[int64_t{mask_row} * words + w];
  if (bits == 0xffffffffu) return;
  float* row = logits + int64_t{blockIdx.y} * vocab;
  const int end = min(vocab, (w + 1) * 32);
  for (int t = w * 32; t < end; ++t) {
    if (!((bits >> (t & 31)) & 1u)) row[t] = -INFINITY;
  }
}

}  // namespace

Status ApplyTokenBitmask(float* logits, const uint32_t* bitmask, const SamplingRow* rows,
                         int num_rows, int vocab, cudaStream_t stream) {
  if (num_rows < 0 || vocab <= 0) {
    return Status::InvalidArgument("token bitmask: vocab must be positive, num_rows >= 0");
  }
  if (num_rows == 0) return Status::Ok();
  const int words = TokenBitmaskWords(vocab);
  constexpr int kWordsPerBlock = 256;
  const dim3 grid((words + kWordsPerBlock - 1) / kWordsPerBlock, num_rows);
  ApplyTokenBitmaskKernel<<<grid, kWordsPerBlock, 0, stream>>>(logits, bitmask, rows, vocab, words);
  return LaunchStatus("token bitmask");
}

Status Sample(int32_t* out_ids, const float* logits, const SamplingRow* rows, int num_rows,
              int vocab, cudaStream_t stream) {
  if (num_rows < 0 || vocab <= 0) {
    return Status::InvalidArgument("sampling: vocab must be positive, num_rows >= 0");
  }
  if (num_rows == 0) return Status::Ok();
  SampleKernel<<<num_rows, kThreads, 0, stream>>>(out_ids, logits, rows, vocab);
  return LaunchStatus("sampling");
}

}  // namespace sluice::kernels::cuda
