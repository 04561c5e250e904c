// FP8 (E4M3) quantization of activations, as a W8A8 GEMM reads its input: each row is
// split into groups of columns, each group gets one scale, and every value becomes the
// E4M3 code of value / scale. The CPU reference returns the dequantized values
// (code * scale), so that an fp32 GEMM over them computes what the FP8 GEMM computes.
#pragma once

#include <cstdint>

#include "sluice/kernels/status.h"

namespace sluice::kernels {

// A group's dynamic scale: amax / 448 (rounded to fp32 before the values are divided by
// it), or 1 where that is 0 (a group of zeros, or of values too small to scale).
float Fp8DynamicScale(float amax);

namespace cpu {

// out[r, c] = Fp8E4m3ToFloat(FloatToFp8E4m3(x[r, c] / s)) * s, with
//   s = static_scale                         when static_scale > 0 (one scale for all),
//   s = Fp8DynamicScale(amax of the group)   otherwise, the group being columns
//       [g * group, (g + 1) * group) of row r (the whole row when group == 0 or >= cols).
// `scales`, when not null, receives each row's scales: [rows, ceil(cols / group)].
// out may be x.
Status QuantizeDequantizeFp8(float* out, const float* x, int64_t rows, int64_t cols, int64_t group,
                             float static_scale, float* scales = nullptr);

}  // namespace cpu
}  // namespace sluice::kernels
