// Deterministic uniform values by index: what `--random-weights` fills a model with.
// Value i of stream s under seed k is the same on the CPU and on the GPU (one hash, one
// correctly rounded fma), so both backends run the same random model.
#pragma once

#include <cmath>
#include <cstdint>

#include "sluice/kernels/dtype.h"
#include "sluice/kernels/status.h"

namespace sluice::kernels {

// SplitMix64's finaliser over (seed, stream, index).
inline SLUICE_HOST_DEVICE uint64_t MixIndex(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t z = seed ^ (stream * 0x9e3779b97f4a7c15ull) ^ (index * 0xd1b54a32d192ed03ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [lo, hi): 24 random bits, then lo + (hi - lo) * u in one fma.
inline SLUICE_HOST_DEVICE float UniformAt(uint64_t seed, uint64_t stream, uint64_t index, float lo,
                                          float hi) {
  const float u = static_cast<float>(MixIndex(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(hi - lo, u, lo);
#else
  return std::fma(hi - lo, u, lo);
#endif
}

}  // namespace sluice::kernels

namespace sluice::kernels::cpu {

// out[i] = UniformAt(seed, stream, first + i, lo, hi) for i in [0, n).
Status FillUniform(float* out,  // [n]
                   int64_t n, uint64_t seed, uint64_t stream, uint64_t first, float lo, float hi);

}  // namespace sluice::kernels::cpu
