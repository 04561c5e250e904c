// What the gateway reads of a /v1/completions or /v1/chat/completions body before it
// forwards it, and the body it forwards. Fields are read with the engine's type rules and
// refused in its words, so a client sees the same error through the gateway as without
// it; values the engine would refuse for their range are left for it to refuse.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "nlohmann/json.hpp"

namespace sluice::gateway {

// Text prompts are estimated at this many bytes per token (OpenAI's rule of thumb); token
// id prompts are counted.
inline constexpr int64_t kBytesPerToken = 4;

struct CompletionShape {
  bool stream = false;
  bool client_include_usage = false;     // stream_options.include_usage
  bool client_continuous_usage = false;  // stream_options.continuous_usage_stats
  int64_t num_prompts = 1;
  int64_t n = 1;
  int64_t prompt_tokens = 0;          // estimated, over all prompts
  std::optional<int64_t> max_tokens;  // per sequence, as asked; nullopt: not given
  int64_t sequences() const { return num_prompts * n; }
};

struct FieldError {
  std::string param;  // the field at fault, as OpenAI's error object names it
  std::string message;
};

// REQUIRES: `body` is `raw` parsed, and an object.
std::variant<CompletionShape, FieldError> ReadCompletionShape(const nlohmann::json& body,
                                                              std::string_view raw, bool chat);

// `raw` with `cache_salt` set to `salt` and, for a stream, `stream_options` asking for
// usage in every chunk (include_usage and continuous_usage_stats), the client's other
// stream options kept. Everything else keeps its bytes and order.
// REQUIRES: `raw` is a valid JSON object's text.
std::string RewriteCompletionBody(std::string_view raw, const std::string& salt, bool stream);

}  // namespace sluice::gateway
