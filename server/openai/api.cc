#include "server/openai/api.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "net/json_limits.h"
#include "server/chat/chat_template.h"
#include "server/openai/completion_job.h"
#include "server/openai/responses.h"
#include "server/openai/responses_api.h"
#include "server/openai/tool_calls.h"

namespace sluice::openai {

using nlohmann::json;

namespace {

struct Route {
  const char* path;
  const char* method;
};
constexpr Route kRoutes[] = {
    {"/v1/completions", "POST"}, {"/v1/chat/completions", "POST"},
    {"/v1/models", "GET"},       {"/health", "GET"},
    {"/ready", "GET"},           {"/metrics", "GET"},
    {"/version", "GET"},         {"/tokenize", "POST"},
    {"/detokenize", "POST"},     {"/tokenizer_info", "GET"},
    {"/v1/responses", "POST"},
};

std::string PathOf(const std::string& target) { return target.substr(0, target.find('?')); }

// Reads a JSON object body or answers 400.
std::optional<json> ParseBody(const http::Request& req, http::ResponseWriter& w) {
  if (absl::Status depth = CheckJsonDepth(req.body); !depth.ok()) {
    SendError(w, ApiError{400, "invalid_request_error", std::string(depth.message()), ""});
    return std::nullopt;
  }
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    SendError(w, ApiError{400, "invalid_request_error",
                          "request body must be a JSON object (valid UTF-8)", ""});
    return std::nullopt;
  }
  return body;
}

}  // namespace

bool Api::CheckServing(http::ResponseWriter& w) {
  const std::optional<Unavailable> why = CheckAvailable(*state_, "http");
  if (why) {
    SendError(w, ApiError{503, "service_unavailable", why->message, ""}, {{"Retry-After", "5"}});
  }
  return !why;
}

void Api::Handle(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer) {
  const std::string path = PathOf(req.target);
  if (req.method == "OPTIONS") return Preflight(req, *writer, path);
  // Cross-origin callers the policy allows see that it does (--allowed-origins).
  writer = http::WithHeaders(std::move(writer), state_->cors.ResponseHeaders(req.Header("Origin")));
  // GET /v1/models/{id}: the one model this server serves, or 404 (OpenAI's retrieve).
  if (constexpr std::string_view kModel = "/v1/models/"; path.starts_with(kModel)) {
    const std::string id = path.substr(kModel.size());
    if (req.method != "GET") {
      return SendError(*writer,
                       ApiError{405, "invalid_request_error",
                                absl::StrCat(req.method, " is not allowed on ", path), ""},
                       {{"Allow", "GET"}});
    }
    if (!CheckServing(*writer)) return;
    if (id != state_->served_model_name) {
      return SendError(*writer,
                       ApiError{404, "invalid_request_error",
                                absl::StrCat("the model '", id, "' does not exist"), "model"});
    }
    return SendJson(*writer, 200, ModelCard());
  }
  const Route* route = nullptr;
  bool path_known = false;
  for (const Route& r : kRoutes) {
    if (path != r.path) continue;
    path_known = true;
    if (req.method == r.method) route = &r;
  }
  if (route == nullptr) {
    if (path_known) {
      std::string allow;
      for (const Route& r : kRoutes) {
        if (path == r.path) allow = r.method;
      }
      SendError(*writer,
                ApiError{405, "invalid_request_error",
                         absl::StrCat(req.method, " is not allowed on ", path), ""},
                {{"Allow", allow}});
    } else {
      SendError(*writer,
                ApiError{404, "invalid_request_error", absl::StrCat("no route for ", path), ""});
    }
    return;
  }
  if (path == "/health") {
    // Liveness: the process is up (loading counts as alive) and its engine is neither
    // stuck in a step nor failing step after step.
    if (state_->loaded.load()) {
      if (EngineHealth h = state_->engine->Health(); !h.live) {
        return SendJson(*writer, 503, {{"status", "unhealthy"}, {"reason", h.reason}});
      }
    }
    return SendJson(*writer, 200, {{"status", "ok"}});
  }
  if (path == "/ready") {
    if (const std::optional<Unavailable> why = WhyUnavailable(*state_)) {
      json body = {{"ready", false}, {"status", why->reason}};
      if (why->reason == "unhealthy") body["reason"] = why->detail;
      return SendJson(*writer, 503, body);
    }
    return SendJson(*writer, 200, {{"ready", true}, {"status", "ready"}});
  }
  if (path == "/metrics") {
    std::optional<EngineStats> stats;
    if (state_->loaded.load()) stats = state_->engine->Stats();
    return writer->Send(200, "text/plain; version=0.0.4; charset=utf-8",
                        state_->metrics->Scrape(stats ? &*stats : nullptr));
  }
  if (path == "/version") return SendJson(*writer, 200, {{"version", SLUICE_VERSION}});
  if (!CheckServing(*writer)) return;
  if (path == "/v1/models") return Models(*writer);
  if (path == "/tokenize") return Tokenize(req, *writer);
  if (path == "/tokenizer_info") return TokenizerInfo(*writer);
  if (path == "/detokenize") return Detokenize(req, *writer);
  if (path == "/v1/responses") return Responses(req, std::move(writer));
  Completions(req, std::move(writer), path == "/v1/chat/completions");
}

void Api::Preflight(const http::Request& req, http::ResponseWriter& w, const std::string& path) {
  // A preflight (or a plain OPTIONS) on a known path: 204 with its methods, and the CORS
  // permissions when the origin is allowed; browsers refuse the call otherwise.
  std::string allow;
  if (path.starts_with("/v1/models/")) allow = "GET";
  for (const Route& r : kRoutes) {
    if (path == r.path) allow = allow.empty() ? r.method : absl::StrCat(allow, ", ", r.method);
  }
  if (allow.empty()) {
    return SendError(
        w, ApiError{404, "invalid_request_error", absl::StrCat("no route for ", path), ""});
  }
  w.Send(204, "text/plain", "", state_->cors.PreflightHeaders(req, allow));
}

void Api::HandleAdmin(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer) {
  const std::string path = PathOf(req.target);
  if (path == "/metrics" || path == "/health" || path == "/ready" || path == "/version") {
    return Handle(req, std::move(writer));
  }
  SendError(*writer,
            ApiError{404, "invalid_request_error",
                     absl::StrCat("no route for ", path,
                                  " on the metrics port (/metrics, /health, /ready, /version)"),
                     ""});
}

json Api::ModelCard() const {
  return {{"id", state_->served_model_name},
          {"object", "model"},
          {"created", UnixSeconds()},
          {"owned_by", "sluice"},
          {"max_model_len", state_->max_model_len}};
}

void Api::Models(http::ResponseWriter& w) {
  SendJson(w, 200, {{"object", "list"}, {"data", json::array({ModelCard()})}});
}

void Api::Completions(const http::Request& http_req, std::shared_ptr<http::ResponseWriter> writer,
                      bool chat) {
  const Clock::time_point arrival = Clock::now();
  state_->metrics->Arrived();
  auto parsed = ParseCompletionRequest(http_req.body, chat);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    state_->metrics->Rejected("invalid");
    return SendError(*writer, *e);
  }
  CompletionRequest req = std::move(std::get<CompletionRequest>(parsed));
  if (req.model != state_->served_model_name) {
    state_->metrics->Rejected("invalid");
    return SendError(*writer, ApiError{404, "invalid_request_error",
                                       absl::StrCat("the model '", req.model,
                                                    "' does not exist; this server serves '",
                                                    state_->served_model_name, "'"),
                                       "model"});
  }
  ToolPlan tools;
  if (chat) {
    if (std::optional<ApiError> e = Tools(req, &tools)) {
      state_->metrics->Rejected("invalid");
      return SendError(*writer, *e);
    }
  }
  if (std::optional<ApiError> e = Constrain(req)) {
    state_->metrics->Rejected("invalid");
    return SendError(*writer, *e);
  }
  std::vector<PreparedPrompt> prompts;
  if (chat) {
    std::variant<std::string, ApiError> text = RenderChat(req);
    if (auto* e = std::get_if<ApiError>(&text)) {
      state_->metrics->Rejected("invalid");
      return SendError(*writer, *e);
    }
    req.prompts.emplace_back(std::move(std::get<std::string>(text)));
  }
  const char* max_tokens_field =
      req.max_tokens_from_completion ? "max_completion_tokens" : "max_tokens";
  for (PromptInput& in : req.prompts) {
    std::variant<PreparedPrompt, ApiError> p = Prepare(std::move(in), req, max_tokens_field);
    if (auto* e = std::get_if<ApiError>(&p)) {
      state_->metrics->Rejected("invalid");
      return SendError(*writer, *e);
    }
    prompts.push_back(std::move(std::get<PreparedPrompt>(p)));
  }
  // bad_words, as vLLM reads them: each word's tokens, alone and after a space.
  for (const std::string& word : req.bad_words) {
    for (const std::string& text : {word, " " + word}) {
      auto ids = state_->tokenizer->Encode(text, /*add_special_tokens=*/false);
      if (ids.ok() && !ids->empty()) req.sampling.bad_words.push_back(std::move(*ids));
    }
  }
  CompletionJob::Start(state_, std::move(req), std::move(prompts), std::move(writer), arrival,
                       std::move(tools));
}

std::variant<PreparedPrompt, ApiError> Api::Prepare(PromptInput in, const CompletionRequest& req,
                                                    const char* max_tokens_field) const {
  PreparedPrompt p;
  if (auto* given = std::get_if<std::vector<int32_t>>(&in)) {
    p.ids = std::move(*given);
    if (req.echo) {  // only echo shows it
      p.text = state_->tokenizer->Decode(p.ids, false);
      p.specials_in_text = true;
    }
  } else {
    p.text = std::move(std::get<std::string>(in));
    // A rendered chat template already holds its special tokens.
    auto ids = state_->tokenizer->Encode(p.text, /*add_special_tokens=*/!req.chat);
    if (!ids.ok()) {
      return ApiError{400, "invalid_request_error", std::string(ids.status().message()),
                      req.chat ? "messages" : "prompt"};
    }
    p.ids = std::move(*ids);
  }
  // As OpenAI and vLLM answer: a max_tokens past what the context leaves is an error,
  // not a silent cap (the default, when not given, is capped by the engine).
  const int64_t room = int64_t{state_->max_model_len} - static_cast<int64_t>(p.ids.size());
  if (req.max_tokens_given && req.sampling.max_tokens > room && room > 0) {
    return ApiError{
        400, "invalid_request_error",
        absl::StrCat("this model's maximum context length is ", state_->max_model_len,
                     " tokens; the prompt has ", p.ids.size(), " and ", max_tokens_field,
                     " asks for ", req.sampling.max_tokens, " (at most ", room, ")"),
        max_tokens_field};
  }
  return p;
}

void Api::Responses(const http::Request& http_req, std::shared_ptr<http::ResponseWriter> writer) {
  const Clock::time_point arrival = Clock::now();
  state_->metrics->Arrived();
  auto reject = [&](const ApiError& e) {
    state_->metrics->Rejected("invalid");
    SendError(*writer, e);
  };
  auto parsed = ParseResponsesRequest(http_req.body);
  if (auto* e = std::get_if<ApiError>(&parsed)) return reject(*e);
  ResponsesRequest req = std::move(std::get<ResponsesRequest>(parsed));
  if (req.chat.model != state_->served_model_name) {
    state_->metrics->Rejected("invalid");
    return SendError(*writer, ApiError{404, "invalid_request_error",
                                       absl::StrCat("the model '", req.chat.model,
                                                    "' does not exist; this server serves '",
                                                    state_->served_model_name, "'"),
                                       "model"});
  }
  ToolPlan tools;
  if (std::optional<ApiError> e = Tools(req.chat, &tools)) {
    // In the Responses API's words: tools[0].name, not tools[0].function.name.
    ApiError error = *e;
    if (const size_t at = error.param.find(".function"); at != std::string::npos) {
      error.param.erase(at, 9);
    }
    return reject(error);
  }
  if (std::optional<ApiError> e = Constrain(req.chat)) return reject(*e);
  std::variant<std::string, ApiError> text = RenderChat(req.chat);
  if (auto* e = std::get_if<ApiError>(&text)) {
    ApiError error = *e;
    error.param = "input";
    return reject(error);
  }
  std::variant<PreparedPrompt, ApiError> prompt =
      Prepare(std::move(std::get<std::string>(text)), req.chat, "max_output_tokens");
  if (auto* e = std::get_if<ApiError>(&prompt)) {
    ApiError error = *e;
    if (error.param == "messages") error.param = "input";
    return reject(error);
  }
  ResponseJob::Start(state_, std::move(req), std::move(std::get<PreparedPrompt>(prompt)),
                     std::move(writer), arrival, std::move(tools));
}

std::optional<ApiError> Api::Tools(CompletionRequest& req, ToolPlan* tools) const {
  std::variant<ToolPlan, ApiError> plan =
      PlanTools(req, ToolFormatOf(state_->tool_call_parser).value_or(std::nullopt));
  if (auto* e = std::get_if<ApiError>(&plan)) return *e;
  *tools = std::move(std::get<ToolPlan>(plan));
  // A forced call is itself an output constraint.
  if (std::optional<ConstraintSpec> forced = ToolConstraint(*tools)) {
    if (req.constraint) {
      return ApiError{400, "invalid_request_error",
                      "give 'tool_choice' (required or a function) or an output format, not both",
                      "tool_choice"};
    }
    req.constraint = std::move(forced);
  }
  return std::nullopt;
}

std::optional<ApiError> Api::Constrain(CompletionRequest& req) const {
  if (!req.constraint) return std::nullopt;
  if (state_->constraints == nullptr) {
    return ApiError{503, "service_unavailable", "structured outputs are not ready yet", ""};
  }
  absl::StatusOr<std::shared_ptr<const OutputConstraint>> c =
      state_->constraints->Get(*req.constraint);
  if (!c.ok()) {
    return ApiError{400, "invalid_request_error",
                    absl::StrCat("'", req.constraint->field, "': ", c.status().message()),
                    req.constraint->field};
  }
  req.sampling.constraint = *std::move(c);
  return std::nullopt;
}

std::variant<std::string, ApiError> Api::RenderChat(const CompletionRequest& req) const {
  if (state_->chat_template == nullptr) {
    return ApiError{400, "invalid_request_error", "this model has no chat template", "messages"};
  }
  nlohmann::ordered_json context = req.chat_template_kwargs;
  context["messages"] = req.messages;
  if (!req.tools.is_null()) context["tools"] = req.tools;
  context["add_generation_prompt"] = req.add_generation_prompt;
  const Tokenizer& tok = *state_->tokenizer;
  if (tok.bos_id()) context["bos_token"] = tok.IdToToken(*tok.bos_id());
  if (!tok.eos_ids().empty()) context["eos_token"] = tok.IdToToken(tok.eos_ids().front());
  auto text = state_->chat_template->Render(context);
  if (!text.ok()) {
    return ApiError{400, "invalid_request_error", std::string(text.status().message()), "messages"};
  }
  return *std::move(text);
}

void Api::TokenizerInfo(http::ResponseWriter& w) {
  // vLLM's /tokenizer_info: what a remote tokenizer client (lm-eval's) needs.
  const Tokenizer& tok = *state_->tokenizer;
  auto token = [&](std::optional<int32_t> id) {
    return id ? json(tok.IdToToken(*id)) : json(nullptr);
  };
  const json eos =
      tok.eos_ids().empty() ? json(nullptr) : json(tok.IdToToken(tok.eos_ids().front()));
  SendJson(
      w, 200,
      {{"tokenizer_class", "PreTrainedTokenizerFast"},
       {"vocab_size", tok.vocab_size()},
       {"model_max_length", state_->max_model_len},
       {"bos_token", token(tok.bos_id())},
       {"eos_token", eos},
       {"pad_token", eos},
       {"chat_template", tok.chat_template().empty() ? json(nullptr) : json(tok.chat_template())}});
}

void Api::Tokenize(const http::Request& req, http::ResponseWriter& w) {
  auto body = ParseBody(req, w);
  if (!body) return;
  if (body->contains("add_special_tokens") && !(*body)["add_special_tokens"].is_boolean()) {
    return SendError(w, ApiError{400, "invalid_request_error",
                                 "'add_special_tokens' must be a boolean", "add_special_tokens"});
  }
  std::string text;
  bool add_special = body->value("add_special_tokens", true);
  if (body->contains("messages")) {
    // vLLM's chat form: the messages through the chat template, whose text already holds
    // its special tokens (add_special_tokens defaults to false).
    add_special = body->value("add_special_tokens", false);
    json chat = json::object();
    for (const char* k : {"messages", "tools", "chat_template_kwargs", "add_generation_prompt"}) {
      if (body->contains(k)) chat[k] = (*body)[k];
    }
    chat["model"] = state_->served_model_name;
    auto parsed = ParseCompletionRequest(chat.dump(), /*chat=*/true);
    if (auto* e = std::get_if<ApiError>(&parsed)) return SendError(w, *e);
    std::variant<std::string, ApiError> rendered = RenderChat(std::get<CompletionRequest>(parsed));
    if (auto* e = std::get_if<ApiError>(&rendered)) return SendError(w, *e);
    text = std::move(std::get<std::string>(rendered));
  } else if (body->contains("prompt") && (*body)["prompt"].is_string()) {
    text = (*body)["prompt"].get<std::string>();
  } else {
    return SendError(w, ApiError{400, "invalid_request_error",
                                 "give 'prompt' (a string) or 'messages'", "prompt"});
  }
  auto ids = state_->tokenizer->Encode(text, add_special);
  if (!ids.ok()) {
    return SendError(
        w, ApiError{400, "invalid_request_error", std::string(ids.status().message()), "prompt"});
  }
  SendJson(w, 200,
           {{"tokens", *ids}, {"count", ids->size()}, {"max_model_len", state_->max_model_len}});
}

void Api::Detokenize(const http::Request& req, http::ResponseWriter& w) {
  auto body = ParseBody(req, w);
  if (!body) return;
  const json& tokens = body->contains("tokens") ? (*body)["tokens"] : json();
  std::vector<int32_t> ids;
  bool ok = tokens.is_array();
  for (const json& t : ok ? tokens : json::array()) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 ||
        t.get<int64_t>() >= state_->tokenizer->vocab_size()) {
      ok = false;
      break;
    }
    ids.push_back(t.get<int32_t>());
  }
  if (!ok) {
    return SendError(w, ApiError{400, "invalid_request_error",
                                 absl::StrCat("'tokens' must be a list of ids in [0, ",
                                              state_->tokenizer->vocab_size(), ")"),
                                 "tokens"});
  }
  SendJson(w, 200, {{"prompt", state_->tokenizer->Decode(ids, false)}});
}

}  // namespace sluice::openai
