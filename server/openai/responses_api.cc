#include "server/openai/responses_api.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "net/json_limits.h"
#include "server/openai/responses.h"

namespace sluice::openai {

using nlohmann::json;

namespace {

ApiError Bad(const std::string& param, const std::string& message) {
  return ApiError{400, "invalid_request_error", message, param};
}

// A message item's content: text, or parts of input_text / output_text.
std::variant<std::string, ApiError> ContentText(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return Bad(where, absl::StrCat("'", where, "' must be text or parts"));
  std::string text;
  for (size_t j = 0; j < content.size(); ++j) {
    const json& part = content[j];
    const std::string at = absl::StrCat(where, "[", j, "]");
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      return Bad(at, absl::StrCat("'", at, "' must be an object with a 'type'"));
    }
    const std::string type = part["type"].get<std::string>();
    if (type != "input_text" && type != "output_text") {
      return Bad(at + ".type", absl::StrCat("content of type '", type,
                                            "' is not supported (text only: input_text, "
                                            "output_text)"));
    }
    if (!part.contains("text") || !part["text"].is_string()) {
      return Bad(at + ".text", absl::StrCat("'", at, ".text' must be a string"));
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

// `input` as chat messages.
std::variant<json, ApiError> InputMessages(const json& input) {
  json messages = json::array();
  if (input.is_string()) {
    messages.push_back({{"role", "user"}, {"content", input.get<std::string>()}});
    return messages;
  }
  if (!input.is_array() || input.empty()) {
    return Bad("input", "'input' must be text or a non-empty list of message items");
  }
  for (size_t i = 0; i < input.size(); ++i) {
    const json& item = input[i];
    const std::string at = absl::StrCat("input[", i, "]");
    if (!item.is_object()) return Bad(at, absl::StrCat("'", at, "' must be an object"));
    const std::string type = item.contains("type") && item["type"].is_string()
                                 ? item["type"].get<std::string>()
                                 : "message";
    if (type != "message") {
      return Bad(at + ".type", absl::StrCat("items of type '", type,
                                            "' are not supported (messages only: this server "
                                            "runs no tools and keeps no reasoning items)"));
    }
    if (!item.contains("role") || !item["role"].is_string()) {
      return Bad(at + ".role", absl::StrCat("'", at, ".role' must be a string"));
    }
    std::string role = item["role"].get<std::string>();
    if (role == "developer") role = "system";  // the templates know system, not developer
    if (role != "user" && role != "assistant" && role != "system") {
      return Bad(at + ".role", absl::StrCat("role '", role,
                                            "' is not one of user, assistant, system, developer"));
    }
    if (!item.contains("content")) {
      return Bad(at + ".content", absl::StrCat("'", at, ".content' is required"));
    }
    auto text = ContentText(item["content"], at + ".content");
    if (auto* e = std::get_if<ApiError>(&text)) return *e;
    messages.push_back({{"role", role}, {"content", std::get<std::string>(text)}});
  }
  return messages;
}

}  // namespace

std::variant<ResponsesRequest, ApiError> ParseResponsesRequest(const std::string& text) {
  if (absl::Status depth = CheckJsonDepth(text); !depth.ok()) {
    return Bad("", std::string(depth.message()));
  }
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return Bad("", "request body is not valid JSON (or not valid UTF-8)");
  if (!body.is_object()) return Bad("", "request body must be a JSON object");
  static const absl::flat_hash_set<std::string> known = {"model",
                                                         "input",
                                                         "instructions",
                                                         "max_output_tokens",
                                                         "temperature",
                                                         "top_p",
                                                         "stream",
                                                         "store",
                                                         "metadata",
                                                         "user",
                                                         "text",
                                                         "truncation",
                                                         "tools",
                                                         "tool_choice",
                                                         "parallel_tool_calls",
                                                         "include",
                                                         "previous_response_id",
                                                         "reasoning"};
  for (const auto& [key, value] : body.items()) {
    if (!known.contains(key)) {
      return Bad(key, absl::StrCat("'", key,
                                   "' is not a parameter of /v1/responses on this server "
                                   "(docs/api.md lists what it accepts)"));
    }
  }
  auto given = [&](const char* k) { return body.contains(k) && !body[k].is_null(); };
  if (given("previous_response_id")) {
    return Bad("previous_response_id",
               "'previous_response_id' needs stored responses, and this server stores none "
               "(send the whole conversation as 'input')");
  }
  if (given("store") && (!body["store"].is_boolean() || body["store"].get<bool>())) {
    return Bad("store", "responses are not stored on this server: 'store' must be false");
  }
  if (given("tools") && !(body["tools"].is_array() && body["tools"].empty())) {
    return Bad("tools", "'tools' are not supported by /v1/responses on this server");
  }
  if (given("tool_choice") && !(body["tool_choice"].is_string() &&
                                (body["tool_choice"] == "none" || body["tool_choice"] == "auto"))) {
    return Bad("tool_choice", "'tool_choice' must be \"none\" or \"auto\" (no tools run here)");
  }
  if (given("parallel_tool_calls") && !body["parallel_tool_calls"].is_boolean()) {
    return Bad("parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
  }
  if (given("include") && !(body["include"].is_array() && body["include"].empty())) {
    return Bad("include", "'include' is not supported (no extra output items here)");
  }
  if (given("reasoning")) {
    return Bad("reasoning", "'reasoning' is not supported for the served model");
  }
  if (given("truncation") && body["truncation"] != "disabled") {
    return Bad("truncation",
               "'truncation' must be \"disabled\": a prompt past the context is a 400");
  }
  std::optional<ConstraintSpec> format;
  json text_format = {{"type", "text"}};
  if (given("text")) {
    const json& t = body["text"];
    if (!t.is_object()) return Bad("text", "'text' must be an object");
    for (const auto& [key, value] : t.items()) {
      if (key != "format") {
        return Bad(absl::StrCat("text.", key), absl::StrCat("'text.", key, "' is not supported"));
      }
    }
    if (t.contains("format") && !t["format"].is_null()) {
      // Parsed again in order: a schema keeps its properties' order.
      const auto ordered = nlohmann::ordered_json::parse(text, nullptr, false);
      auto parsed =
          ParseResponseFormat(ordered["text"]["format"], "text.format", /*flat_schema=*/true);
      if (auto* e = std::get_if<ApiError>(&parsed)) return *e;
      format = std::get<std::optional<ConstraintSpec>>(parsed);
      text_format = t["format"];
    }
  }
  if (given("metadata")) {
    const json& m = body["metadata"];
    bool ok = m.is_object() && m.size() <= 16;
    if (ok) {
      for (auto it = m.begin(); it != m.end(); ++it) {
        ok = ok && it.key().size() <= 64 && it.value().is_string() &&
             it.value().get<std::string>().size() <= 512;
      }
    }
    if (!ok) {
      return Bad("metadata",
                 "'metadata' must be at most 16 string values (keys up to 64 characters, "
                 "values up to 512)");
    }
  }
  if (!given("input")) return Bad("input", "'input' is required");
  auto messages = InputMessages(body["input"]);
  if (auto* e = std::get_if<ApiError>(&messages)) return *e;
  ResponsesRequest r;
  json chat = {{"messages", json::array()}};
  if (given("instructions")) {
    if (!body["instructions"].is_string()) {
      return Bad("instructions", "'instructions' must be a string");
    }
    r.instructions = body["instructions"];
    chat["messages"].push_back({{"role", "system"}, {"content", r.instructions}});
  }
  for (json& m : std::get<json>(messages)) chat["messages"].push_back(std::move(m));
  for (const char* k : {"model", "temperature", "top_p", "stream", "user"}) {
    if (body.contains(k)) chat[k] = body[k];
  }
  if (given("max_output_tokens")) {
    chat["max_tokens"] = body["max_output_tokens"];
    r.max_output_tokens = body["max_output_tokens"];
  }
  auto parsed = ParseCompletionRequest(chat.dump(), /*chat=*/true);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    ApiError error = *e;
    if (error.param == "max_tokens") error.param = "max_output_tokens";
    if (error.param == "messages") error.param = "input";
    return error;
  }
  r.chat = std::move(std::get<CompletionRequest>(parsed));
  r.chat.constraint = std::move(format);
  r.text_format = std::move(text_format);
  if (given("metadata")) r.metadata = body["metadata"];
  if (given("user")) r.user = body["user"];
  return r;
}

void ResponseJob::Start(ServerState* state, ResponsesRequest request, PreparedPrompt prompt,
                        std::shared_ptr<http::ResponseWriter> writer, Clock::time_point arrival) {
  auto job = std::make_shared<ResponseJob>(state, std::move(request), writer);
  SubmitParams params;
  params.prompt_ids = std::move(prompt.ids);
  params.sampling = job->req_.chat.sampling;
  params.cache_salt = job->req_.chat.cache_salt;
  Generation::Options options;
  auto started = Generation::Start(*state, std::move(params), std::move(options), arrival);
  if (auto* refusal = std::get_if<Refusal>(&started)) {
    Refusal r = *refusal;
    if (r.field == "max_tokens") r.field = "max_output_tokens";
    if (r.field == "prompt") r.field = "input";
    return SendRefusal(*writer, r);
  }
  job->gen_ = std::move(std::get<std::unique_ptr<Generation>>(started));
  state->active_requests.fetch_add(1);
  if (job->req_.chat.stream) {
    writer->StartStream(200, "text/event-stream");
    job->Event("response.created", {{"response", job->ResponseObject("in_progress")}});
    job->Event("response.in_progress", {{"response", job->ResponseObject("in_progress")}});
    job->Event("response.output_item.added",
               {{"output_index", 0}, {"item", job->MessageItem("in_progress")}});
    job->Event("response.content_part.added",
               {{"item_id", job->item_id_},
                {"output_index", 0},
                {"content_index", 0},
                {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}});
  }
  std::weak_ptr<ResponseJob> weak = job;
  writer->OnClientGone([weak] {
    if (auto j = weak.lock()) j->Cancel();
  });
  job->gen_->stream().SetNotifier([job, writer] { writer->Run([job] { job->Pump(); }); });
  writer->Run([job] { job->Pump(); });  // outputs pushed before the notifier was set
}

ResponseJob::ResponseJob(ServerState* state, ResponsesRequest request,
                         std::shared_ptr<http::ResponseWriter> writer)
    : state_(state),
      req_(std::move(request)),
      writer_(std::move(writer)),
      id_(NewResponseId("resp_")),
      item_id_(NewResponseId("msg_")),
      created_(UnixSeconds()) {}

void ResponseJob::Event(const char* type, json fields) {
  fields["type"] = type;
  fields["sequence_number"] = sequence_++;
  writer_->WriteChunk(absl::StrCat("event: ", type, "\ndata: ", Dump(fields), "\n\n"));
}

void ResponseJob::Pump() {
  if (finished_) return;
  const GenerationDelta delta = gen_->Poll();
  if (req_.chat.stream && !delta.text.empty() && gen_->error().empty()) {
    Event("response.output_text.delta", {{"item_id", item_id_},
                                         {"output_index", 0},
                                         {"content_index", 0},
                                         {"delta", delta.text},
                                         {"logprobs", json::array()}});
  }
  if (gen_->done()) Finish();
}

json ResponseJob::TextPart() const {
  return {{"type", "output_text"},
          {"text", gen_ ? gen_->text() : std::string()},
          {"annotations", json::array()},
          {"logprobs", json::array()}};
}

json ResponseJob::MessageItem(const std::string& status) const {
  json content = json::array();
  if (status != "in_progress") content.push_back(TextPart());
  return {{"id", item_id_},
          {"type", "message"},
          {"status", status},
          {"role", "assistant"},
          {"content", std::move(content)}};
}

json ResponseJob::ResponseObject(const std::string& status) const {
  const CompletionRequest& c = req_.chat;
  json r = {{"id", id_},
            {"object", "response"},
            {"created_at", created_},
            {"status", status},
            {"error", nullptr},
            {"incomplete_details", nullptr},
            {"instructions", req_.instructions},
            {"max_output_tokens", req_.max_output_tokens},
            {"model", state_->served_model_name},
            {"output", json::array()},
            {"parallel_tool_calls", false},
            {"previous_response_id", nullptr},
            {"reasoning", {{"effort", nullptr}, {"summary", nullptr}}},
            {"store", false},
            {"temperature", c.sampling.temperature},
            {"text", {{"format", req_.text_format}}},
            {"tool_choice", "none"},
            {"tools", json::array()},
            {"top_p", c.sampling.top_p},
            {"truncation", "disabled"},
            {"usage", nullptr},
            {"user", req_.user},
            {"metadata", req_.metadata}};
  if (status == "in_progress") return r;
  if (status == "failed") {
    r["error"] = {{"code", "server_error"}, {"message", gen_->error()}};
    return r;
  }
  if (status == "incomplete") r["incomplete_details"] = {{"reason", "max_output_tokens"}};
  r["output"].push_back(MessageItem(status));
  const int input = gen_->num_prompt_tokens();
  const int output = static_cast<int>(gen_->token_ids().size());
  r["usage"] = {{"input_tokens", input},
                {"input_tokens_details", {{"cached_tokens", gen_->num_cached_tokens()}}},
                {"output_tokens", output},
                {"output_tokens_details", {{"reasoning_tokens", 0}}},
                {"total_tokens", input + output}};
  return r;
}

void ResponseJob::Cancel() {
  if (finished_) return;
  cancelled_ = true;
  gen_->Cancel();
  Finish();
}

void ResponseJob::Finish() {
  if (finished_) return;
  finished_ = true;
  gen_->stream().SetNotifier(nullptr);
  gen_->Record();
  state_->active_requests.fetch_sub(1);
  if (cancelled_) return;
  const bool failed = !gen_->error().empty();
  const std::string status = failed                                           ? "failed"
                             : gen_->finish_reason() == FinishReason::kLength ? "incomplete"
                                                                              : "completed";
  if (!req_.chat.stream) {
    if (failed) return SendError(*writer_, ApiError{500, "server_error", gen_->error(), ""});
    return SendJson(*writer_, 200, ResponseObject(status));
  }
  if (!failed) {
    Event("response.output_text.done", {{"item_id", item_id_},
                                        {"output_index", 0},
                                        {"content_index", 0},
                                        {"text", gen_->text()},
                                        {"logprobs", json::array()}});
    Event("response.content_part.done",
          {{"item_id", item_id_}, {"output_index", 0}, {"content_index", 0}, {"part", TextPart()}});
    Event("response.output_item.done", {{"output_index", 0}, {"item", MessageItem(status)}});
  }
  Event(failed ? "response.failed"
               : (status == "incomplete" ? "response.incomplete" : "response.completed"),
        {{"response", ResponseObject(status)}});
  writer_->EndStream();
}

}  // namespace sluice::openai
