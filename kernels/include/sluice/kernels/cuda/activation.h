// SwiGLU on the GPU: out = silu(gate) * up, x = [gate | up], fp32 arithmetic.
#pragma once

#include "sluice/kernels/dtype.h"
#include "sluice/kernels/status.h"
#include "sluice/kernels/stream.h"

namespace sluice::kernels::cuda {

// REQUIRES: intermediate is a multiple of 8.
Status SiluAndMul(bf16* out,      // [num_tokens, intermediate]
                  const bf16* x,  // [num_tokens, 2 * intermediate]
                  int num_tokens, int intermediate, cudaStream_t stream);

}  // namespace sluice::kernels::cuda
