// The gateway's body rewrite and stream filter on arbitrary bytes. A body that is a JSON
// object within the nesting limit is read without fault and rewritten into the same
// document but for the salt and the stream options, its other top-level keys in their
// order; any bytes fed to the SSE filter pass without fault.
#include <cstdint>
#include <string>
#include <vector>

#include "gateway/completion_body.h"
#include "gateway/json_members.h"
#include "gateway/sse_filter.h"
#include "net/json_limits.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_check.h"

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

std::vector<std::string> KeysWithout(const ordered_json& j, const char* a, const char* b) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) {
    if (k != a && k != b) keys.push_back(k);
  }
  return keys;
}

void CheckRewrite(const std::string& text) {
  if (!sluice::CheckJsonDepth(text).ok()) return;
  const json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) return;
  for (bool chat : {false, true}) (void)sluice::gateway::ReadCompletionShape(parsed, text, chat);
  for (bool stream : {false, true}) {
    const std::string out = sluice::gateway::RewriteCompletionBody(text, "gw-salt", stream);
    const json got = json::parse(out, nullptr, /*allow_exceptions=*/false);
    FUZZ_CHECK(!got.is_discarded());
    json want = parsed;
    want["cache_salt"] = "gw-salt";
    if (stream) {
      json options = parsed.contains("stream_options") && parsed["stream_options"].is_object()
                         ? parsed["stream_options"]
                         : json::object();
      options["include_usage"] = true;
      options["continuous_usage_stats"] = true;
      want["stream_options"] = options;
    }
    FUZZ_CHECK(got == want);
    // Key order is the client's (checked where no key repeats: then it is unambiguous).
    const auto members = sluice::gateway::ObjectMembers(text);
    FUZZ_CHECK(members.has_value());
    if (members->size() == parsed.size()) {
      const ordered_json in_order = ordered_json::parse(text, nullptr, false);
      const ordered_json out_order = ordered_json::parse(out, nullptr, false);
      FUZZ_CHECK(KeysWithout(in_order, "cache_salt", "stream_options") ==
                 KeysWithout(out_order, "cache_salt", "stream_options"));
    }
  }
}

void CheckFilter(const std::string& text) {
  for (bool include : {false, true}) {
    sluice::gateway::SseFilter filter(include, false);
    std::string out;
    const size_t step = 1 + text.size() / 3;
    for (size_t i = 0; i < text.size(); i += step) out += filter.Feed(text.substr(i, step));
    out += filter.Flush();
    (void)filter.usage().total();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  CheckRewrite(text);
  CheckFilter(text);
  return 0;
}
