// Tool calling for chat completions: the tools a request offers and its tool_choice; the
// grammar that forces calls (`required`: one or more calls in the parser's format; a
// named function: its arguments); and the parsers that find calls in generated text
// (--tool-call-parser: hermes, llama3_json, mistral). Without a parser, `auto` is
// refused as vLLM refuses it, and forced calls use vLLM's JSON list
// [{"name": ..., "parameters": {...}}].
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "nlohmann/json.hpp"
#include "server/core/constraints.h"
#include "server/openai/protocol.h"

namespace sluice::openai {

enum class ToolFormat { kJsonList, kHermes, kLlama3Json, kMistral };

// The format of a --tool-call-parser name; nullopt for an unknown one ("" is none).
std::optional<std::optional<ToolFormat>> ToolFormatOf(const std::string& parser);

struct ToolPlan {
  enum class Choice { kNone, kAuto, kRequired, kNamed };
  Choice choice = Choice::kNone;
  std::vector<std::pair<std::string, nlohmann::ordered_json>> tools;  // name, parameters
  std::string named;                                                  // kNamed: the function
  bool parallel = true;                                               // parallel_tool_calls
  std::optional<ToolFormat> parser;
  bool active() const { return choice != Choice::kNone; }
};

// tools, tool_choice and parallel_tool_calls of a chat request, against the server's
// parser. 400s name the field (tool_choice naming a function that is not offered,
// "auto" without a parser, tool_choice without tools, malformed tools).
std::variant<ToolPlan, ApiError> PlanTools(const CompletionRequest& req,
                                           const std::optional<ToolFormat>& parser);

// The constraint that forces the plan's calls; nullopt for none and auto.
std::optional<ConstraintSpec> ToolConstraint(const ToolPlan& plan);

struct ToolCall {
  std::string id, name, arguments;  // arguments: JSON text
};
struct AssistantTurn {
  std::string content;  // the text outside any call
  std::vector<ToolCall> calls;
};

// A fresh tool call id ("call_..." as OpenAI's).
std::string NewToolCallId();

// Streaming: how much of `text` (a turn so far) is content for sure, ahead of the first
// call (or of a tail that may grow into a call's opening). *calling: a call has begun.
size_t StreamableContent(const ToolPlan& plan, const std::string& text, bool* calling);

// The calls in `text` as the plan's format writes them (named: the text is the
// arguments). Text that does not parse as calls stays content.
AssistantTurn ParseToolCalls(const ToolPlan& plan, const std::string& text);

}  // namespace sluice::openai
