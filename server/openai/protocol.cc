#include "server/openai/protocol.h"

#include <cmath>
#include <limits>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "net/json_limits.h"
#include "server/core/generation.h"

namespace sluice::openai {
namespace {

// Key order is kept so that chat templates see messages and tools as the client sent them.
using json = nlohmann::ordered_json;

constexpr int kMaxN = 16;
constexpr int kMaxTopLogprobs = kMaxLogprobs;

ApiError Bad(const std::string& param, const std::string& message) {
  return ApiError{400, "invalid_request_error", message, param};
}

// Reads optional typed fields; the first problem wins.
class Reader {
 public:
  explicit Reader(const json& body) : j_(body) {}
  const std::optional<ApiError>& error() const { return error_; }
  bool Has(const char* k) const { return j_.contains(k) && !j_[k].is_null(); }

  void Number(const char* k, double lo, double hi, float& out) {
    if (!Has(k) || error_) return;
    const json& v = j_[k];
    if (!v.is_number()) return Fail(k, absl::StrCat("'", k, "' must be a number"));
    const double d = v.get<double>();
    if (!(d >= lo && d <= hi)) {
      return Fail(k, absl::StrCat("'", k, "' must be between ", lo, " and ", hi, ", got ", d));
    }
    out = static_cast<float>(d);
  }
  void Integer(const char* k, int64_t lo, int64_t hi, int64_t& out) {
    if (!Has(k) || error_) return;
    const json& v = j_[k];
    if (!v.is_number_integer() &&
        !(v.is_number_float() && v.get<double>() == std::floor(v.get<double>()))) {
      return Fail(k, absl::StrCat("'", k, "' must be an integer"));
    }
    const double d = v.get<double>();
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      return Fail(k, absl::StrCat("'", k, "' must be between ", lo, " and ", hi));
    }
    out = v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(d);
  }
  void Int(const char* k, int lo, int hi, int& out) {
    int64_t v = out;
    Integer(k, lo, hi, v);
    out = static_cast<int>(v);
  }
  void Bool(const char* k, bool& out) {
    if (!Has(k) || error_) return;
    if (!j_[k].is_boolean()) return Fail(k, absl::StrCat("'", k, "' must be a boolean"));
    out = j_[k].get<bool>();
  }
  void String(const char* k, std::string& out) {
    if (!Has(k) || error_) return;
    if (!j_[k].is_string()) return Fail(k, absl::StrCat("'", k, "' must be a string"));
    out = j_[k].get<std::string>();
  }
  void Fail(const std::string& param, const std::string& message) {
    if (!error_) error_ = Bad(param, message);
  }

 private:
  const json& j_;
  std::optional<ApiError> error_;
};

std::optional<ApiError> ParseTokenIds(const json& v, const std::string& param,
                                      std::vector<int32_t>& out) {
  for (const json& e : v) {
    if (!e.is_number_integer() || e.get<int64_t>() < 0 ||
        e.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return Bad(param, absl::StrCat("'", param, "' token ids must be non-negative integers"));
    }
    out.push_back(e.get<int32_t>());
  }
  return std::nullopt;
}

std::optional<ApiError> ParsePrompt(const json& body, CompletionRequest& r) {
  if (!body.contains("prompt") || body["prompt"].is_null()) {
    return Bad("prompt", "'prompt' is required");
  }
  const json& p = body["prompt"];
  if (p.is_string()) {
    r.prompts.emplace_back(p.get<std::string>());
  } else if (p.is_array() && !p.empty() && p[0].is_number()) {
    std::vector<int32_t> ids;
    if (auto e = ParseTokenIds(p, "prompt", ids)) return e;
    r.prompts.emplace_back(std::move(ids));
  } else if (p.is_array() && !p.empty()) {
    for (const json& item : p) {
      if (item.is_string()) {
        r.prompts.emplace_back(item.get<std::string>());
      } else if (item.is_array() && !item.empty()) {
        std::vector<int32_t> ids;
        if (auto e = ParseTokenIds(item, "prompt", ids)) return e;
        r.prompts.emplace_back(std::move(ids));
      } else {
        return Bad("prompt", "'prompt' list items must be strings or non-empty token id lists");
      }
    }
  } else {
    return Bad("prompt", "'prompt' must be a string, a list of strings, or token ids");
  }
  for (const PromptInput& in : r.prompts) {
    if (std::holds_alternative<std::string>(in) && std::get<std::string>(in).empty()) {
      return Bad("prompt", "'prompt' must not be empty");
    }
  }
  if (r.prompts.size() > 64) return Bad("prompt", "'prompt' holds more than 64 prompts");
  return std::nullopt;
}

std::optional<ApiError> ParseMessages(const json& body, CompletionRequest& r) {
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty()) {
    return Bad("messages", "'messages' must be a non-empty list");
  }
  r.messages = json::array();
  for (size_t i = 0; i < body["messages"].size(); ++i) {
    json m = body["messages"][i];
    const std::string where = absl::StrCat("messages[", i, "]");
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return Bad(where, absl::StrCat("'", where, "' must be an object with a string 'role'"));
    }
    if (m.contains("content") && m["content"].is_array()) {
      // Content parts: only text parts are supported; they are joined.
      std::string text;
      for (const json& part : m["content"]) {
        if (!part.is_object() || !part.contains("type") || part["type"] != "text" ||
            !part.contains("text") || !part["text"].is_string()) {
          return Bad(where + ".content", "only text content parts are supported");
        }
        text += part["text"].get<std::string>();
      }
      m["content"] = text;
    } else if (m.contains("content") && !m["content"].is_string() && !m["content"].is_null()) {
      return Bad(where + ".content", "'content' must be a string or a list of text parts");
    }
    // An assistant turn that only calls tools has no content; templates concatenate it as
    // a string, so it reaches them as "" (as vLLM passes it).
    if (!m.contains("content") || m["content"].is_null()) m["content"] = "";
    r.messages.push_back(std::move(m));
  }
  if (body.contains("tools") && !body["tools"].is_null()) {
    if (!body["tools"].is_array()) return Bad("tools", "'tools' must be a list");
    r.tools = body["tools"];
  }
  if (body.contains("tool_choice")) r.tool_choice = body["tool_choice"];
  if (body.contains("parallel_tool_calls") && !body["parallel_tool_calls"].is_null()) {
    if (!body["parallel_tool_calls"].is_boolean()) {
      return Bad("parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
    }
    r.parallel_tool_calls = body["parallel_tool_calls"].get<bool>();
  }
  if (body.contains("chat_template_kwargs") && !body["chat_template_kwargs"].is_null()) {
    if (!body["chat_template_kwargs"].is_object()) {
      return Bad("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    }
    r.chat_template_kwargs = body["chat_template_kwargs"];
  }
  return std::nullopt;
}

std::optional<ApiError> ParseStop(const json& body, CompletionRequest& r) {
  if (!body.contains("stop") || body["stop"].is_null()) return std::nullopt;
  const json& s = body["stop"];
  if (s.is_string()) {
    r.stop.push_back(s.get<std::string>());
  } else if (s.is_array()) {
    for (const json& e : s) {
      if (!e.is_string()) return Bad("stop", "'stop' must be a string or a list of strings");
      r.stop.push_back(e.get<std::string>());
    }
  } else {
    return Bad("stop", "'stop' must be a string or a list of strings");
  }
  return std::nullopt;  // counts and lengths: ValidateStops
}

// logit_bias ({"id": bias}), allowed_token_ids, bad_words (a string or strings).
std::optional<ApiError> ParseLogitControls(const json& body, CompletionRequest& r) {
  SamplingParams& s = r.sampling;
  if (body.contains("logit_bias") && !body["logit_bias"].is_null()) {
    const json& lb = body["logit_bias"];
    if (!lb.is_object()) {
      return Bad("logit_bias", "'logit_bias' must be an object of token id to bias");
    }
    for (const auto& [key, bias] : lb.items()) {
      int64_t id = -1;
      if (!absl::SimpleAtoi(key, &id) || id < 0 || id > std::numeric_limits<int32_t>::max()) {
        return Bad("logit_bias",
                   absl::StrCat("'logit_bias' keys must be token ids; got '", key, "'"));
      }
      if (!bias.is_number()) {
        return Bad("logit_bias", absl::StrCat("'logit_bias' values must be numbers; token ", key));
      }
      s.logit_bias.emplace_back(static_cast<int32_t>(id), bias.get<float>());
    }
  }
  if (body.contains("allowed_token_ids") && !body["allowed_token_ids"].is_null()) {
    const json& a = body["allowed_token_ids"];
    if (!a.is_array() || a.empty()) {
      return Bad("allowed_token_ids", "'allowed_token_ids' must be a non-empty list of token ids");
    }
    if (auto e = ParseTokenIds(a, "allowed_token_ids", s.allowed_token_ids)) return e;
  }
  if (body.contains("bad_words") && !body["bad_words"].is_null()) {
    const json& b = body["bad_words"];
    if (b.is_string()) {
      r.bad_words.push_back(b.get<std::string>());
    } else if (b.is_array()) {
      for (const json& w : b) {
        if (!w.is_string()) return Bad("bad_words", "'bad_words' must be strings");
        r.bad_words.push_back(w.get<std::string>());
      }
    } else {
      return Bad("bad_words", "'bad_words' must be a string or a list of strings");
    }
    for (const std::string& w : r.bad_words) {
      if (w.empty()) return Bad("bad_words", "'bad_words' must not hold an empty string");
    }
  }
  return std::nullopt;
}

}  // namespace

std::variant<std::optional<ConstraintSpec>, ApiError> ParseResponseFormat(const json& f,
                                                                          const std::string& field,
                                                                          bool flat_schema) {
  if (!f.is_object() || !f.contains("type") || !f["type"].is_string()) {
    return Bad(field, absl::StrCat("'", field, "' must be an object with a 'type'"));
  }
  const std::string type = f["type"].get<std::string>();
  if (type == "text") return std::optional<ConstraintSpec>();
  ConstraintSpec spec;
  spec.field = field;
  if (type == "json_object") {
    spec.kind = ConstraintSpec::Kind::kJsonObject;
    return std::optional<ConstraintSpec>(std::move(spec));
  }
  if (type != "json_schema") {
    return Bad(field + ".type",
               absl::StrCat("'", field, ".type' must be text, json_object or json_schema"));
  }
  // Chat: {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}; the
  // Responses API puts name, schema and strict beside type.
  const std::string where = flat_schema ? field : field + ".json_schema";
  const json& js = flat_schema ? f : (f.contains("json_schema") ? f["json_schema"] : json());
  if (!js.is_object()) return Bad(where, absl::StrCat("'", where, "' must be an object"));
  if (js.contains("name") && !js["name"].is_string()) {
    return Bad(where + ".name", "'name' must be a string");
  }
  if (js.contains("strict") && !js["strict"].is_null() && !js["strict"].is_boolean()) {
    return Bad(where + ".strict", "'strict' must be a boolean");
  }
  spec.kind = ConstraintSpec::Kind::kJsonSchema;
  spec.strict = js.contains("strict") && js["strict"] == true;
  spec.field = where + ".schema";
  if (!js.contains("schema") || js["schema"].is_null()) {
    spec.text = "{}";  // no schema: any JSON value
  } else if (js["schema"].is_object() || js["schema"].is_boolean()) {
    spec.text = js["schema"].dump();
  } else {
    return Bad(where + ".schema", "'schema' must be a JSON Schema object");
  }
  return std::optional<ConstraintSpec>(std::move(spec));
}

namespace {

// response_format, vLLM's structured_outputs and its older guided_* fields: at most one.
std::optional<ApiError> ParseConstraint(const json& body, CompletionRequest& r) {
  auto given = [&](const char* k) { return body.contains(k) && !body[k].is_null(); };
  std::vector<std::string> sources;
  for (const char* k : {"response_format", "structured_outputs", "guided_json", "guided_regex",
                        "guided_choice", "guided_grammar"}) {
    if (given(k)) sources.push_back(k);
  }
  if (sources.size() > 1) {
    return Bad(sources[1], absl::StrCat("give one output constraint: '", sources[0], "' and '",
                                        sources[1], "' were both given"));
  }
  if (sources.empty()) return std::nullopt;
  const std::string& field = sources[0];
  const json& v = body[field];
  ConstraintSpec spec;
  spec.field = field;
  auto json_text = [&](const json& schema, const std::string& where) -> std::optional<ApiError> {
    if (schema.is_string()) {
      spec.text = schema.get<std::string>();
    } else if (schema.is_object() || schema.is_boolean()) {
      spec.text = schema.dump();
    } else {
      return Bad(where, absl::StrCat("'", where, "' must be a JSON Schema (object or text)"));
    }
    spec.kind = ConstraintSpec::Kind::kJsonSchema;
    spec.field = where;
    return std::nullopt;
  };
  auto choices = [&](const json& c, const std::string& where) -> std::optional<ApiError> {
    if (!c.is_array() || c.empty()) {
      return Bad(where, absl::StrCat("'", where, "' must be a non-empty list of strings"));
    }
    for (const json& x : c) {
      if (!x.is_string()) return Bad(where, absl::StrCat("'", where, "' must hold strings"));
      spec.choices.push_back(x.get<std::string>());
    }
    spec.kind = ConstraintSpec::Kind::kChoice;
    return std::nullopt;
  };
  auto text = [&](const json& t, const std::string& where,
                  ConstraintSpec::Kind kind) -> std::optional<ApiError> {
    if (!t.is_string()) return Bad(where, absl::StrCat("'", where, "' must be a string"));
    spec.text = t.get<std::string>();
    spec.kind = kind;
    spec.field = where;
    return std::nullopt;
  };
  if (field == "response_format") {
    auto parsed = ParseResponseFormat(v, field, /*flat_schema=*/false);
    if (auto* e = std::get_if<ApiError>(&parsed)) return *e;
    r.constraint = std::get<std::optional<ConstraintSpec>>(parsed);
    return std::nullopt;
  }
  if (field == "guided_json") {
    if (auto e = json_text(v, field)) return e;
  } else if (field == "guided_regex") {
    if (auto e = text(v, field, ConstraintSpec::Kind::kRegex)) return e;
  } else if (field == "guided_choice") {
    if (auto e = choices(v, field)) return e;
  } else if (field == "guided_grammar") {
    if (auto e = text(v, field, ConstraintSpec::Kind::kGrammar)) return e;
  } else {  // structured_outputs: {json | regex | choice | grammar | json_object}
    if (!v.is_object()) return Bad(field, "'structured_outputs' must be an object");
    int kinds = 0;
    for (const auto& [key, value] : v.items()) {
      const std::string where = absl::StrCat(field, ".", key);
      if (value.is_null()) continue;
      if (key == "disable_any_whitespace") {
        if (!value.is_boolean()) return Bad(where, "'disable_any_whitespace' must be a boolean");
        spec.allow_space = !value.get<bool>();
        continue;
      }
      ++kinds;
      std::optional<ApiError> e;
      if (key == "json") {
        e = json_text(value, where);
      } else if (key == "regex") {
        e = text(value, where, ConstraintSpec::Kind::kRegex);
      } else if (key == "choice") {
        e = choices(value, where);
        spec.field = where;
      } else if (key == "grammar") {
        e = text(value, where, ConstraintSpec::Kind::kGrammar);
      } else if (key == "json_object") {
        if (value != true) return Bad(where, "'json_object' must be true");
        spec.kind = ConstraintSpec::Kind::kJsonObject;
        spec.field = where;
      } else {
        return Bad(where, absl::StrCat("'", key,
                                       "' is not a kind of structured output here "
                                       "(json, regex, choice, grammar, json_object)"));
      }
      if (e) return e;
    }
    if (kinds != 1) {
      return Bad(field,
                 "'structured_outputs' must give exactly one of json, regex, choice, "
                 "grammar, json_object");
    }
  }
  r.constraint = std::move(spec);
  return std::nullopt;
}

// Every field is honoured or refused: what this server does not do is a 400 naming it,
// never a 200 that ignored it.
std::optional<ApiError> CheckUnsupported(const json& body, bool chat) {
  static const absl::flat_hash_set<std::string> common = {
      "model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "n", "ignore_eos",
      "presence_penalty", "frequency_penalty", "repetition_penalty", "stream", "stream_options",
      "stop", "stop_token_ids", "logprobs", "cache_salt", "priority", "min_tokens",
      "include_stop_str_in_output", "return_tokens_as_token_ids", "logit_bias", "allowed_token_ids",
      "bad_words", "prompt_logprobs", "response_format", "structured_outputs", "guided_json",
      "guided_regex", "guided_choice", "guided_grammar", "speculative",
      // OpenAI's end-user identifier: for the provider's abuse monitoring, which this
      // server leaves to the gateway. Accepted, and it changes nothing.
      "user"};
  static const absl::flat_hash_set<std::string> completions = {"prompt", "echo", "best_of",
                                                               "suffix"};
  static const absl::flat_hash_set<std::string> chat_only = {"messages",
                                                             "tools",
                                                             "tool_choice",
                                                             "parallel_tool_calls",
                                                             "chat_template_kwargs",
                                                             "add_generation_prompt",
                                                             "top_logprobs",
                                                             "max_completion_tokens"};
  for (const auto& [key, value] : body.items()) {
    if (common.contains(key) || (chat ? chat_only : completions).contains(key)) continue;
    return Bad(key, absl::StrCat("'", key, "' is not a parameter of ",
                                 chat ? "/v1/chat/completions" : "/v1/completions",
                                 " on this server (docs/api.md lists what it accepts)"));
  }
  auto given = [&](const char* k) { return body.contains(k) && !body[k].is_null(); };
  if (!chat && given("suffix")) {
    return Bad("suffix", "'suffix' (fill in the middle) is not supported for this model");
  }
  if (!chat && given("best_of")) {
    const json& b = body["best_of"];
    const int64_t n =
        body.contains("n") && body["n"].is_number_integer() ? body["n"].get<int64_t>() : 1;
    if (!b.is_number_integer() || b.get<int64_t>() != n) {
      return Bad("best_of",
                 "'best_of' other than 'n' is not supported: every sequence is returned");
    }
  }
  return std::nullopt;
}

}  // namespace

nlohmann::json ApiError::ToJson() const {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", status}}}};
}

std::variant<CompletionRequest, ApiError> ParseCompletionRequest(const std::string& text,
                                                                 bool chat) {
  if (absl::Status depth = CheckJsonDepth(text); !depth.ok()) {
    return Bad("", std::string(depth.message()));
  }
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    return Bad("", "request body is not valid JSON (or not valid UTF-8)");
  }
  if (!body.is_object()) return Bad("", "request body must be a JSON object");
  CompletionRequest r;
  r.chat = chat;
  if (!body.contains("model") || !body["model"].is_string()) {
    return Bad("model", "'model' is required and must be a string");
  }
  r.model = body["model"].get<std::string>();
  if (auto e = chat ? ParseMessages(body, r) : ParsePrompt(body, r)) return *e;
  if (auto e = ParseStop(body, r)) return *e;

  Reader rd(body);
  SamplingParams& s = r.sampling;
  s.max_tokens = 16;
  int64_t max_tokens = chat ? std::numeric_limits<int32_t>::max() : 16;
  // 0 with echo: the prompt alone, scored (lm-eval's loglikelihood requests).
  rd.Integer("max_tokens", chat ? 1 : 0, std::numeric_limits<int32_t>::max(), max_tokens);
  if (chat) rd.Integer("max_completion_tokens", 1, std::numeric_limits<int32_t>::max(), max_tokens);
  s.max_tokens = static_cast<int>(max_tokens);
  r.max_tokens_given = rd.Has("max_tokens") || (chat && rd.Has("max_completion_tokens"));
  r.max_tokens_from_completion = chat && rd.Has("max_completion_tokens");
  // Types are checked here, ranges by the engine's ValidateSampling (every front's rules).
  constexpr double kAny = std::numeric_limits<double>::max();
  s.temperature = 1.0f;
  rd.Number("temperature", -kAny, kAny, s.temperature);
  rd.Number("top_p", -kAny, kAny, s.top_p);
  rd.Int("top_k", std::numeric_limits<int>::min(), std::numeric_limits<int>::max(), s.top_k);
  rd.Number("min_p", -kAny, kAny, s.min_p);
  int64_t seed = -1;
  rd.Integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
             seed);
  if (rd.Has("seed")) s.seed = static_cast<uint64_t>(seed);
  rd.Int("n", 1, kMaxN, r.n);
  rd.Bool("ignore_eos", s.ignore_eos);
  rd.Bool("speculative", s.speculative);
  rd.Number("presence_penalty", -kAny, kAny, s.presence_penalty);
  rd.Number("frequency_penalty", -kAny, kAny, s.frequency_penalty);
  rd.Number("repetition_penalty", -kAny, kAny, s.repetition_penalty);
  rd.Bool("stream", r.stream);
  rd.Bool("echo", r.echo);
  rd.String("cache_salt", r.cache_salt);
  rd.Int("priority", -1000000, 1000000, r.priority);
  rd.Int("min_tokens", 0, std::numeric_limits<int32_t>::max(), s.min_tokens);
  rd.Bool("include_stop_str_in_output", r.include_stop_str_in_output);
  rd.Bool("return_tokens_as_token_ids", r.return_tokens_as_token_ids);
  rd.Int("prompt_logprobs", 0, kMaxTopLogprobs, r.prompt_logprobs);
  if (chat) {
    bool want = false;
    rd.Bool("logprobs", want);
    int top = 0;
    rd.Int("top_logprobs", 0, kMaxTopLogprobs, top);
    if (rd.Has("top_logprobs") && !want && !rd.error()) {
      return Bad("top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
    }
    r.logprobs = want ? top : -1;
    rd.Bool("add_generation_prompt", r.add_generation_prompt);
  } else {
    rd.Int("logprobs", 0, kMaxTopLogprobs, r.logprobs);
  }
  if (rd.error()) return *rd.error();
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    const json& so = body["stream_options"];
    if (!so.is_object()) return Bad("stream_options", "'stream_options' must be an object");
    Reader srd(so);
    srd.Bool("include_usage", r.include_usage);
    if (srd.error()) return Bad("stream_options.include_usage", srd.error()->message);
    srd.Bool("continuous_usage_stats", r.continuous_usage);
    if (srd.error()) return Bad("stream_options.continuous_usage_stats", srd.error()->message);
    if (r.continuous_usage && !r.include_usage) {
      return Bad("stream_options.continuous_usage_stats",
                 "'continuous_usage_stats' needs 'include_usage'");
    }
  }
  if (body.contains("stop_token_ids") && !body["stop_token_ids"].is_null()) {
    if (!body["stop_token_ids"].is_array()) {
      return Bad("stop_token_ids", "'stop_token_ids' must be a list of token ids");
    }
    if (auto e = ParseTokenIds(body["stop_token_ids"], "stop_token_ids", s.stop_token_ids)) {
      return *e;
    }
  }
  if (s.max_tokens == 0 && !r.echo) {
    return Bad("max_tokens", "'max_tokens' must be at least 1 (0 only with 'echo')");
  }
  if (r.prompt_logprobs >= 0 && r.stream) {
    return Bad("prompt_logprobs", "'prompt_logprobs' is not supported with 'stream'");
  }
  // The prompt's scores come from its own forward pass: asked for by prompt_logprobs, by
  // echo with logprobs (the echoed tokens carry theirs), and by echo with max_tokens 0
  // (the engine runs such a request for its prompt alone).
  s.prompt_logprobs = r.prompt_logprobs;
  if (r.echo && r.logprobs >= 0) s.prompt_logprobs = std::max(s.prompt_logprobs, r.logprobs);
  if (r.echo && s.max_tokens == 0) s.prompt_logprobs = std::max(s.prompt_logprobs, 0);
  if (auto e = ParseLogitControls(body, r)) return *e;
  if (auto e = CheckUnsupported(body, chat)) return *e;
  if (auto e = ParseConstraint(body, r)) return *e;
  s.logprobs = r.logprobs;
  absl::Status valid = ValidateSampling(s);
  if (valid.ok()) valid = ValidateStops(r.stop);
  if (!valid.ok()) {
    std::string field = InvalidField(valid).value_or("");
    if (chat && field == "logprobs") field = "top_logprobs";
    if (chat && field == "max_tokens" && body.contains("max_completion_tokens")) {
      field = "max_completion_tokens";
    }
    return Bad(field, std::string(valid.message()));
  }
  return r;
}

}  // namespace sluice::openai
