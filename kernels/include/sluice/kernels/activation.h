// SwiGLU activations, x = [gate | up] along the last dim: out = silu(gate) * up, and
// gpt-oss's clamped variant.
#pragma once

#include "sluice/kernels/status.h"

namespace sluice::kernels::cpu {

Status SiluAndMul(float* out,      // [num_tokens, intermediate]
                  const float* x,  // [num_tokens, 2 * intermediate]
                  int num_tokens, int intermediate);

// gpt-oss's clamped SwiGLU: g = min(gate, limit), u = clamp(up, -limit, limit),
// out = (u + 1) * g * sigmoid(alpha * g).
Status ClampedSwiGlu(float* out,      // [num_tokens, intermediate]
                     const float* x,  // [num_tokens, 2 * intermediate]: gate, then up
                     int num_tokens, int intermediate, float alpha, float limit);

}  // namespace sluice::kernels::cpu
