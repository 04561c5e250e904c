// An HTTP request body, as /v1/completions or /v1/chat/completions receives it, through
// parsing and validation. Whatever the bytes, the parser answers a request or an error
// naming the parameter, and a request it accepts is within the documented ranges.
#include <cmath>
#include <cstdint>
#include <string>
#include <variant>

#include "server/openai/protocol.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool chat = data[0] & 1;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto parsed = sluice::openai::ParseCompletionRequest(body, chat);
  if (auto* error = std::get_if<sluice::openai::ApiError>(&parsed)) {
    FUZZ_CHECK(error->status >= 400 && error->status < 500);
    FUZZ_CHECK(!error->message.empty());
    (void)error->ToJson().dump();
    return 0;
  }
  const auto& r = std::get<sluice::openai::CompletionRequest>(parsed);
  const auto& s = r.sampling;
  FUZZ_CHECK(r.chat == chat);
  FUZZ_CHECK(chat ? r.messages.is_array() : !r.prompts.empty());
  FUZZ_CHECK(r.n >= 1);
  FUZZ_CHECK(s.max_tokens >= 1);
  FUZZ_CHECK(std::isfinite(s.temperature) && s.temperature >= 0);
  FUZZ_CHECK(std::isfinite(s.top_p) && s.top_p > 0 && s.top_p <= 1);
  FUZZ_CHECK(std::isfinite(s.min_p) && s.min_p >= 0 && s.min_p <= 1);
  FUZZ_CHECK(s.top_k >= -1);
  FUZZ_CHECK(std::isfinite(s.presence_penalty) && std::isfinite(s.frequency_penalty));
  FUZZ_CHECK(std::isfinite(s.repetition_penalty) && s.repetition_penalty > 0);
  for (int32_t id : s.stop_token_ids) FUZZ_CHECK(id >= 0);
  return 0;
}
