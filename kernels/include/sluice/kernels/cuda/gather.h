// CUDA version of sluice/kernels/gather.h.
#pragma once

#include <cstdint>

#include "sluice/kernels/dtype.h"
#include "sluice/kernels/status.h"
#include "sluice/kernels/stream.h"

namespace sluice::kernels::cuda {

// out[i, :] = in[rows[i], :]; rows are trusted (the runner builds them).
// REQUIRES: width a multiple of 8.
Status GatherRows(bf16* out,            // [num_rows, width]
                  const bf16* in,       // [num_in_rows, width]
                  const int32_t* rows,  // [num_rows] (device memory)
                  int num_rows, int width, cudaStream_t stream);

}  // namespace sluice::kernels::cuda
