// Chat templates: the Jinja2 subset that Hugging Face chat templates use, rendered the
// way transformers' apply_chat_template renders them (trim_blocks, lstrip_blocks,
// loop controls, raise_exception, strftime_now, tojson without ASCII escaping).
#ifndef SLUICE_SERVER_CHAT_CHAT_TEMPLATE_H_
#define SLUICE_SERVER_CHAT_CHAT_TEMPLATE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace sluice {

// Bounds on one render, so that no template or conversation can hang or exhaust the
// process. Exceeding one fails the render with InvalidArgument.
struct ChatTemplateLimits {
  size_t max_output_bytes = size_t{1} << 20;  // Also caps any single string or capture.
  int64_t max_loop_iterations = 1'000'000;    // Summed over a render; also caps list sizes.
  int max_depth = 512;                        // Nested evaluation and macro recursion.
  int max_json_depth = 128;                   // Nesting of the context's JSON values.
};

// A parsed chat template.
//
// Thread safety: immutable once parsed; Render may be called from several threads at
// once on one instance.
class ChatTemplate {
 public:
  // Parses `source`. Syntax errors are InvalidArgument with the line and column.
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Parse(std::string_view source,
                                                             const ChatTemplateLimits& limits = {});

  ~ChatTemplate();
  ChatTemplate(const ChatTemplate&) = delete;
  ChatTemplate& operator=(const ChatTemplate&) = delete;

  // Renders with the variables of `context`, a JSON object. As transformers'
  // apply_chat_template: messages, tools (null when there are none), documents (null),
  // add_generation_prompt, the tokenizer's special tokens (bos_token, eos_token, ...)
  // and the request's extra keyword arguments (for example enable_thinking). A missing
  // variable is undefined (renders empty), a null one is None. Object keys keep their
  // order, which tojson reproduces (a nlohmann::json converts implicitly, with its keys
  // sorted). Errors (template errors, raise_exception(message) whose message it carries,
  // limits) are InvalidArgument naming the template line and column.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context) const;

 private:
  struct Impl;
  explicit ChatTemplate(std::unique_ptr<const Impl> impl);

  std::unique_ptr<const Impl> impl_;
};

// The chat template source in a tokenizer_config.json: `chat_template` as a string, or
// the entry called `name` of a list of {"name", "template"} (default: "default").
// NotFound when the config has none.
absl::StatusOr<std::string> ChatTemplateSource(const nlohmann::json& tokenizer_config,
                                               std::string_view name = "default");

}  // namespace sluice

#endif  // SLUICE_SERVER_CHAT_CHAT_TEMPLATE_H_
