// Building and sending OpenAI-shaped responses: JSON bodies, SSE events, error objects,
// engine refusals (429 with Retry-After, 503), logprobs.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/api.h"
#include "net/http_server.h"
#include "nlohmann/json.hpp"
#include "server/core/generation.h"
#include "server/openai/protocol.h"
#include "server/openai/server_state.h"
#include "server/tokenizer/tokenizer.h"

namespace sluice::openai {

std::string NewResponseId(const char* prefix);
int64_t UnixSeconds();

// JSON text that never throws: invalid UTF-8 is replaced.
std::string Dump(const nlohmann::json& j);
// One SSE event: "data: <json>\n\n".
std::string SseEvent(const nlohmann::json& j);

void SendJson(http::ResponseWriter& w, int status, const nlohmann::json& body,
              http::Headers headers = {});
void SendError(http::ResponseWriter& w, const ApiError& error, http::Headers headers = {});

// A refusal's answer: invalid 400 naming the field, overloaded 429 with Retry-After and
// retry-after-ms, unavailable 503.
void SendRefusal(http::ResponseWriter& w, const Refusal& refusal);

// OpenAI logprobs for tokens [from, end): the chat form ({"content": [...]}) or the
// completions form ({"tokens", "token_logprobs", "top_logprobs", "text_offset"}).
// Completions offsets start at `offset_base` (the echoed prompt's length).
nlohmann::json LogprobsJson(const Tokenizer& tok, bool chat, const std::vector<int32_t>& ids,
                            const std::vector<TokenLogprobs>& logprobs, size_t from,
                            bool tokens_as_ids = false, size_t offset_base = 0);

// The completions logprobs of an echoed prompt: its first token unscored (null), each
// other scored by `scores` (one per token after the first). Offsets are measured on the
// echoed text, where special tokens show only when `specials_in_text`; at most `top`
// alternatives each. *end receives the offset after the last token.
nlohmann::json EchoLogprobsJson(const Tokenizer& tok, const std::vector<int32_t>& prompt_ids,
                                const std::vector<TokenLogprobs>& scores, int top,
                                bool tokens_as_ids, bool specials_in_text, size_t* end);

// Appends the arrays of completions logprobs `more` to those of `into`.
void AppendLogprobs(nlohmann::json& into, const nlohmann::json& more);

// vLLM's prompt_logprobs: null for the first token, then for each token a map from token
// id to {logprob, rank, decoded_token} holding the token itself and its `top` best
// alternatives.
nlohmann::json PromptLogprobsJson(const Tokenizer& tok, const std::vector<int32_t>& prompt_ids,
                                  const std::vector<TokenLogprobs>& scores, int top);

}  // namespace sluice::openai
