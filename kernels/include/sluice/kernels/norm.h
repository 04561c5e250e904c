// RMSNorm and fused residual-add + RMSNorm. Llama semantics:
//   y = x / sqrt(mean(x^2) + eps) * weight, computed in fp32.
#pragma once

#include "sluice/kernels/status.h"

namespace sluice::kernels::cpu {

// out[i, :] = RmsNorm(x[i, :]) * weight.
Status RmsNorm(float* out,           // [num_tokens, hidden]
               const float* x,       // [num_tokens, hidden]
               const float* weight,  // [hidden]
               int num_tokens, int hidden, float eps);

// residual += x; x = RmsNorm(residual) * weight. Both buffers are updated in place.
Status FusedAddRmsNorm(float* x,             // [num_tokens, hidden] in: delta, out: normed
                       float* residual,      // [num_tokens, hidden] in/out: running sum
                       const float* weight,  // [hidden]
                       int num_tokens, int hidden, float eps);

}  // namespace sluice::kernels::cpu
