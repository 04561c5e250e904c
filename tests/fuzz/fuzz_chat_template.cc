// A chat template (the first part of the input) rendered over a conversation (the rest,
// as JSON when it parses, else a fixed one): parsing and rendering end in a string or
// an error naming the line, within the output and loop limits, whatever the template.
#include <cstdint>
#include <string>
#include <string_view>

#include "nlohmann/json.hpp"
#include "server/chat/chat_template.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find('\0');
  const std::string_view source = input.substr(0, split);
  sluice::ChatTemplateLimits limits;
  limits.max_output_bytes = 1 << 16;
  limits.max_loop_iterations = 20000;
  limits.max_depth = 64;
  auto tmpl = sluice::ChatTemplate::Parse(source, limits);
  if (!tmpl.ok()) {
    FUZZ_CHECK(!tmpl.status().message().empty());
    return 0;
  }
  nlohmann::ordered_json context = {{"messages",
                                     {{{"role", "system"}, {"content", "You are terse."}},
                                      {{"role", "user"}, {"content", "Hi \xc3\xa9"}},
                                      {{"role", "assistant"}, {"content", "Hello."}}}},
                                    {"add_generation_prompt", true},
                                    {"bos_token", "<s>"},
                                    {"eos_token", "</s>"}};
  if (split != std::string_view::npos) {
    auto parsed = nlohmann::ordered_json::parse(input.substr(split + 1), nullptr, false);
    if (!parsed.is_discarded() && parsed.is_object()) context = std::move(parsed);
  }
  auto out = (*tmpl)->Render(context);
  if (out.ok()) {
    FUZZ_CHECK(out->size() <= limits.max_output_bytes);
  } else {
    FUZZ_CHECK(!out.status().message().empty());
  }
  return 0;
}
