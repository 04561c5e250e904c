// The request core both fronts share (HTTP and gRPC): submitting to the engine and
// mapping its refusals, then for each engine request incremental detokenization, stop
// strings, logprobs, timing and the metrics of how it ended. The fronts only encode what
// it hands them (SSE chunks, JSON, protobuf).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "engine/api.h"
#include "nlohmann/json.hpp"
#include "server/metrics.h"
#include "server/openai/server_state.h"
#include "server/tokenizer/incremental_detokenizer.h"

namespace sluice {

// One token's text as logprobs show it (special tokens spelled out).
std::string TokenText(const Tokenizer& tokenizer, int32_t id);

// Why a request was not taken, in the words every front maps to its own codes.
struct Refusal {
  enum class Kind { kInvalid, kOverloaded, kUnavailable, kInternal };
  Kind kind = Kind::kInvalid;
  std::string message;
  std::string field;           // kInvalid: the request field at fault, when known
  int64_t retry_after_ms = 0;  // kOverloaded: when to try again
};

// The engine's refusal, counted in sluice_requests_rejected_total for `protocol`.
Refusal RefusalOf(ServerState& state, const absl::Status& status, const std::string& protocol);

// What is new in one generation since the last Poll.
struct GenerationDelta {
  std::string text;  // safe to show: complete UTF-8, nothing that may begin a stop string
  std::vector<int32_t> token_ids;
  std::vector<TokenLogprobs> logprobs;  // beside token_ids when logprobs were asked for
  bool finished = false;                // the last delta
};

// One engine request as the front follows it. Not thread-safe: the front calls it from
// one thread (or strand) at a time; the stream's notifier only tells it to Poll.
class Generation {
 public:
  struct Options {
    std::vector<std::string> stop;            // stop strings (ValidateStops)
    bool include_stop_str_in_output = false;  // the matched stop string ends the text
    bool logprobs = false;
    bool skip_special_tokens = true;
    std::string protocol = "http";  // for the metrics
  };

  // Submits `params`; on success the generation, on refusal (counted) the reason.
  static std::variant<std::unique_ptr<Generation>, Refusal> Start(ServerState& state,
                                                                  SubmitParams params,
                                                                  Options options,
                                                                  Clock::time_point arrival);
  ~Generation();

  // Consumes what the engine pushed since the last call. A stop string ends the text
  // before it and aborts the engine request.
  GenerationDelta Poll();

  bool done() const { return done_; }
  // kStop, kLength, kAbort or kError once done (kStop also for a stop string).
  FinishReason finish_reason() const { return finish_reason_; }
  // What stopped it, as vLLM's stop_reason: the stop string matched, or the stop token
  // id; null for an end-of-sequence token, the length limit or an error.
  nlohmann::json stop_reason() const;
  // Non-empty when the generation failed (engine error, shutdown): what to tell the client.
  const std::string& error() const { return error_; }
  const std::string& text() const { return text_; }
  const std::vector<int32_t>& token_ids() const { return token_ids_; }
  const std::vector<TokenLogprobs>& logprobs() const { return logprobs_; }
  // With SamplingParams::prompt_logprobs, once the first output came: one per prompt
  // token after the first.
  const std::vector<TokenLogprobs>& prompt_logprobs() const { return prompt_logprobs_; }
  bool has_output() const { return has_output_; }  // the engine sent its first output
  int num_prompt_tokens() const { return num_prompt_tokens_; }
  int num_cached_tokens() const { return num_cached_tokens_; }
  const RequestTiming& timing() const { return timing_; }
  RequestStream& stream() { return *stream_; }

  // The client is gone: the engine request is aborted (its blocks freed at the next step).
  void Cancel();
  // Counts how it ended in the metrics (success, cancelled or error), once.
  void Record();

 private:
  Generation(ServerState& state, std::shared_ptr<RequestStream> stream, Options options,
             Clock::time_point arrival);
  void Consume(RequestOutput out, GenerationDelta& delta);
  std::string TakeText(std::string piece, bool final_piece);

  ServerState& state_;
  std::shared_ptr<RequestStream> stream_;
  const Options options_;
  const Clock::time_point arrival_;
  IncrementalDetokenizer detok_;
  size_t max_stop_len_ = 0;
  std::string held_;  // decoded text held back while it could begin a stop string
  std::string text_;  // text handed out so far
  std::vector<int32_t> token_ids_;
  std::vector<TokenLogprobs> logprobs_;
  std::vector<TokenLogprobs> prompt_logprobs_;
  bool has_output_ = false;
  int num_prompt_tokens_ = 0, num_cached_tokens_ = 0;
  FinishReason finish_reason_ = FinishReason::kNone;
  std::string stop_string_;     // the stop string that ended it
  int32_t stop_token_id_ = -1;  // or the stop token id
  std::string error_;
  RequestTiming timing_;
  Clock::time_point last_token_time_;
  bool has_first_token_ = false;
  bool done_ = false;
  bool cancelled_ = false;
  bool recorded_ = false;
};

}  // namespace sluice
