// Everything a request can constrain its output with, compiled to a Grammar: EBNF (the
// GBNF dialect vLLM's `structured_outputs.grammar` and llama.cpp use), regular
// expressions, a choice of strings, any JSON value, and JSON Schema. Errors are
// InvalidArgument (a malformed or unsupported input, naming where) or ResourceExhausted
// (past the Limits).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/grammar/grammar.h"

namespace sluice::grammar {

// `name ::= body` rules, one or more lines each; the grammar starts at `root`. Bodies:
// "literals" and 'literals' (escapes \n \t \r \\ \" \' \xHH \uHHHH), [character
// classes] (ranges, ^ negation), `.` for any character, rule names, ( groups ), |
// alternatives, and * + ? {m} {m,} {m,n} after a term; # starts a comment.
absl::StatusOr<std::shared_ptr<const Grammar>> CompileEbnf(absl::string_view text,
                                                           const Limits& limits = {});

// The whole output matches `pattern` (ECMAScript-style: literals, ., [classes], \d \w
// \s and their negations, groups, |, * + ? {m,n}; ^ and $ only at the ends). No
// backreferences or lookaround.
absl::StatusOr<std::shared_ptr<const Grammar>> CompileRegex(absl::string_view pattern,
                                                            const Limits& limits = {});

// The output is exactly one of `choices`.
absl::StatusOr<std::shared_ptr<const Grammar>> CompileChoice(
    const std::vector<std::string>& choices, const Limits& limits = {});

struct JsonOptions {
  // Keywords this compiler cannot enforce are refused naming them (OpenAI's strict
  // structured outputs), rather than relaxed.
  bool strict = false;
  // Whitespace between tokens: none (compact), or at most one space after ':' and ','
  // (never runs of it, so that generation cannot stall in whitespace).
  bool allow_space = true;
};

// Any JSON object (response_format json_object).
absl::StatusOr<std::shared_ptr<const Grammar>> CompileJsonObject(const JsonOptions& options = {},
                                                                 const Limits& limits = {});

// A JSON value valid against `schema` (JSON text of a JSON Schema).
absl::StatusOr<std::shared_ptr<const Grammar>> CompileJsonSchema(absl::string_view schema,
                                                                 const JsonOptions& options = {},
                                                                 const Limits& limits = {});

// Tool calls in a model's format: JSON values valid against `schema`, each between
// `prefix` and `suffix`, from `min` to `max` of them separated by `separator`, the
// whole between `open` and `close` (hermes: <tool_call> blocks; mistral: [TOOL_CALLS]
// then a JSON list).
struct JsonFraming {
  std::string open, prefix, suffix, separator, close;
  int min = 1, max = 1;
};
absl::StatusOr<std::shared_ptr<const Grammar>> CompileJsonSchemaFramed(
    absl::string_view schema, const JsonFraming& framing, const JsonOptions& options = {},
    const Limits& limits = {});

// Used by CompileJsonSchema and tests: a regex as an expression over bytes in `builder`
// (rules it needs are added there). Inside a JSON string `json_string` keeps '"', '\'
// and control characters out of what the pattern's classes and '.' match.
absl::StatusOr<Expr> RegexExpr(absl::string_view pattern, GrammarBuilder& builder,
                               bool json_string = false);

}  // namespace sluice::grammar
