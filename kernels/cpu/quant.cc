#include "sluice/kernels/quant.h"

#include <algorithm>
#include <cmath>

#include "sluice/kernels/dtype.h"

namespace sluice::kernels {

float Fp8DynamicScale(float amax) {
  const float s = amax / kFp8E4m3Max;
  return s > 0.0f ? s : 1.0f;  // zeros, or an amax so small its quotient is 0
}

namespace cpu {

Status QuantizeDequantizeFp8(float* out, const float* x, int64_t rows, int64_t cols, int64_t group,
                             float static_scale, float* scales) {
  if (rows < 0 || cols <= 0 || group < 0) {
    return Status::InvalidArgument("quantize_fp8: bad shape");
  }
  if (!(static_scale >= 0.0f) || !std::isfinite(static_scale)) {
    return Status::InvalidArgument("quantize_fp8: the static scale must be finite and >= 0");
  }
  const int64_t g = group == 0 || group >= cols ? cols : group;
  const int64_t groups = (cols + g - 1) / g;
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    float* o = out + r * cols;
    for (int64_t j = 0; j < groups; ++j) {
      const int64_t lo = j * g, hi = std::min(cols, lo + g);
      float s = static_scale;
      if (s == 0.0f) {
        float amax = 0.0f;
        for (int64_t c = lo; c < hi; ++c) amax = std::max(amax, std::fabs(in[c]));
        s = Fp8DynamicScale(amax);
      }
      if (scales != nullptr) scales[r * groups + j] = s;
      for (int64_t c = lo; c < hi; ++c) o[c] = Fp8E4m3ToFloat(FloatToFp8E4m3(in[c] / s)) * s;
    }
  }
  return Status::Ok();
}

}  // namespace cpu
}  // namespace sluice::kernels
