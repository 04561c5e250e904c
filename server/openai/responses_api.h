// POST /v1/responses, OpenAI's Responses API, stateless: `input` (text or message items)
// and `instructions` become a chat prompt rendered by the model's template; the answer is
// one assistant message, as a response object or as the documented event stream
// (response.created ... response.output_text.delta ... response.completed). Nothing is
// stored, so `store: true` and `previous_response_id` are refused by name.
#pragma once

#include <memory>
#include <string>
#include <variant>

#include "net/http_server.h"
#include "nlohmann/json.hpp"
#include "server/core/generation.h"
#include "server/openai/completion_job.h"
#include "server/openai/protocol.h"
#include "server/openai/server_state.h"

namespace sluice::openai {

struct ResponsesRequest {
  CompletionRequest chat;  // the messages and sampling it amounts to
  nlohmann::json instructions = nullptr;
  nlohmann::json max_output_tokens = nullptr;
  nlohmann::json metadata = nlohmann::json::object();
  nlohmann::json user = nullptr;
  nlohmann::json text_format = {{"type", "text"}};  // text.format, echoed back
};

// Parses a /v1/responses body: a 400 names the field at fault in the Responses API's own
// words (`input[1].content`, `max_output_tokens`).
std::variant<ResponsesRequest, ApiError> ParseResponsesRequest(const std::string& body);

// One response in flight, on its connection's strand as CompletionJob is.
class ResponseJob : public std::enable_shared_from_this<ResponseJob> {
 public:
  // Submits to the engine and starts answering; refusals are answered here.
  static void Start(ServerState* state, ResponsesRequest request, PreparedPrompt prompt,
                    std::shared_ptr<http::ResponseWriter> writer, Clock::time_point arrival);

  ResponseJob(ServerState* state, ResponsesRequest request,
              std::shared_ptr<http::ResponseWriter> writer);

 private:
  void Pump();
  void Cancel();
  void Finish();
  void Event(const char* type, nlohmann::json fields);
  // The response object; `status` in_progress, completed, incomplete or failed.
  nlohmann::json ResponseObject(const std::string& status) const;
  nlohmann::json MessageItem(const std::string& status) const;
  nlohmann::json TextPart() const;

  ServerState* state_;
  ResponsesRequest req_;
  std::shared_ptr<http::ResponseWriter> writer_;
  std::unique_ptr<Generation> gen_;
  const std::string id_, item_id_;
  const int64_t created_;
  int sequence_ = 0;
  bool finished_ = false;
  bool cancelled_ = false;
};

}  // namespace sluice::openai
