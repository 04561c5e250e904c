// Row gather: the rows of a token batch whose logits are wanted.
#pragma once

#include <cstdint>

#include "sluice/kernels/status.h"

namespace sluice::kernels::cpu {

// out[i, :] = in[rows[i], :]. A row outside [0, num_in_rows) is an error.
Status GatherRows(float* out,           // [num_rows, width]
                  const float* in,      // [num_in_rows, width]
                  const int32_t* rows,  // [num_rows]
                  int num_rows, int num_in_rows, int width);

}  // namespace sluice::kernels::cpu
