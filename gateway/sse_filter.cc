#include "gateway/sse_filter.h"

#include "nlohmann/json.hpp"

namespace sluice::gateway {

bool ReadUsage(std::string_view json, Usage* usage) {
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("usage") || !j["usage"].is_object()) return false;
  const nlohmann::json& u = j["usage"];
  usage->prompt_tokens = u.value("prompt_tokens", int64_t{0});
  usage->completion_tokens = u.value("completion_tokens", int64_t{0});
  usage->seen = true;
  return true;
}

std::string SseFilter::Event(std::string_view event) {
  // Only data events that mention usage need a look; the rest pass untouched.
  if (event.find("\"usage\"") == std::string_view::npos) return std::string(event);
  std::string_view data;
  size_t pos = 0;
  while (pos < event.size()) {
    size_t end = event.find('\n', pos);
    if (end == std::string_view::npos) end = event.size();
    std::string_view line = event.substr(pos, end - pos);
    if (line.starts_with("data:")) {
      data = line.substr(5);
      if (data.starts_with(" ")) data.remove_prefix(1);
    }
    pos = end + 1;
  }
  if (data.empty() || data == "[DONE]") return std::string(event);
  Usage u;
  if (!ReadUsage(data, &u)) return std::string(event);
  usage_ = u;
  if (client_wants_usage_) return std::string(event);
  // The usage-only chunk (no choices) is the gateway's own request: drop it.
  const nlohmann::json j = nlohmann::json::parse(data, nullptr, false);
  if (j.is_object() && j.contains("choices") && j["choices"].is_array() && j["choices"].empty()) {
    return "";
  }
  return std::string(event);
}

std::string SseFilter::Feed(std::string_view data) {
  pending_.append(data);
  std::string out;
  size_t start = 0;
  for (;;) {
    const size_t end = pending_.find("\n\n", start);
    if (end == std::string::npos) break;
    out += Event(std::string_view(pending_).substr(start, end + 2 - start));
    start = end + 2;
  }
  pending_.erase(0, start);
  return out;
}

std::string SseFilter::Flush() {
  std::string out = pending_.empty() ? "" : Event(pending_);
  pending_.clear();
  return out;
}

}  // namespace sluice::gateway
