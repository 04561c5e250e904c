#include "sluice/kernels/activation.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace sluice::kernels::cpu {

Status SiluAndMul(float* out, const float* x, int num_tokens, int intermediate) {
  if (num_tokens < 0 || intermediate <= 0) {
    return Status::InvalidArgument("silu_and_mul: bad shape");
  }
  for (int t = 0; t < num_tokens; ++t) {
    const float* gate = x + int64_t{t} * 2 * intermediate;
    const float* up = gate + intermediate;
    float* o = out + int64_t{t} * intermediate;
    for (int i = 0; i < intermediate; ++i) {
      const float g = gate[i];
      o[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  }
  return Status::Ok();
}

Status ClampedSwiGlu(float* out, const float* x, int num_tokens, int intermediate, float alpha,
                     float limit) {
  if (num_tokens < 0 || intermediate <= 0 || !(limit > 0.0f)) {
    return Status::InvalidArgument("clamped_swiglu: bad shape or limit");
  }
  for (int t = 0; t < num_tokens; ++t) {
    const float* gate = x + int64_t{t} * 2 * intermediate;
    const float* up = gate + intermediate;
    float* o = out + int64_t{t} * intermediate;
    for (int i = 0; i < intermediate; ++i) {
      const float g = std::min(gate[i], limit);
      const float u = std::clamp(up[i], -limit, limit);
      o[i] = (u + 1.0f) * (g / (1.0f + std::exp(-alpha * g)));
    }
  }
  return Status::Ok();
}

}  // namespace sluice::kernels::cpu
