#include "engine/model/mxfp4.h"

#include <cmath>
#include <limits>

namespace sluice {

float E2m1Value(uint8_t code) {
  const int exponent = (code >> 1) & 3, mantissa = code & 1;
  const float magnitude =
      exponent == 0 ? 0.5f * mantissa : std::ldexp(1.0f + 0.5f * mantissa, exponent - 1);
  return (code & 8) ? -magnitude : magnitude;
}

std::vector<float> DequantizeMxfp4(const uint8_t* blocks, const uint8_t* scales, int64_t rows,
                                   int64_t cols) {
  float lut[16];
  for (int c = 0; c < 16; ++c) lut[c] = E2m1Value(static_cast<uint8_t>(c));
  const int64_t groups = cols / 32;
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const uint8_t s = scales[r * groups + g];
      const float scale = s == 255 ? std::numeric_limits<float>::quiet_NaN()
                                   : std::ldexp(1.0f, static_cast<int>(s) - 127);
      const uint8_t* b = blocks + (r * groups + g) * 16;
      float* o = out.data() + r * cols + g * 32;
      for (int i = 0; i < 16; ++i) {
        o[2 * i] = lut[b[i] & 0x0F] * scale;
        o[2 * i + 1] = lut[b[i] >> 4] * scale;
      }
    }
  }
  return out;
}

}  // namespace sluice
