// OpenAI request parsing and validation for /v1/completions and /v1/chat/completions.
// Every refusal names the offending parameter, as OpenAI's error object does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "engine/api.h"
#include "nlohmann/json.hpp"
#include "server/core/constraints.h"

namespace sluice::openai {

// An API error: HTTP status, OpenAI error type, message, and the parameter at fault.
struct ApiError {
  int status = 400;
  std::string type = "invalid_request_error";
  std::string message;
  std::string param;
  nlohmann::json ToJson() const;
};

// A prompt as given: text, or token ids.
using PromptInput = std::variant<std::string, std::vector<int32_t>>;

struct CompletionRequest {
  bool chat = false;
  std::string model;
  std::vector<PromptInput> prompts;  // completions: one or more; chat: filled after rendering
  // Chat only, in the client's key order (the template's tojson reproduces it).
  nlohmann::ordered_json messages;
  nlohmann::ordered_json tools;
  nlohmann::ordered_json tool_choice;  // as given; the API plans it (tool_calls.h)
  std::optional<bool> parallel_tool_calls;
  nlohmann::ordered_json chat_template_kwargs = nlohmann::ordered_json::object();
  bool add_generation_prompt = true;
  SamplingParams sampling;
  int n = 1;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  bool continuous_usage = false;  // usage in every chunk (vLLM's continuous_usage_stats)
  bool echo = false;
  int logprobs = -1;                        // number of top logprobs per token; -1: none
  int prompt_logprobs = -1;                 // vLLM's prompt_logprobs field; -1: not asked
  bool max_tokens_given = false;            // the client set max_tokens (or max_completion_tokens)
  bool max_tokens_from_completion = false;  // chat: it was max_completion_tokens
  bool include_stop_str_in_output = false;
  bool return_tokens_as_token_ids = false;  // logprobs name tokens "token_id:<id>"
  std::vector<std::string> bad_words;       // tokenized with the prompt
  std::string cache_salt;
  int priority = 0;
  // Structured outputs: response_format, structured_outputs or guided_*; compiled by
  // the API (ConstraintCache) into sampling.constraint.
  std::optional<ConstraintSpec> constraint;
};

// A response_format object (chat, completions, and the Responses API's text.format,
// whose json_schema fields sit at the top) as a constraint; nullopt for text. `field`
// names it in errors.
std::variant<std::optional<ConstraintSpec>, ApiError> ParseResponseFormat(
    const nlohmann::ordered_json& format, const std::string& field, bool flat_schema);

// Parses a JSON body. `chat` selects the chat schema.
std::variant<CompletionRequest, ApiError> ParseCompletionRequest(const std::string& body,
                                                                 bool chat);

}  // namespace sluice::openai
