// The gateway's view of an SSE stream it relays. It asks the upstream for usage in every
// chunk (stream_options.continuous_usage_stats), so it knows what a stream has used at
// each point, also when the stream is cut short; it then gives the client the usage it
// asked for and no more: none, the final usage-only chunk, or usage in every chunk.
// Events pass through whole, as soon as their terminating blank line arrives.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::gateway {

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  bool seen = false;
  int64_t total() const { return prompt_tokens + completion_tokens; }
};

// Reads `usage` from a JSON object's text, if it has a non-null one.
bool ReadUsage(std::string_view json, Usage* usage);

class SseFilter {
 public:
  SseFilter(bool client_include_usage, bool client_continuous_usage)
      : include_usage_(client_include_usage), continuous_usage_(client_continuous_usage) {}

  // Takes the next bytes of the stream; returns the bytes to send on (whole events).
  std::string Feed(std::string_view data);
  // The rest at the end of the stream (an unterminated last event passes as it is).
  std::string Flush();

  // The latest usage the stream reported.
  const Usage& usage() const { return usage_; }
  // Whether `data: [DONE]` went by: the stream is complete, whatever happens after.
  bool done() const { return done_; }

 private:
  std::string Event(std::string_view event);

  bool include_usage_;
  bool continuous_usage_;
  std::string pending_;
  Usage usage_;
  bool done_ = false;
};

}  // namespace sluice::gateway
