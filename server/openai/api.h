// The OpenAI-compatible HTTP API and the operational endpoints (/health, /ready,
// /metrics, /version, /tokenize, /detokenize) over one ServerState.
#pragma once

#include <memory>
#include <string>
#include <variant>

#include "net/http_server.h"
#include "nlohmann/json.hpp"
#include "server/openai/completion_job.h"
#include "server/openai/protocol.h"
#include "server/openai/server_state.h"
#include "server/openai/tool_calls.h"

namespace sluice::openai {

class Api {
 public:
  explicit Api(ServerState* state) : state_(state) {}

  // Routes one request. Thread safety: called concurrently from the I/O threads.
  void Handle(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer);
  // The metrics port: /metrics, /health, /ready and /version only; anything else 404.
  void HandleAdmin(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer);

 private:
  void Completions(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer,
                   bool chat);
  void Responses(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer);
  // Compiles req.constraint (through the cache) into req.sampling.constraint, or the 400
  // naming the field whose schema, pattern or grammar does not compile.
  std::optional<ApiError> Constrain(CompletionRequest& req) const;
  // tools and tool_choice of a chat-shaped request (chat completions, responses): the
  // plan, and a forced call set as req.constraint; or the 400 naming the field.
  std::optional<ApiError> Tools(CompletionRequest& req, ToolPlan* tools) const;
  void Preflight(const http::Request& req, http::ResponseWriter& w, const std::string& path);
  // One prompt tokenized (a chat template's text already holds its special tokens), or
  // the 400 it earns: not encodable, or max_tokens past what the context leaves.
  std::variant<PreparedPrompt, ApiError> Prepare(PromptInput in, const CompletionRequest& req,
                                                 const char* max_tokens_field) const;
  void Tokenize(const http::Request& req, http::ResponseWriter& w);
  void Detokenize(const http::Request& req, http::ResponseWriter& w);
  void Models(http::ResponseWriter& w);
  nlohmann::json ModelCard() const;
  void TokenizerInfo(http::ResponseWriter& w);
  // The chat template's text for `req`'s messages, or the 400 it earns.
  std::variant<std::string, ApiError> RenderChat(const CompletionRequest& req) const;
  // Answers 503 and returns false unless the model is loaded and not draining.
  bool CheckServing(http::ResponseWriter& w);

  ServerState* state_;
};

}  // namespace sluice::openai
