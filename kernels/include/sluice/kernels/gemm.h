// Dense matmul against a weight stored as Hugging Face does, [out_features, in_features]:
//   out[m, n] = sum_k a[m, k] * w[n, k]  (+ bias[n] when given).
#pragma once

#include "sluice/kernels/status.h"

namespace sluice::kernels::cpu {

Status Gemm(float* out,         // [m, n]
            const float* a,     // [m, k]
            const float* w,     // [n, k]
            const float* bias,  // [n] or nullptr
            int m, int n, int k);

}  // namespace sluice::kernels::cpu
