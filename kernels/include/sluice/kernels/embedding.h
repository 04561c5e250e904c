// Token embedding gather.
#pragma once

#include <cstdint>

#include "sluice/kernels/status.h"

namespace sluice::kernels::cpu {

// out[i, :] = table[ids[i], :]. Ids outside [0, vocab) are an error.
Status Embedding(float* out,          // [num_tokens, hidden]
                 const int32_t* ids,  // [num_tokens]
                 const float* table,  // [vocab, hidden]
                 int num_tokens, int vocab, int hidden);

}  // namespace sluice::kernels::cpu
