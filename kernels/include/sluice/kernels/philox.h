// Philox4x32-10 counter-based generator (Salmon et al., SC'11), usable on host and
// device so that a request's draws depend only on (seed, offset), never on batch order.
#pragma once

#include <cstdint>

#include "sluice/kernels/dtype.h"

namespace sluice::kernels {

struct Philox4 {
  uint32_t v[4];
};

inline SLUICE_HOST_DEVICE Philox4 Philox4x32(uint64_t key64, uint64_t counter_hi,
                                             uint64_t counter_lo) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(key64), k1 = static_cast<uint32_t>(key64 >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kM0) * c0;
    uint64_t p1 = static_cast<uint64_t>(kM1) * c2;
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += kW0;
    k1 += kW1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// A uniform float in [0, 1) from 24 random bits.
inline SLUICE_HOST_DEVICE float UniformFromBits(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// The uniform draw for one request at one decoding step.
inline SLUICE_HOST_DEVICE float PhiloxUniform(uint64_t seed, uint64_t offset) {
  return UniformFromBits(Philox4x32(seed, 0, offset).v[0]);
}

}  // namespace sluice::kernels
