// SwiGLU activation: out = silu(gate) * up, where x = [gate | up] along the last dim.
#pragma once

#include "sluice/kernels/status.h"

namespace sluice::kernels::cpu {

Status SiluAndMul(float* out,      // [num_tokens, intermediate]
                  const float* x,  // [num_tokens, 2 * intermediate]
                  int num_tokens, int intermediate);

}  // namespace sluice::kernels::cpu
