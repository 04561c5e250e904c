// Sampling steps every backend does on the host: penalties over a request's tokens and
// logprobs of the model's distribution. The CUDA runner uses them only for the rows that
// ask for them; plain rows sample on the device.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/sched/request.h"

namespace sluice {

// Whether `p` asks for any penalty.
bool HasPenalties(const SamplingParams& p);

// Applies repetition (over prompt and output), presence and frequency (over output)
// penalties to `logits` [vocab]. `tokens` is prompt + output, the last
// `num_output_tokens` of them the output.
void ApplyPenalties(const SamplingParams& p, const std::vector<int32_t>& tokens,
                    int num_output_tokens, float* logits, int vocab);

// The log-probability of `token` and the `top` most likely tokens under softmax(logits).
TokenLogprobs Logprobs(const float* logits, int vocab, int32_t token, int top);

}  // namespace sluice
