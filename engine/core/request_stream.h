// A request's output channel: the engine thread pushes, the front pops (blocking) or
// is notified. Thread safety: all methods are safe from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "engine/sched/request.h"

namespace sluice {

struct RequestOutput {
  std::vector<int32_t> new_token_ids;
  std::vector<TokenLogprobs> logprobs;  // beside new_token_ids when requested
  FinishReason finish_reason = FinishReason::kNone;  // set on the last output only
  int num_prompt_tokens = 0;
  int num_cached_prompt_tokens = 0;
  int num_output_tokens = 0;
  double queue_time_s = 0.0;
  std::string error;  // set with FinishReason::kError
  Clock::time_point time;
  bool finished() const { return finish_reason != FinishReason::kNone; }
};

class RequestStream {
 public:
  explicit RequestStream(RequestId id) : id_(id) {}

  RequestId id() const { return id_; }

  void Push(RequestOutput output);

  // The next output, waiting up to `timeout`; nullopt on timeout.
  std::optional<RequestOutput> Pop(std::chrono::milliseconds timeout);

  // Everything pushed so far, without waiting.
  std::vector<RequestOutput> Drain();

  // Called (on the pushing thread) after each push; replaces any previous notifier.
  void SetNotifier(std::function<void()> notifier);

 private:
  const RequestId id_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestOutput> queue_;
  std::function<void()> notifier_;
};

}  // namespace sluice
