#include "sluice/kernels/random.h"

namespace sluice::kernels::cpu {

Status FillUniform(float* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t first, float lo,
                   float hi) {
  if (n < 0 || !(lo <= hi)) return Status::InvalidArgument("fill_uniform: n < 0 or lo > hi");
  for (int64_t i = 0; i < n; ++i) out[i] = UniformAt(seed, stream, first + i, lo, hi);
  return Status::Ok();
}

}  // namespace sluice::kernels::cpu
