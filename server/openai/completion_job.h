// One /v1/completions or /v1/chat/completions request in flight: its n choices (one
// engine request each), incremental detokenization, stop strings, SSE chunks or the
// final JSON, usage and latency metrics. All its work runs on its connection's strand,
// never on the engine thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/core/request_stream.h"
#include "engine/tokenizer/incremental_detokenizer.h"
#include "server/http/http_server.h"
#include "server/openai/protocol.h"
#include "server/openai/server_state.h"

namespace sluice::openai {

// A prompt, tokenized, and the engine requests made for it.
struct PreparedPrompt {
  std::vector<int32_t> ids;
  std::string text;  // for echo
};

class CompletionJob : public std::enable_shared_from_this<CompletionJob> {
 public:
  // Submits every choice to the engine and starts answering. Refusals are answered here
  // (400 / 429 with Retry-After / 503).
  static void Start(ServerState* state, CompletionRequest request,
                    std::vector<PreparedPrompt> prompts,
                    std::shared_ptr<http::ResponseWriter> writer, Clock::time_point arrival);

  CompletionJob(ServerState* state, CompletionRequest request, std::vector<PreparedPrompt> prompts,
                std::shared_ptr<http::ResponseWriter> writer, Clock::time_point arrival);
  ~CompletionJob();

 private:
  struct Choice;

  void Pump();
  void Consume(Choice& c, RequestOutput out);
  void EmitText(Choice& c, std::string text, bool final_piece);
  void Cancel();
  void Finish();
  void SendChunk(const Choice& c, const std::string& text, const char* finish_reason,
                 const nlohmann::json& logprobs);
  nlohmann::json Usage() const;
  nlohmann::json ChoiceLogprobs(const Choice& c, size_t from) const;
  nlohmann::json FullResponse() const;

  ServerState* state_;
  CompletionRequest req_;
  std::vector<PreparedPrompt> prompts_;
  std::shared_ptr<http::ResponseWriter> writer_;
  Clock::time_point arrival_;
  std::string id_;
  int64_t created_;
  std::vector<std::unique_ptr<Choice>> choices_;
  size_t max_stop_len_ = 0;
  bool finished_ = false;
  bool cancelled_ = false;
};

}  // namespace sluice::openai
