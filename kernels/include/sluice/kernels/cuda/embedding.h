// Token embedding gather on the GPU.
#pragma once

#include <cstdint>

#include "sluice/kernels/dtype.h"
#include "sluice/kernels/status.h"
#include "sluice/kernels/stream.h"

namespace sluice::kernels::cuda {

// out[i, :] = table[ids[i], :]. NOTE: the device cannot report a bad id without a
// synchronisation, so ids outside [0, vocab) give a zero row; the engine validates ids
// on the host. REQUIRES: hidden is a multiple of 8.
Status Embedding(bf16* out,           // [num_tokens, hidden]
                 const int32_t* ids,  // [num_tokens]
                 const bf16* table,   // [vocab, hidden]
                 int num_tokens, int vocab, int hidden, cudaStream_t stream);

}  // namespace sluice::kernels::cuda
