#include "sluice/kernels/norm.h"

#include <cmath>

namespace sluice::kernels::cpu {
namespace {

void NormRow(float* out, const float* x, const float* weight, int hidden, float eps) {
  float sum_sq = 0.0f;
  for (int i = 0; i < hidden; ++i) sum_sq += x[i] * x[i];
  const float inv_rms = 1.0f / std::sqrt(sum_sq / static_cast<float>(hidden) + eps);
  for (int i = 0; i < hidden; ++i) out[i] = weight[i] * (x[i] * inv_rms);
}

Status CheckShape(int num_tokens, int hidden) {
  if (num_tokens < 0 || hidden <= 0) {
    return Status::InvalidArgument("rms_norm: num_tokens must be >= 0 and hidden > 0");
  }
  return Status::Ok();
}

}  // namespace

Status RmsNorm(float* out, const float* x, const float* weight, int num_tokens, int hidden,
               float eps) {
  if (Status s = CheckShape(num_tokens, hidden); !s.ok()) return s;
  for (int t = 0; t < num_tokens; ++t) {
    NormRow(out + int64_t{t} * hidden, x + int64_t{t} * hidden, weight, hidden, eps);
  }
  return Status::Ok();
}

Status FusedAddRmsNorm(float* x, float* residual, const float* weight, int num_tokens, int hidden,
                       float eps) {
  if (Status s = CheckShape(num_tokens, hidden); !s.ok()) return s;
  for (int t = 0; t < num_tokens; ++t) {
    float* xr = x + int64_t{t} * hidden;
    float* rr = residual + int64_t{t} * hidden;
    for (int i = 0; i < hidden; ++i) rr[i] += xr[i];
    NormRow(xr, rr, weight, hidden, eps);
  }
  return Status::Ok();
}

}  // namespace sluice::kernels::cpu
