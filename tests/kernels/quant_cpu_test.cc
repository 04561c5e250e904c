// FP8 E4M3 codes and the activation quantization reference: every code against its
// definition, rounding against the nearest finite value found by search, and the row and
// group scales of QuantizeDequantizeFp8.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "sluice/kernels/dtype.h"
#include "sluice/kernels/quant.h"

namespace sluice::kernels {
namespace {

// The value code c stands for, from the format's definition.
double Definition(int c) {
  const int exp = (c >> 3) & 0xf, man = c & 7;
  const double sign = (c & 0x80) != 0 ? -1.0 : 1.0;
  if (exp == 0) return sign * man * std::ldexp(1.0, -9);
  return sign * (1.0 + man / 8.0) * std::ldexp(1.0, exp - 7);
}

TEST(Fp8E4m3Test, EveryCodeDecodesToItsDefinition) {
  for (int c = 0; c < 256; ++c) {
    const float v = Fp8E4m3ToFloat(static_cast<uint8_t>(c));
    if ((c & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(v)) << c;
      continue;
    }
    EXPECT_EQ(v, Definition(c)) << c;
    EXPECT_EQ(std::signbit(v), (c & 0x80) != 0) << c;
    EXPECT_EQ(FloatToFp8E4m3(v), c) << "round trip of code " << c;
  }
  EXPECT_EQ(Fp8E4m3ToFloat(0x7e), kFp8E4m3Max);
  EXPECT_EQ(Fp8E4m3ToFloat(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(Fp8E4m3ToFloat(0x08), std::ldexp(1.0f, -6));
}

// The code search finds for x: the nearest finite magnitude (the even code on a tie),
// saturating at 448.
uint8_t Nearest(float x) {
  const double a = std::fabs(static_cast<double>(x));
  int best = 0;
  for (int c = 1; c <= 0x7e; ++c) {
    const double d = std::fabs(Definition(c) - a), db = std::fabs(Definition(best) - a);
    if (d < db || (d == db && c % 2 == 0)) best = c;
  }
  return static_cast<uint8_t>(best | (std::signbit(x) ? 0x80 : 0));
}

TEST(Fp8E4m3Test, RoundsToTheNearestValueTiesToEven) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> exponent(-12.0f, 9.5f);
  for (int i = 0; i < 20000; ++i) {
    const float x = (i % 2 == 0 ? 1.0f : -1.0f) * std::exp2(exponent(rng));
    ASSERT_EQ(FloatToFp8E4m3(x), Nearest(x)) << x;
  }
  // Every midpoint between neighbouring codes is a tie, and goes to the even code.
  for (int c = 0; c < 0x7e; ++c) {
    const float mid = static_cast<float>((Definition(c) + Definition(c + 1)) / 2);
    EXPECT_EQ(FloatToFp8E4m3(mid), (c % 2 == 0 ? c : c + 1)) << mid;
    EXPECT_EQ(FloatToFp8E4m3(-mid), 0x80 | (c % 2 == 0 ? c : c + 1)) << -mid;
  }
  EXPECT_EQ(FloatToFp8E4m3(460.0f), 0x7e);  // saturates
  EXPECT_EQ(FloatToFp8E4m3(-1e30f), 0xfe);
  EXPECT_EQ(FloatToFp8E4m3(std::numeric_limits<float>::infinity()), 0x7e);
  EXPECT_EQ(FloatToFp8E4m3(std::nanf("")) & 0x7f, 0x7f);
  EXPECT_EQ(FloatToFp8E4m3(std::ldexp(1.0f, -10)), 0x00);  // half the smallest: to even 0
  EXPECT_EQ(FloatToFp8E4m3(std::ldexp(1.01f, -10)), 0x01);
  EXPECT_EQ(FloatToFp8E4m3(1e-30f), 0x00);
}

TEST(QuantizeFp8Test, EachRowScalesItsLargestValueTo448) {
  const std::vector<float> x = {1.0f, -3.5f, 0.1f,  2.0f,  // amax 3.5
                                0.0f, 0.0f,  0.0f,  0.0f,  // zeros: scale 1
                                8e3f, 1.0f,  -2.0f, 5.0f};
  std::vector<float> out(x.size()), scales(3);
  ASSERT_TRUE(cpu::QuantizeDequantizeFp8(out.data(), x.data(), 3, 4, 0, 0.0f, scales.data()).ok());
  EXPECT_FLOAT_EQ(scales[0], 3.5f / 448.0f);
  EXPECT_EQ(scales[1], 1.0f);
  EXPECT_FLOAT_EQ(scales[2], 8e3f / 448.0f);
  for (int i = 0; i < 12; ++i) {
    const float s = scales[i / 4];
    EXPECT_EQ(out[i], Fp8E4m3ToFloat(FloatToFp8E4m3(x[i] / s)) * s) << i;
  }
  EXPECT_FLOAT_EQ(out[1], -3.5f);  // the row's largest value is exact
  EXPECT_EQ(out[4], 0.0f);
  // 1 in a row scaled by 8000 / 448: the nearest step is 1.0045 (code 0x08 * 17.86).
  EXPECT_NEAR(out[9], 1.0f, 0.07f);
  EXPECT_NE(out[9], 1.0f);
}

TEST(QuantizeFp8Test, GroupsAndStaticScales) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  const int rows = 3, cols = 300, group = 128;  // the last group is partial
  std::vector<float> x(rows * cols), out(x.size()), scales(rows * 3);
  for (float& v : x) v = normal(rng);
  ASSERT_TRUE(
      cpu::QuantizeDequantizeFp8(out.data(), x.data(), rows, cols, group, 0.0f, scales.data())
          .ok());
  for (int r = 0; r < rows; ++r) {
    for (int g = 0; g < 3; ++g) {
      float amax = 0.0f;
      for (int c = g * group; c < std::min(cols, (g + 1) * group); ++c) {
        amax = std::max(amax, std::fabs(x[r * cols + c]));
      }
      EXPECT_EQ(scales[r * 3 + g], amax / 448.0f) << r << " " << g;
    }
  }
  // A static scale clamps what lies beyond 448 of it.
  const float s = 0.01f;  // up to 4.48
  ASSERT_TRUE(cpu::QuantizeDequantizeFp8(out.data(), x.data(), rows, cols, 0, s).ok());
  for (size_t i = 0; i < x.size(); ++i) {
    const float want = Fp8E4m3ToFloat(FloatToFp8E4m3(x[i] / s)) * s;
    ASSERT_EQ(out[i], want) << i;
    ASSERT_LE(std::fabs(out[i]), 4.48f + 1e-5f);
  }
  // In place gives the same.
  std::vector<float> y = x;
  ASSERT_TRUE(cpu::QuantizeDequantizeFp8(y.data(), y.data(), rows, cols, 0, s).ok());
  EXPECT_EQ(y, out);
  EXPECT_FALSE(cpu::QuantizeDequantizeFp8(out.data(), x.data(), 1, 0, 0, 0.0f).ok());
  EXPECT_FALSE(cpu::QuantizeDequantizeFp8(out.data(), x.data(), 1, 4, 0, -1.0f).ok());
  EXPECT_FALSE(cpu::QuantizeDequantizeFp8(out.data(), x.data(), 1, 4, 0, NAN).ok());
}

}  // namespace
}  // namespace sluice::kernels
