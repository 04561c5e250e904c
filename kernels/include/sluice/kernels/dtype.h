// Storage types shared by host and device code: bf16 (layout-compatible with
// __nv_bfloat16, so device code may reinterpret_cast between the two) and FP8 E4M3 codes.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SLUICE_HOST_DEVICE __host__ __device__
#else
#define SLUICE_HOST_DEVICE
#endif

namespace sluice::kernels {

struct bf16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2);

// Round to nearest even; NaN stays NaN.
inline SLUICE_HOST_DEVICE bf16 FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<uint16_t>((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>(u >> 16)};
}

inline SLUICE_HOST_DEVICE float Bf16ToFloat(bf16 h) {
  uint32_t u = static_cast<uint32_t>(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// IEEE half to float (used when loading F16 checkpoints).
inline float HalfBitsToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        mant <<= 1;
        ++e;
      } while ((mant & 0x400u) == 0);
      u = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | mant << 13;
  } else {
    u = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// FP8 E4M3 as FP8 checkpoints and __nv_fp8_e4m3 store it ("e4m3fn"): sign, 4 exponent
// bits of bias 7, 3 mantissa bits; no infinities, S.1111.111 is NaN. Largest finite
// value 448, smallest normal 2^-6, smallest subnormal 2^-9.
inline constexpr float kFp8E4m3Max = 448.0f;

inline SLUICE_HOST_DEVICE float Fp8E4m3ToFloat(uint8_t code) {
  const uint32_t sign = static_cast<uint32_t>(code & 0x80u) << 24;
  const uint32_t exp = (code >> 3) & 0xfu, man = code & 0x7u;
  uint32_t u;
  if (exp == 0xfu && man == 0x7u) {
    u = sign | 0x7fc00000u;
  } else if (exp == 0) {  // man * 2^-9, exactly
    float f = static_cast<float>(man) * (1.0f / 512.0f);
    std::memcpy(&u, &f, sizeof(u));
    u |= sign;
  } else {
    u = sign | (exp + 120u) << 23 | man << 20;
  }
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// Round to nearest even, saturating: magnitudes of 448 and above (infinity too) give
// ±448, as the quantizers clamp before converting; NaN gives NaN.
inline SLUICE_HOST_DEVICE uint8_t FloatToFp8E4m3(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return sign | 0x7fu;
  if (u >= 0x43e00000u) return sign | 0x7eu;  // 448
  if (u >= 0x3c800000u) {                     // 2^-6 and up: normal, keep 3 mantissa bits
    const uint32_t r = u + 0x7ffffu + ((u >> 20) & 1u);
    return sign | static_cast<uint8_t>((r >> 20) - (120u << 3));
  }
  // Subnormal: the multiple of 2^-9 nearest |f| (8 of them is 2^-6, code 0x08).
  const uint32_t exp = u >> 23;
  if (exp < 117) return sign;  // under 2^-10, half the smallest subnormal
  const uint32_t m = (u & 0x7fffffu) | 0x800000u, shift = 141u - exp;
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u) != 0)) ++q;
  return sign | static_cast<uint8_t>(q);
}

}  // namespace sluice::kernels
