// Token sampling on the GPU, one CTA per row, with the semantics of ../sampling.h:
// greedy at temperature 0, else softmax(logits / T) filtered by top-k, top-p (on the
// unfiltered probabilities, as the CPU reference) and min-p, then an inverse-CDF draw
// over token ids in ascending order with the row's Philox uniform. The filters find
// their probability thresholds by radix selection over the row (no sort).
// NOTE: ties at a top-k threshold keep every tied token.
#pragma once

#include <cstdint>

#include "sluice/kernels/sampling.h"
#include "sluice/kernels/status.h"
#include "sluice/kernels/stream.h"

namespace sluice::kernels::cuda {

Status Sample(int32_t* out_ids,         // [num_rows]
              const float* logits,      // [num_rows, vocab]
              const SamplingRow* rows,  // [num_rows] (device memory)
              int num_rows, int vocab, cudaStream_t stream);

// Constrained decoding, with the semantics of cpu::ApplyTokenBitmask: row i keeps the
// tokens set in bitmask row rows[i].mask_row, the rest of its logits become -inf.
Status ApplyTokenBitmask(float* logits,            // [num_rows, vocab], in place
                         const uint32_t* bitmask,  // [masked rows, TokenBitmaskWords(vocab)]
                         const SamplingRow* rows,  // [num_rows] (device memory)
                         int num_rows, int vocab, cudaStream_t stream);

}  // namespace sluice::kernels::cuda
