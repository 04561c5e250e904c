// Sampling steps every backend does on the host: penalties over a request's tokens and
// logprobs of the model's distribution. The CUDA runner uses them only for the rows that
// ask for them; plain rows sample on the device.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/sched/request.h"

namespace sluice {

// Whether `p` changes the logits on the host before sampling: penalties, logit_bias,
// allowed_token_ids, bad_words or min_tokens. (A grammar's mask is applied by the
// sampling kernels: kernels::*::ApplyTokenBitmask.)
bool AdjustsLogits(const SamplingParams& p);

// Applies to `logits` [vocab], in this order: repetition (over prompt and output),
// presence and frequency (over output) penalties; logit_bias; allowed_token_ids (all
// others to -inf); bad_words (the last token of a word whose other tokens end the
// output, to -inf); and before min_tokens, `min_tokens_stop_ids` to -inf. `tokens` is
// prompt + output, the last `num_output_tokens` of them the output.
void AdjustLogits(const SamplingParams& p, const std::vector<int32_t>& tokens,
                  int num_output_tokens, const std::vector<int32_t>& min_tokens_stop_ids,
                  float* logits, int vocab);

// The log-probability of `token` and the `top` most likely tokens under softmax(logits).
TokenLogprobs Logprobs(const float* logits, int vocab, int32_t token, int top);

}  // namespace sluice
