// One /v1/completions or /v1/chat/completions request in flight: its n choices per prompt
// (one Generation each, from the request core), encoded as SSE chunks or the final JSON,
// with usage. All its work runs on its connection's strand, never on the engine thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/api.h"
#include "net/http_server.h"
#include "server/core/generation.h"
#include "server/openai/protocol.h"
#include "server/openai/server_state.h"
#include "server/openai/tool_calls.h"

namespace sluice::openai {

// A prompt, tokenized.
struct PreparedPrompt {
  std::vector<int32_t> ids;
  std::string text;               // for echo; empty unless the request echoes
  bool specials_in_text = false;  // the text shows the special tokens (given as ids)
};

class CompletionJob : public std::enable_shared_from_this<CompletionJob> {
 public:
  // Submits every choice to the engine and starts answering. Refusals are answered here
  // (400 / 429 with Retry-After / 503).
  static void Start(ServerState* state, CompletionRequest request,
                    std::vector<PreparedPrompt> prompts,
                    std::shared_ptr<http::ResponseWriter> writer, Clock::time_point arrival,
                    ToolPlan tools = {});

  CompletionJob(ServerState* state, CompletionRequest request, std::vector<PreparedPrompt> prompts,
                std::shared_ptr<http::ResponseWriter> writer);
  ~CompletionJob();

 private:
  struct Choice {
    int index = 0;
    std::unique_ptr<Generation> gen;
    size_t logprobs_sent = 0;
    bool sent_role = false;
    bool echo_sent = false;    // stream: the prompt went out first
    bool call_opened = false;  // stream, named tool: the call's name went out
    // Stream, other tool choices: the content sent ahead of any call, whether a call has
    // begun, and the calls sent whole so far.
    size_t content_sent = 0;
    bool calling = false;
    size_t calls_sent = 0;
  };

  void Pump();
  void Emit(Choice& c, const GenerationDelta& delta);
  void Cancel();
  void Finish();
  void SendChunk(Choice& c, const std::string& text, const char* finish_reason,
                 const nlohmann::json& logprobs);
  nlohmann::json Usage() const;
  nlohmann::json ChoiceLogprobs(const Choice& c, size_t from) const;
  // The echoed prompt's logprobs (its tokens scored, the first null); *end: its length.
  nlohmann::json EchoLogprobs(const Choice& c, size_t* end) const;
  const PreparedPrompt& PromptOf(const Choice& c) const {
    return prompts_[static_cast<size_t>(c.index / req_.n)];
  }
  nlohmann::json FullResponse() const;
  // Tool calls in a stream: a named call's arguments as they come. Otherwise content
  // streams as it comes until a call may begin, and each call, once its text is whole,
  // goes out name first and then its arguments in pieces.
  void EmitToolCalls(Choice& c, const GenerationDelta& delta);
  void SendCall(Choice& c, size_t index, const ToolCall& call);
  void SendDelta(Choice& c, nlohmann::json delta, const char* finish_reason);
  nlohmann::json Message(const Choice& c, const char** finish_reason) const;

  ServerState* state_;
  CompletionRequest req_;
  std::vector<PreparedPrompt> prompts_;
  std::shared_ptr<http::ResponseWriter> writer_;
  std::string id_;
  int64_t created_;
  std::vector<Choice> choices_;
  ToolPlan tools_;
  std::vector<std::string> call_ids_;  // stream, named tool: each choice's call id
  bool finished_ = false;
  bool cancelled_ = false;
};

}  // namespace sluice::openai
