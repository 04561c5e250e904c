// POST /v1/responses, OpenAI's Responses API, stateless: `input` (text or message items)
// and `instructions` become a chat prompt rendered by the model's template; the answer is
// one assistant message, as a response object or as the documented event stream
// (response.created ... response.output_text.delta ... response.completed). Function
// tools work as in chat completions (tool_calls.h): calls come back as function_call
// items, and function_call / function_call_output items of `input` continue the turn.
// Nothing is stored, so `store: true` and `previous_response_id` are refused by name.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "net/http_server.h"
#include "nlohmann/json.hpp"
#include "server/core/generation.h"
#include "server/openai/completion_job.h"
#include "server/openai/protocol.h"
#include "server/openai/server_state.h"
#include "server/openai/tool_calls.h"

namespace sluice::openai {

struct ResponsesRequest {
  CompletionRequest chat;  // the messages and sampling it amounts to
  nlohmann::json instructions = nullptr;
  nlohmann::json max_output_tokens = nullptr;
  nlohmann::json metadata = nlohmann::json::object();
  nlohmann::json user = nullptr;
  nlohmann::json text_format = {{"type", "text"}};  // text.format, echoed back
  nlohmann::json tools = nlohmann::json::array();   // as given, echoed back
  nlohmann::json tool_choice = "auto";
};

// Parses a /v1/responses body: a 400 names the field at fault in the Responses API's own
// words (`input[1].content`, `max_output_tokens`).
std::variant<ResponsesRequest, ApiError> ParseResponsesRequest(const std::string& body);

// One response in flight, on its connection's strand as CompletionJob is.
class ResponseJob : public std::enable_shared_from_this<ResponseJob> {
 public:
  // Submits to the engine and starts answering; refusals are answered here.
  static void Start(ServerState* state, ResponsesRequest request, PreparedPrompt prompt,
                    std::shared_ptr<http::ResponseWriter> writer, Clock::time_point arrival,
                    ToolPlan tools = {});

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
  nlohmann::json CallItem(const ToolCall& call, const std::string& item_id,
                          const std::string& status, bool with_arguments) const;
  // Stream: the message item opens at its first text; each call goes out whole, its
  // arguments in pieces.
  void OpenMessage();
  void SendText(const std::string& text);
  void SendCall(const ToolCall& call);

  ServerState* state_;
  ResponsesRequest req_;
  std::shared_ptr<http::ResponseWriter> writer_;
  std::unique_ptr<Generation> gen_;
  const std::string id_, item_id_;
  const int64_t created_;
  int sequence_ = 0;
  ToolPlan tools_;
  std::string message_text_;  // the message item's text (in a stream: as sent)
  int message_index_ = -1;    // its output index, once open
  int next_output_index_ = 0;
  size_t content_sent_ = 0;  // with tools: text sent ahead of any call
  bool calling_ = false;
  struct CallOut {
    ToolCall call;
    std::string item_id;
    int index;  // output index
  };
  std::vector<CallOut> calls_;
  bool finished_ = false;
  bool cancelled_ = false;
};

}  // namespace sluice::openai
