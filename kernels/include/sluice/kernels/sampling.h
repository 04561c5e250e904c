// Token sampling from logits. Per row: temperature == 0 is greedy (argmax, lowest id on
// ties). Otherwise logits / temperature -> softmax -> top-k -> top-p (smallest set whose
// mass reaches top_p of the mass top-k kept, i.e. of the distribution renormalised over
// it, as transformers and vLLM apply them) -> min-p (drop p < min_p * p_max) ->
// renormalise -> draw with the Philox uniform of (seed, offset), so a draw depends only
// on its request and step.
#pragma once

#include <cstdint>

#include "sluice/kernels/status.h"

namespace sluice::kernels {

struct SamplingRow {
  float temperature = 1.0f;
  int top_k = 0;       // <= 0 or >= vocab: off
  float top_p = 1.0f;  // 1: off
  float min_p = 0.0f;  // 0: off
  uint64_t seed = 0;
  uint64_t offset = 0;  // the request's step index, so each step draws anew
  // Structured outputs: the row of the step's token bitmask that limits this row's
  // tokens (ApplyTokenBitmask), or -1 for none.
  int32_t mask_row = -1;
};

// Words of a token bitmask row over `vocab` tokens: token t is bit t % 32 of word t / 32.
inline int TokenBitmaskWords(int vocab) { return (vocab + 31) / 32; }

namespace cpu {

Status Sample(int32_t* out_ids,         // [num_rows]
              const float* logits,      // [num_rows, vocab]
              const SamplingRow* rows,  // [num_rows]
              int num_rows, int vocab);

// Constrained decoding, before Sample: row i keeps the logits of the tokens whose bit is
// set in bitmask row rows[i].mask_row ([*, TokenBitmaskWords(vocab)]); the others become
// -inf. Rows with mask_row < 0 are left alone.
Status ApplyTokenBitmask(float* logits,            // [num_rows, vocab], in place
                         const uint32_t* bitmask,  // [masked rows, TokenBitmaskWords(vocab)]
                         const SamplingRow* rows, int num_rows, int vocab);

// Writes the renormalised distribution Sample draws from (zeros for filtered tokens).
// Used by tests of every sampler and by logprob reporting.
Status SamplingProbs(float* probs,         // [vocab]
                     const float* logits,  // [vocab]
                     const SamplingRow& row, int vocab);

}  // namespace cpu
}  // namespace sluice::kernels
