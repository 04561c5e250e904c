// CUDA version of sluice/kernels/random.h: the same values, rounded to bf16.
#pragma once

#include <cstdint>

#include "sluice/kernels/dtype.h"
#include "sluice/kernels/random.h"
#include "sluice/kernels/status.h"
#include "sluice/kernels/stream.h"

namespace sluice::kernels::cuda {

// out[i] = bf16(UniformAt(seed, stream_id, first + i, lo, hi)) for i in [0, n).
Status FillUniform(bf16* out,  // [n]
                   int64_t n, uint64_t seed, uint64_t stream_id, uint64_t first, float lo, float hi,
                   cudaStream_t stream);

// out[i] = value for i in [0, n).
Status Fill(bf16* out,  // [n]
            int64_t n, float value, cudaStream_t stream);

}  // namespace sluice::kernels::cuda
