#include "gateway/sse_filter.h"

#include "gateway/json_members.h"
#include "nlohmann/json.hpp"

namespace sluice::gateway {

namespace {

// The non-null `usage` of a parsed answer or chunk, if it has one.
bool UsageOf(const nlohmann::json& j, Usage* usage) {
  if (!j.is_object() || !j.contains("usage") || !j["usage"].is_object()) return false;
  const nlohmann::json& u = j["usage"];
  auto count = [&u](const char* k) {
    return u.contains(k) && u[k].is_number_integer() ? u[k].get<int64_t>() : int64_t{0};
  };
  usage->prompt_tokens = count("prompt_tokens");
  usage->completion_tokens = count("completion_tokens");
  usage->seen = true;
  return true;
}

}  // namespace

bool ReadUsage(std::string_view json, Usage* usage) {
  return UsageOf(nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false), usage);
}

std::string SseFilter::Event(std::string_view event) {
  // The event's data line (the upstream writes one per event).
  size_t data_begin = std::string_view::npos, data_end = 0;
  for (size_t pos = 0; pos < event.size();) {
    size_t end = event.find('\n', pos);
    if (end == std::string_view::npos) end = event.size();
    if (event.substr(pos, end - pos).starts_with("data:")) {
      data_begin = pos;
      data_end = end;
    }
    pos = end + 1;
  }
  if (data_begin == std::string_view::npos) return std::string(event);
  std::string_view data = event.substr(data_begin + 5, data_end - data_begin - 5);
  if (data.starts_with(" ")) data.remove_prefix(1);
  if (data == "[DONE]") {
    done_ = true;
    return std::string(event);
  }
  // Only chunks that carry usage need a look; the rest pass untouched.
  if (data.find("\"usage\"") == std::string_view::npos) return std::string(event);
  const nlohmann::json j = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  Usage u;
  const bool has_usage = UsageOf(j, &u);
  if (has_usage) usage_ = u;
  if (continuous_usage_ || !j.is_object() || !j.contains("usage")) return std::string(event);
  const bool usage_only = j.contains("choices") && j["choices"].is_array() && j["choices"].empty();
  if (usage_only && has_usage) {
    if (include_usage_) return std::string(event);
    return "";  // the gateway's own request: the client did not ask for it
  }
  // A content chunk: usage null where the client asked for the final one only (as the
  // upstream itself writes it then), and none where it asked for none.
  const std::string rewritten =
      include_usage_ ? SetMember(data, "usage", "null") : RemoveMember(data, "usage");
  std::string out(event.substr(0, data_begin));
  out += "data: ";
  out += rewritten;
  out.append(event.substr(data_end));
  return out;
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
