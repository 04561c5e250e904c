// RMSNorm and fused residual-add + RMSNorm on the GPU; fp32 arithmetic over bf16
// storage (semantics in ../norm.h).
#pragma once

#include "sluice/kernels/dtype.h"
#include "sluice/kernels/status.h"
#include "sluice/kernels/stream.h"

namespace sluice::kernels::cuda {

// REQUIRES: hidden is a multiple of 8 and at most 16384.
Status RmsNorm(bf16* out,           // [num_tokens, hidden]
               const bf16* x,       // [num_tokens, hidden]
               const bf16* weight,  // [hidden]
               int num_tokens, int hidden, float eps, cudaStream_t stream);

// residual += x (rounded to bf16); x = RmsNorm(residual) * weight.
// REQUIRES: as RmsNorm.
Status FusedAddRmsNorm(bf16* x,             // [num_tokens, hidden] in: delta, out: normed
                       bf16* residual,      // [num_tokens, hidden] in/out: running sum
                       const bf16* weight,  // [hidden]
                       int num_tokens, int hidden, float eps, cudaStream_t stream);

}  // namespace sluice::kernels::cuda
