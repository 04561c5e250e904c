#include "server/openai/tool_calls.h"

#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sluice::openai {

using json = nlohmann::ordered_json;

namespace {

ApiError Bad(const std::string& param, const std::string& message) {
  return ApiError{400, "invalid_request_error", message, param};
}

}  // namespace

std::string NewToolCallId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("call_%016x%08x", rng(), static_cast<uint32_t>(rng()));
}

namespace {

// The key a format writes a call's arguments under.
const char* ArgumentsKey(ToolFormat f) {
  return f == ToolFormat::kHermes || f == ToolFormat::kMistral ? "arguments" : "parameters";
}

// One call as JSON: {"name": <const>, "<arguments key>": <parameters>}, any of the tools.
json CallSchema(const ToolPlan& plan, ToolFormat f) {
  json any = json::array();
  for (const auto& [name, params] : plan.tools) {
    json props = json::object();
    props["name"] = {{"const", name}};
    props[ArgumentsKey(f)] = params;
    any.push_back({{"type", "object"},
                   {"properties", std::move(props)},
                   {"required", json::array({"name", ArgumentsKey(f)})}});
  }
  return any.size() == 1 ? any[0] : json{{"anyOf", std::move(any)}};
}

// A call object of the format, or nullopt when `j` is not one.
std::optional<ToolCall> CallOf(const json& j, ToolFormat f) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return std::nullopt;
  const char* key = ArgumentsKey(f);
  const json* args =
      j.contains(key) ? &j[key] : (j.contains("arguments") ? &j["arguments"] : nullptr);
  ToolCall c;
  c.id = NewToolCallId();
  c.name = j["name"].get<std::string>();
  c.arguments =
      args == nullptr ? "{}" : (args->is_string() ? args->get<std::string>() : args->dump());
  return c;
}

}  // namespace

std::optional<std::optional<ToolFormat>> ToolFormatOf(const std::string& parser) {
  if (parser.empty()) return std::optional<ToolFormat>();
  if (parser == "hermes") return std::optional<ToolFormat>(ToolFormat::kHermes);
  if (parser == "llama3_json") return std::optional<ToolFormat>(ToolFormat::kLlama3Json);
  if (parser == "mistral") return std::optional<ToolFormat>(ToolFormat::kMistral);
  return std::nullopt;
}

std::variant<ToolPlan, ApiError> PlanTools(const CompletionRequest& req,
                                           const std::optional<ToolFormat>& parser) {
  ToolPlan plan;
  plan.parser = parser;
  plan.parallel = req.parallel_tool_calls.value_or(true);
  const bool has_tools = req.tools.is_array() && !req.tools.empty();
  for (size_t i = 0; has_tools && i < req.tools.size(); ++i) {
    const json& t = req.tools[i];
    const std::string at = absl::StrCat("tools[", i, "]");
    if (!t.is_object() || !t.contains("type") || t["type"] != "function" ||
        !t.contains("function") || !t["function"].is_object()) {
      return Bad(at,
                 absl::StrCat("'", at, "' must be {\"type\": \"function\", \"function\": {...}}"));
    }
    const json& f = t["function"];
    if (!f.contains("name") || !f["name"].is_string() || f["name"].get<std::string>().empty()) {
      return Bad(at + ".function.name", "a function needs a non-empty string 'name'");
    }
    json params = f.contains("parameters") && !f["parameters"].is_null()
                      ? f["parameters"]
                      : json{{"type", "object"}, {"properties", json::object()}};
    if (!params.is_object()) {
      return Bad(at + ".function.parameters", "'parameters' must be a JSON Schema object");
    }
    plan.tools.emplace_back(f["name"].get<std::string>(), std::move(params));
  }
  const json& tc = req.tool_choice;
  if (tc.is_null()) {
    // As vLLM: with tools and a parser the model may call them; without one it cannot.
    plan.choice = has_tools && parser ? ToolPlan::Choice::kAuto : ToolPlan::Choice::kNone;
    return plan;
  }
  if (!has_tools) return Bad("tool_choice", "'tool_choice' needs 'tools'");
  if (tc.is_string()) {
    const std::string c = tc.get<std::string>();
    if (c == "none") {
      plan.choice = ToolPlan::Choice::kNone;
    } else if (c == "auto") {
      if (!parser) {
        return Bad("tool_choice",
                   "\"auto\" tool choice needs the server started with --tool-call-parser "
                   "(hermes, llama3_json or mistral)");
      }
      plan.choice = ToolPlan::Choice::kAuto;
    } else if (c == "required") {
      plan.choice = ToolPlan::Choice::kRequired;
    } else {
      return Bad("tool_choice", "'tool_choice' must be none, auto, required or a function");
    }
    return plan;
  }
  if (tc.is_object() && tc.contains("type") && tc["type"] == "function" &&
      tc.contains("function") && tc["function"].is_object() && tc["function"].contains("name") &&
      tc["function"]["name"].is_string()) {
    plan.named = tc["function"]["name"].get<std::string>();
    bool offered = false;
    for (const auto& [name, unused] : plan.tools) offered = offered || name == plan.named;
    if (!offered) {
      return Bad("tool_choice", absl::StrCat("'tool_choice' names '", plan.named,
                                             "', which is not among the tools"));
    }
    plan.choice = ToolPlan::Choice::kNamed;
    return plan;
  }
  return Bad("tool_choice",
             "'tool_choice' must be none, auto, required or "
             "{\"type\": \"function\", \"function\": {\"name\": ...}}");
}

std::optional<ConstraintSpec> ToolConstraint(const ToolPlan& plan) {
  ConstraintSpec spec;
  spec.kind = ConstraintSpec::Kind::kJsonSchema;
  spec.field = "tools";
  if (plan.choice == ToolPlan::Choice::kNamed) {
    for (const auto& [name, params] : plan.tools) {
      if (name == plan.named) spec.text = params.dump();
    }
    return spec;
  }
  if (plan.choice != ToolPlan::Choice::kRequired) return std::nullopt;
  const ToolFormat f = plan.parser.value_or(ToolFormat::kJsonList);
  const json call = CallSchema(plan, f);
  grammar::JsonFraming framing;
  framing.max = plan.parallel ? 8 : 1;
  switch (f) {
    case ToolFormat::kJsonList:
    case ToolFormat::kMistral:
      framing.open = f == ToolFormat::kMistral ? "[TOOL_CALLS][" : "[";
      framing.separator = ", ";
      framing.close = "]";
      break;
    case ToolFormat::kHermes:
      framing.prefix = "<tool_call>\n";
      framing.suffix = "\n</tool_call>";
      framing.separator = "\n";
      break;
    case ToolFormat::kLlama3Json:
      framing.separator = "; ";
      break;
  }
  spec.text = call.dump();
  spec.framing = framing;
  return spec;
}

size_t StreamableContent(const ToolPlan& plan, const std::string& text, bool* calling) {
  *calling = false;
  if (plan.choice == ToolPlan::Choice::kNone) return text.size();
  // Forced calls are the whole turn.
  if (plan.choice != ToolPlan::Choice::kAuto || !plan.parser) {
    *calling = true;
    return 0;
  }
  if (*plan.parser == ToolFormat::kLlama3Json) {
    // Calls, when there are any, are the whole turn: a JSON object first.
    const size_t first = text.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) return 0;
    *calling = text[first] == '{';
    return *calling ? 0 : text.size();
  }
  const std::string opening = *plan.parser == ToolFormat::kHermes ? "<tool_call>" : "[TOOL_CALLS]";
  if (const size_t at = text.find(opening); at != std::string::npos) {
    *calling = true;
    return at;
  }
  // Hold back a tail that is the start of an opening.
  for (size_t keep = std::min(opening.size() - 1, text.size()); keep > 0; --keep) {
    if (absl::EndsWith(text, absl::string_view(opening).substr(0, keep))) return text.size() - keep;
  }
  return text.size();
}

AssistantTurn ParseToolCalls(const ToolPlan& plan, const std::string& text) {
  AssistantTurn turn;
  if (plan.choice == ToolPlan::Choice::kNone) {
    turn.content = text;
    return turn;
  }
  if (plan.choice == ToolPlan::Choice::kNamed) {
    turn.calls.push_back({NewToolCallId(), plan.named, text});
    return turn;
  }
  const ToolFormat f = plan.parser.value_or(ToolFormat::kJsonList);
  auto parse = [](absl::string_view s) {
    return json::parse(s, nullptr, /*allow_exceptions=*/false);
  };
  auto take_list = [&](const json& list) {
    if (!list.is_array()) return false;
    std::vector<ToolCall> calls;
    for (const json& j : list) {
      std::optional<ToolCall> c = CallOf(j, f);
      if (!c) return false;
      calls.push_back(*std::move(c));
    }
    turn.calls = std::move(calls);
    return !turn.calls.empty();
  };
  switch (f) {
    case ToolFormat::kJsonList:
      if (!take_list(parse(absl::StripAsciiWhitespace(text)))) turn.content = text;
      break;
    case ToolFormat::kMistral: {
      const size_t at = text.find("[TOOL_CALLS]");
      if (at == std::string::npos ||
          !take_list(parse(absl::StripAsciiWhitespace(absl::string_view(text).substr(at + 12))))) {
        turn.content = text;
      } else {
        turn.content = std::string(absl::StripAsciiWhitespace(text.substr(0, at)));
      }
      break;
    }
    case ToolFormat::kHermes: {
      std::string rest;
      size_t pos = 0;
      for (;;) {
        const size_t open = text.find("<tool_call>", pos);
        if (open == std::string::npos) break;
        const size_t close = text.find("</tool_call>", open);
        if (close == std::string::npos) break;
        std::optional<ToolCall> c =
            CallOf(parse(absl::StripAsciiWhitespace(text.substr(open + 11, close - open - 11))), f);
        if (!c) break;
        rest += text.substr(pos, open - pos);
        turn.calls.push_back(*std::move(c));
        pos = close + 12;
      }
      rest += text.substr(pos);
      turn.content = std::string(absl::StripAsciiWhitespace(rest));
      if (turn.calls.empty()) turn.content = text;
      break;
    }
    case ToolFormat::kLlama3Json: {
      const absl::string_view body = absl::StripAsciiWhitespace(text);
      if (!body.empty() && body.front() == '{') {
        std::vector<ToolCall> calls;
        bool ok = true;
        for (absl::string_view part : absl::StrSplit(body, "; ")) {
          std::optional<ToolCall> c = CallOf(parse(part), f);
          if (!c) {
            ok = false;
            break;
          }
          calls.push_back(*std::move(c));
        }
        if (ok) turn.calls = std::move(calls);
      }
      if (turn.calls.empty()) turn.content = text;
      break;
    }
  }
  if (!plan.parallel && turn.calls.size() > 1) turn.calls.resize(1);
  return turn;
}

}  // namespace sluice::openai
