#include "gateway/completion_body.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "gateway/json_members.h"

namespace sluice::gateway {
namespace {

using nlohmann::json;

constexpr int64_t kMaxCount = std::numeric_limits<int32_t>::max();

bool Present(const json& o, const char* k) { return o.contains(k) && !o[k].is_null(); }

int64_t TextTokens(size_t bytes) {
  return (static_cast<int64_t>(bytes) + kBytesPerToken - 1) / kBytesPerToken;
}

// An integer as the engine takes one: an integer, or a float with no fractional part.
// The value is clamped to [-kMaxCount, kMaxCount]; the engine refuses what is out of range.
std::optional<FieldError> Integer(const json& o, const char* k, std::optional<int64_t>& out) {
  if (!Present(o, k)) return std::nullopt;
  const json& v = o[k];
  if (v.is_number_integer()) {
    const double d = v.is_number_unsigned() ? static_cast<double>(v.get<uint64_t>())
                                            : static_cast<double>(v.get<int64_t>());
    out = static_cast<int64_t>(std::clamp<double>(d, -kMaxCount, kMaxCount));
    return std::nullopt;
  }
  if (v.is_number_float() && v.get<double>() == std::floor(v.get<double>())) {
    out = static_cast<int64_t>(std::clamp<double>(v.get<double>(), -kMaxCount, kMaxCount));
    return std::nullopt;
  }
  return FieldError{k, absl::StrCat("'", k, "' must be an integer")};
}

std::optional<FieldError> Bool(const json& o, const char* k, const std::string& param, bool& out) {
  if (!Present(o, k)) return std::nullopt;
  if (!o[k].is_boolean()) return FieldError{param, absl::StrCat("'", k, "' must be a boolean")};
  out = o[k].get<bool>();
  return std::nullopt;
}

std::optional<FieldError> ReadPrompts(const json& body, CompletionShape& s) {
  if (!Present(body, "prompt")) return FieldError{"prompt", "'prompt' is required"};
  const json& p = body["prompt"];
  if (p.is_string()) {
    s.num_prompts = 1;
    s.prompt_tokens = TextTokens(p.get_ref<const std::string&>().size());
  } else if (p.is_array() && !p.empty() && p[0].is_number()) {
    s.num_prompts = 1;
    s.prompt_tokens = static_cast<int64_t>(p.size());
  } else if (p.is_array() && !p.empty()) {
    s.num_prompts = static_cast<int64_t>(p.size());
    s.prompt_tokens = 0;
    for (const json& item : p) {
      if (item.is_string()) {
        s.prompt_tokens += TextTokens(item.get_ref<const std::string&>().size());
      } else if (item.is_array() && !item.empty()) {
        s.prompt_tokens += static_cast<int64_t>(item.size());
      } else {
        return FieldError{"prompt",
                          "'prompt' list items must be strings or non-empty token id lists"};
      }
    }
  } else {
    return FieldError{"prompt", "'prompt' must be a string, a list of strings, or token ids"};
  }
  return std::nullopt;
}

std::optional<FieldError> ReadMessages(const json& body, std::string_view raw, CompletionShape& s) {
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty()) {
    return FieldError{"messages", "'messages' must be a non-empty list"};
  }
  // What the chat template renders: the messages and the tools, estimated from their text.
  size_t bytes = 0;
  for (const char* k : {"messages", "tools"}) {
    if (auto v = MemberValue(raw, k)) bytes += v->size();
  }
  s.num_prompts = 1;
  s.prompt_tokens = TextTokens(bytes);
  return std::nullopt;
}

}  // namespace

std::variant<CompletionShape, FieldError> ReadCompletionShape(const json& body,
                                                              std::string_view raw, bool chat) {
  CompletionShape s;
  if (auto e = chat ? ReadMessages(body, raw, s) : ReadPrompts(body, s)) return *e;
  std::optional<int64_t> n;
  if (auto e = Integer(body, "max_tokens", s.max_tokens)) return *e;
  if (chat) {
    std::optional<int64_t> max_completion;
    if (auto e = Integer(body, "max_completion_tokens", max_completion)) return *e;
    if (max_completion) s.max_tokens = max_completion;
  }
  if (auto e = Integer(body, "n", n)) return *e;
  s.n = std::max<int64_t>(1, n.value_or(1));
  if (auto e = Bool(body, "stream", "stream", s.stream)) return *e;
  if (Present(body, "stream_options")) {
    const json& so = body["stream_options"];
    if (!so.is_object()) return FieldError{"stream_options", "'stream_options' must be an object"};
    if (auto e =
            Bool(so, "include_usage", "stream_options.include_usage", s.client_include_usage)) {
      return *e;
    }
    if (auto e = Bool(so, "continuous_usage_stats", "stream_options.continuous_usage_stats",
                      s.client_continuous_usage)) {
      return *e;
    }
  }
  return s;
}

std::string RewriteCompletionBody(std::string_view raw, const std::string& salt, bool stream) {
  // Tenants never share prefix-cache blocks: whatever salt a client sends is replaced.
  std::string out = SetMember(raw, "cache_salt", json(salt).dump());
  if (stream) {
    std::string options = "{}";
    if (auto v = MemberValue(out, "stream_options"); v && !v->empty() && v->front() == '{') {
      options = std::string(*v);
    }
    options = SetMember(options, "include_usage", "true");
    options = SetMember(options, "continuous_usage_stats", "true");
    out = SetMember(out, "stream_options", options);
  }
  return out;
}

}  // namespace sluice::gateway
