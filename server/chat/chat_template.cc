#include "server/chat/chat_template.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/chat/ast.h"
#include "server/chat/evaluator.h"
#include "server/chat/parser.h"

namespace sluice {

struct ChatTemplate::Impl {
  chat::StmtList body;
  ChatTemplateLimits limits;
};

ChatTemplate::ChatTemplate(std::unique_ptr<const Impl> impl) : impl_(std::move(impl)) {}
ChatTemplate::~ChatTemplate() = default;

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Parse(
    std::string_view source, const ChatTemplateLimits& limits) {
  auto impl = std::make_unique<Impl>();
  SLUICE_ASSIGN_OR_RETURN(impl->body, chat::ParseTemplate(source));
  impl->limits = limits;
  return std::unique_ptr<ChatTemplate>(new ChatTemplate(std::move(impl)));
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& context) const {
  if (!context.is_object()) {
    return absl::InvalidArgumentError("chat template context must be a JSON object");
  }
  chat::Dict globals;
  for (const auto& [key, value] : context.items()) {
    absl::StatusOr<chat::Value> converted = chat::FromJson(value, impl_->limits.max_json_depth);
    if (!converted.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chat template variable '", key, "': ", std::string(converted.status().message())));
    }
    globals.Set(key, *std::move(converted));
  }
  chat::EvalLimits limits;
  limits.sizes.max_string_bytes = impl_->limits.max_output_bytes;
  limits.sizes.max_list_items = static_cast<size_t>(impl_->limits.max_loop_iterations);
  limits.max_loop_iterations = impl_->limits.max_loop_iterations;
  limits.max_depth = impl_->limits.max_depth;
  return chat::Evaluator(limits, globals).Render(impl_->body);
}

absl::StatusOr<std::string> ChatTemplateSource(const nlohmann::json& tokenizer_config,
                                               std::string_view name) {
  const auto it = tokenizer_config.find("chat_template");
  if (it == tokenizer_config.end() || it->is_null()) {
    return absl::NotFoundError("tokenizer config has no chat_template");
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const auto& entry : *it) {
      if (entry.is_object() && entry.value("name", "") == name && entry.contains("template") &&
          entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
    return absl::NotFoundError(
        absl::StrCat("tokenizer config has no chat template named '", std::string(name), "'"));
  }
  return absl::InvalidArgumentError("chat_template must be a string or a list of templates");
}

}  // namespace sluice
