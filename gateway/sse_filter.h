// The gateway's view of an SSE stream it relays: it asks the upstream for usage on every
// stream (to charge tokens), reads the usage from the stream, and removes the usage-only
// chunk when the client did not ask for it. Events pass through whole, as soon as their
// terminating blank line arrives.
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
  explicit SseFilter(bool client_wants_usage) : client_wants_usage_(client_wants_usage) {}

  // Takes the next bytes of the stream; returns the bytes to send on (whole events).
  std::string Feed(std::string_view data);
  // The rest at the end of the stream (an unterminated last event passes as it is).
  std::string Flush();

  const Usage& usage() const { return usage_; }

 private:
  std::string Event(std::string_view event);

  bool client_wants_usage_;
  std::string pending_;
  Usage usage_;
};

}  // namespace sluice::gateway
