#include "server/openai/responses_api.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
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
    auto text_field = [&](const char* key) -> std::variant<std::string, ApiError> {
      if (!item.contains(key) || !item[key].is_string()) {
        return Bad(absl::StrCat(at, ".", key),
                   absl::StrCat("'", at, ".", key, "' must be a string"));
      }
      return item[key].get<std::string>();
    };
    if (type == "function_call") {
      // A call the model made earlier: an assistant turn with tool_calls, consecutive
      // calls in one turn.
      auto call_id = text_field("call_id");
      if (auto* e = std::get_if<ApiError>(&call_id)) return *e;
      auto name = text_field("name");
      if (auto* e = std::get_if<ApiError>(&name)) return *e;
      auto arguments = text_field("arguments");
      if (auto* e = std::get_if<ApiError>(&arguments)) return *e;
      json call = {{"id", std::get<std::string>(call_id)},
                   {"type", "function"},
                   {"function",
                    {{"name", std::get<std::string>(name)},
                     {"arguments", std::get<std::string>(arguments)}}}};
      if (messages.empty() || messages.back()["role"] != "assistant" ||
          !messages.back().contains("tool_calls")) {
        messages.push_back({{"role", "assistant"}, {"content", ""}, {"tool_calls", json::array()}});
      }
      messages.back()["tool_calls"].push_back(std::move(call));
      continue;
    }
    if (type == "function_call_output") {
      auto call_id = text_field("call_id");
      if (auto* e = std::get_if<ApiError>(&call_id)) return *e;
      auto output = text_field("output");
      if (auto* e = std::get_if<ApiError>(&output)) return *e;
      messages.push_back({{"role", "tool"},
                          {"tool_call_id", std::get<std::string>(call_id)},
                          {"content", std::get<std::string>(output)}});
      continue;
    }
    if (type != "message") {
      return Bad(at + ".type", absl::StrCat("items of type '", type,
                                            "' are not supported (message, function_call and "
                                            "function_call_output items only)"));
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
  // Function tools, flat as the Responses API writes them, become chat tools.
  const auto ordered_body = nlohmann::ordered_json::parse(text, nullptr, false);
  nlohmann::ordered_json chat_tools = nlohmann::ordered_json::array();
  if (given("tools")) {
    if (!body["tools"].is_array()) return Bad("tools", "'tools' must be a list");
    for (size_t i = 0; i < body["tools"].size(); ++i) {
      const nlohmann::ordered_json& t = ordered_body["tools"][i];
      const std::string at = absl::StrCat("tools[", i, "]");
      if (!t.is_object() || !t.contains("type") || t["type"] != "function") {
        return Bad(at + ".type", absl::StrCat("'", at,
                                              ".type' must be \"function\" (no built-in "
                                              "tools such as web_search run here)"));
      }
      nlohmann::ordered_json function = nlohmann::ordered_json::object();
      for (const auto& [key, value] : t.items()) {
        if (key == "type" || key == "strict") continue;
        if (key != "name" && key != "description" && key != "parameters") {
          return Bad(absl::StrCat(at, ".", key),
                     absl::StrCat("'", at, ".", key, "' is not a field of a function tool"));
        }
        function[key] = value;
      }
      chat_tools.push_back({{"type", "function"}, {"function", std::move(function)}});
    }
  }
  nlohmann::ordered_json chat_tool_choice = nullptr;
  if (given("tool_choice")) {
    const json& c = body["tool_choice"];
    if (c.is_object() && c.contains("type") && c["type"] == "function" && c.contains("name")) {
      chat_tool_choice = {{"type", "function"}, {"function", {{"name", c["name"]}}}};
    } else if (c.is_string()) {
      chat_tool_choice = c;
    } else {
      return Bad("tool_choice",
                 "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                 "{\"type\": \"function\", \"name\": ...}");
    }
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
  for (const char* k : {"model", "temperature", "top_p", "stream", "user", "parallel_tool_calls"}) {
    if (body.contains(k)) chat[k] = body[k];
  }
  if (!chat_tool_choice.is_null()) chat["tool_choice"] = json::parse(chat_tool_choice.dump());
  if (given("max_output_tokens")) {
    chat["max_tokens"] = body["max_output_tokens"];
    r.max_output_tokens = body["max_output_tokens"];
  }
  // The chat body's tools keep their properties' order: put them in as text.
  std::string chat_text = chat.dump();
  if (!chat_tools.empty()) {
    nlohmann::ordered_json with_tools = nlohmann::ordered_json::parse(chat.dump());
    with_tools["tools"] = chat_tools;
    chat_text = with_tools.dump();
  }
  auto parsed = ParseCompletionRequest(chat_text, /*chat=*/true);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    ApiError error = *e;
    if (error.param == "max_tokens") error.param = "max_output_tokens";
    if (error.param == "messages") error.param = "input";
    return error;
  }
  r.chat = std::move(std::get<CompletionRequest>(parsed));
  r.chat.constraint = std::move(format);
  r.text_format = std::move(text_format);
  if (given("tools")) r.tools = body["tools"];
  if (given("tool_choice")) r.tool_choice = body["tool_choice"];
  if (given("metadata")) r.metadata = body["metadata"];
  if (given("user")) r.user = body["user"];
  return r;
}

void ResponseJob::Start(ServerState* state, ResponsesRequest request, PreparedPrompt prompt,
                        std::shared_ptr<http::ResponseWriter> writer, Clock::time_point arrival,
                        ToolPlan tools) {
  auto job = std::make_shared<ResponseJob>(state, std::move(request), writer);
  job->tools_ = std::move(tools);
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
    // With tools the message opens only once there is content for it.
    if (!job->tools_.active()) job->OpenMessage();
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

void ResponseJob::OpenMessage() {
  if (message_index_ >= 0) return;
  message_index_ = next_output_index_++;
  Event("response.output_item.added",
        {{"output_index", message_index_}, {"item", MessageItem("in_progress")}});
  Event("response.content_part.added",
        {{"item_id", item_id_},
         {"output_index", message_index_},
         {"content_index", 0},
         {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}});
}

void ResponseJob::SendText(const std::string& text) {
  if (text.empty()) return;
  OpenMessage();
  message_text_ += text;
  Event("response.output_text.delta", {{"item_id", item_id_},
                                       {"output_index", message_index_},
                                       {"content_index", 0},
                                       {"delta", text},
                                       {"logprobs", json::array()}});
}

json ResponseJob::CallItem(const ToolCall& call, const std::string& item_id,
                           const std::string& status, bool with_arguments) const {
  return {{"type", "function_call"},
          {"id", item_id},
          {"call_id", call.id},
          {"name", call.name},
          {"arguments", with_arguments ? call.arguments : std::string()},
          {"status", status}};
}

void ResponseJob::SendCall(const ToolCall& call) {
  const int index = next_output_index_++;
  const std::string item_id = NewResponseId("fc_");
  calls_.push_back({call, item_id, index});
  Event("response.output_item.added",
        {{"output_index", index}, {"item", CallItem(call, item_id, "in_progress", false)}});
  // Arguments in pieces of up to 32 bytes, cut between UTF-8 characters.
  for (size_t at = 0; at < call.arguments.size();) {
    size_t end = std::min(call.arguments.size(), at + 32);
    while (end < call.arguments.size() &&
           (static_cast<unsigned char>(call.arguments[end]) & 0xC0) == 0x80) {
      ++end;
    }
    Event("response.function_call_arguments.delta",
          {{"item_id", item_id},
           {"output_index", index},
           {"delta", call.arguments.substr(at, end - at)}});
    at = end;
  }
  Event("response.function_call_arguments.done",
        {{"item_id", item_id}, {"output_index", index}, {"arguments", call.arguments}});
  Event("response.output_item.done",
        {{"output_index", index}, {"item", CallItem(call, item_id, "completed", true)}});
}

void ResponseJob::Pump() {
  if (finished_) return;
  const GenerationDelta delta = gen_->Poll();
  if (req_.chat.stream && gen_->error().empty()) {
    if (!tools_.active()) {
      SendText(delta.text);
    } else {
      const std::string& text = gen_->text();
      if (!calling_) {
        const size_t upto = StreamableContent(tools_, text, &calling_);
        if (upto > content_sent_) SendText(text.substr(content_sent_, upto - content_sent_));
        content_sent_ = std::max(content_sent_, upto);
      }
      if (calling_ && delta.text.find_first_of("}]>") != std::string::npos && !gen_->done()) {
        const AssistantTurn turn = ParseToolCalls(tools_, text);
        while (calls_.size() < turn.calls.size()) SendCall(turn.calls[calls_.size()]);
      }
    }
  }
  if (gen_->done()) Finish();
}

json ResponseJob::TextPart() const {
  return {{"type", "output_text"},
          {"text", message_text_},
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
            {"parallel_tool_calls", c.parallel_tool_calls.value_or(true)},
            {"previous_response_id", nullptr},
            {"reasoning", {{"effort", nullptr}, {"summary", nullptr}}},
            {"store", false},
            {"temperature", c.sampling.temperature},
            {"text", {{"format", req_.text_format}}},
            {"tool_choice", req_.tool_choice},
            {"tools", req_.tools},
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
  // In the order they were opened: the message (when it has text, or nothing else came),
  // then the calls.
  std::vector<std::pair<int, json>> items;
  if (message_index_ >= 0 || calls_.empty()) {
    items.emplace_back(message_index_ >= 0 ? message_index_ : -1, MessageItem(status));
  }
  for (const CallOut& c : calls_) {
    items.emplace_back(c.index, CallItem(c.call, c.item_id, "completed", true));
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [index, item] : items) r["output"].push_back(std::move(item));
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
  const bool stream = req_.chat.stream;
  if (!failed) {
    const std::string& text = gen_->text();
    if (!tools_.active()) {
      if (!stream) message_text_ = text;
    } else {
      const AssistantTurn turn = ParseToolCalls(tools_, text);
      if (turn.calls.empty()) {
        // No call after all: what was held back is text.
        if (stream) {
          if (text.size() > content_sent_) SendText(text.substr(content_sent_));
        } else {
          message_text_ = text;
          message_index_ = 0;
        }
      } else if (stream) {
        const std::string sent(absl::StripAsciiWhitespace(text.substr(0, content_sent_)));
        if (turn.content.size() > sent.size() && absl::StartsWith(turn.content, sent)) {
          SendText(turn.content.substr(sent.size()));
        }
        while (calls_.size() < turn.calls.size()) SendCall(turn.calls[calls_.size()]);
      } else {
        if (!turn.content.empty()) {
          message_text_ = turn.content;
          message_index_ = 0;
        }
        for (const ToolCall& call : turn.calls) {
          calls_.push_back({call, NewResponseId("fc_"), static_cast<int>(calls_.size()) + 1});
        }
      }
    }
  }
  if (!stream) {
    if (failed) return SendError(*writer_, ApiError{500, "server_error", gen_->error(), ""});
    return SendJson(*writer_, 200, ResponseObject(status));
  }
  if (!failed && message_index_ >= 0) {
    Event("response.output_text.done", {{"item_id", item_id_},
                                        {"output_index", message_index_},
                                        {"content_index", 0},
                                        {"text", message_text_},
                                        {"logprobs", json::array()}});
    Event("response.content_part.done", {{"item_id", item_id_},
                                         {"output_index", message_index_},
                                         {"content_index", 0},
                                         {"part", TextPart()}});
    Event("response.output_item.done",
          {{"output_index", message_index_}, {"item", MessageItem(status)}});
  }
  Event(failed ? "response.failed"
               : (status == "incomplete" ? "response.incomplete" : "response.completed"),
        {{"response", ResponseObject(status)}});
  writer_->EndStream();
}

}  // namespace sluice::openai
