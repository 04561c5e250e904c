#include "server/openai/completion_job.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/openai/responses.h"
#include "spdlog/spdlog.h"

namespace sluice::openai {

using nlohmann::json;

namespace {

const char* FinishReasonText(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    default:
      return "abort";
  }
}

}  // namespace

void CompletionJob::Start(ServerState* state, CompletionRequest request,
                          std::vector<PreparedPrompt> prompts,
                          std::shared_ptr<http::ResponseWriter> writer, Clock::time_point arrival,
                          ToolPlan tools) {
  auto job = std::make_shared<CompletionJob>(state, std::move(request), std::move(prompts), writer);
  job->tools_ = std::move(tools);
  // Submit every choice; a refusal of any aborts the ones already admitted (their
  // Generations abort as they go).
  for (size_t p = 0; p < job->prompts_.size(); ++p) {
    for (int i = 0; i < job->req_.n; ++i) {
      SubmitParams params;
      params.prompt_ids = job->prompts_[p].ids;
      params.sampling = job->req_.sampling;
      params.sampling.logprobs = job->req_.logprobs;
      if (params.sampling.seed && i > 0) params.sampling.seed = *params.sampling.seed + i;
      params.cache_salt = job->req_.cache_salt;
      params.priority = job->req_.priority;
      Generation::Options options;
      options.stop = job->req_.stop;
      options.include_stop_str_in_output = job->req_.include_stop_str_in_output;
      options.logprobs = job->req_.logprobs >= 0;
      auto started = Generation::Start(*state, std::move(params), std::move(options), arrival);
      if (auto* refusal = std::get_if<Refusal>(&started)) {
        job->finished_ = true;
        job->choices_.clear();
        SendRefusal(*writer, *refusal);
        return;
      }
      Choice c;
      c.index = static_cast<int>(job->choices_.size());
      c.gen = std::move(std::get<std::unique_ptr<Generation>>(started));
      job->choices_.push_back(std::move(c));
    }
  }
  state->active_requests.fetch_add(1);
  if (job->req_.stream) writer->StartStream(200, "text/event-stream");
  std::weak_ptr<CompletionJob> weak = job;
  writer->OnClientGone([weak] {
    if (auto j = weak.lock()) j->Cancel();
  });
  for (Choice& c : job->choices_) {
    c.gen->stream().SetNotifier([job, writer] { writer->Run([job] { job->Pump(); }); });
  }
  writer->Run([job] { job->Pump(); });  // outputs pushed before the notifier was set
}

CompletionJob::CompletionJob(ServerState* state, CompletionRequest request,
                             std::vector<PreparedPrompt> prompts,
                             std::shared_ptr<http::ResponseWriter> writer)
    : state_(state),
      req_(std::move(request)),
      prompts_(std::move(prompts)),
      writer_(std::move(writer)),
      id_(NewResponseId(req_.chat ? "chatcmpl-" : "cmpl-")),
      created_(UnixSeconds()) {}

CompletionJob::~CompletionJob() = default;

void CompletionJob::Pump() {
  if (finished_) return;
  for (Choice& c : choices_) {
    if (c.gen->done()) continue;
    const GenerationDelta delta = c.gen->Poll();
    if (!delta.token_ids.empty() || !delta.text.empty() || delta.finished) Emit(c, delta);
  }
  if (std::all_of(choices_.begin(), choices_.end(),
                  [](const Choice& c) { return c.gen->done(); })) {
    Finish();
  }
}

void CompletionJob::Emit(Choice& c, const GenerationDelta& delta) {
  if (!req_.stream) return;
  const bool failed = delta.finished && !c.gen->error().empty();
  if (failed) return;  // reported by Finish
  if (tools_.active()) return EmitToolCalls(c, delta);
  if (req_.echo && !c.echo_sent) {
    // The prompt first, with its scores when logprobs are asked for.
    c.echo_sent = true;
    SendChunk(c, PromptOf(c).text, nullptr,
              req_.logprobs >= 0 ? EchoLogprobs(c, nullptr) : json(nullptr));
  }
  if (!delta.text.empty() || delta.finished || (req_.chat && !c.sent_role)) {
    SendChunk(c, delta.text, delta.finished ? FinishReasonText(c.gen->finish_reason()) : nullptr,
              req_.logprobs >= 0 ? ChoiceLogprobs(c, c.logprobs_sent) : json(nullptr));
    c.logprobs_sent = c.gen->logprobs().size();
  }
}

void CompletionJob::SendChunk(Choice& c, const std::string& text, const char* finish_reason,
                              const json& logprobs) {
  json choice = {{"index", c.index},
                 {"logprobs", logprobs},
                 {"finish_reason", finish_reason ? json(finish_reason) : json(nullptr)}};
  if (finish_reason != nullptr) choice["stop_reason"] = c.gen->stop_reason();
  if (req_.chat) {
    json delta = json::object();
    if (!c.sent_role) delta["role"] = "assistant";
    if (!text.empty() || !c.sent_role) delta["content"] = text;
    c.sent_role = true;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  json chunk = {{"id", id_},
                {"object", req_.chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created_},
                {"model", state_->served_model_name},
                {"choices", json::array({choice})}};
  if (req_.include_usage) chunk["usage"] = req_.continuous_usage ? Usage() : json(nullptr);
  writer_->WriteChunk(SseEvent(chunk));
}

void CompletionJob::SendDelta(Choice& c, json delta, const char* finish_reason) {
  if (!c.sent_role) delta["role"] = "assistant";
  c.sent_role = true;
  // A call's tokens carry their logprobs on the chunk that ends the choice.
  const bool last = finish_reason != nullptr;
  json choice = {{"index", c.index},
                 {"delta", std::move(delta)},
                 {"logprobs", last && req_.logprobs >= 0 ? ChoiceLogprobs(c, 0) : json(nullptr)},
                 {"finish_reason", finish_reason ? json(finish_reason) : json(nullptr)}};
  if (last) choice["stop_reason"] = c.gen->stop_reason();
  json chunk = {{"id", id_},
                {"object", "chat.completion.chunk"},
                {"created", created_},
                {"model", state_->served_model_name},
                {"choices", json::array({std::move(choice)})}};
  if (req_.include_usage) chunk["usage"] = req_.continuous_usage ? Usage() : json(nullptr);
  writer_->WriteChunk(SseEvent(chunk));
}

void CompletionJob::EmitToolCalls(Choice& c, const GenerationDelta& delta) {
  if (tools_.choice == ToolPlan::Choice::kNamed) {
    // The text is the arguments: the call opens with its name, then grows.
    if (!c.call_opened) {
      c.call_opened = true;
      call_ids_.resize(choices_.size());
      call_ids_[static_cast<size_t>(c.index)] = NewToolCallId();
      SendDelta(c,
                {{"tool_calls",
                  json::array({{{"index", 0},
                                {"id", call_ids_[static_cast<size_t>(c.index)]},
                                {"type", "function"},
                                {"function", {{"name", tools_.named}, {"arguments", ""}}}}})}},
                nullptr);
    }
    if (!delta.text.empty()) {
      SendDelta(c,
                {{"tool_calls",
                  json::array({{{"index", 0}, {"function", {{"arguments", delta.text}}}}})}},
                nullptr);
    }
    if (delta.finished) SendDelta(c, json::object(), "tool_calls");
    return;
  }
  const std::string& text = c.gen->text();
  if (!c.calling) {
    const size_t upto = StreamableContent(tools_, text, &c.calling);
    if (upto > c.content_sent) {
      SendDelta(c, {{"content", text.substr(c.content_sent, upto - c.content_sent)}}, nullptr);
      c.content_sent = upto;
    }
  }
  // A call is whole once its closing bracket or tag has come: parse then.
  const bool may_close = delta.text.find_first_of("}]>") != std::string::npos;
  if (!delta.finished && !(c.calling && may_close)) return;
  const AssistantTurn turn = ParseToolCalls(tools_, text);
  for (; c.calls_sent < turn.calls.size(); ++c.calls_sent) {
    SendCall(c, c.calls_sent, turn.calls[c.calls_sent]);
  }
  if (!delta.finished) return;
  if (turn.calls.empty()) {
    // No call after all: what was held back is content.
    if (text.size() > c.content_sent)
      SendDelta(c, {{"content", text.substr(c.content_sent)}}, nullptr);
  } else {
    // Content after the calls (hermes), past what went out ahead of them.
    const absl::string_view sent = absl::StripAsciiWhitespace(text.substr(0, c.content_sent));
    if (turn.content.size() > sent.size() && absl::StartsWith(turn.content, sent)) {
      SendDelta(c, {{"content", turn.content.substr(sent.size())}}, nullptr);
    }
  }
  const char* reason = nullptr;
  Message(c, &reason);
  SendDelta(c, json::object(), reason);
}

void CompletionJob::SendCall(Choice& c, size_t index, const ToolCall& call) {
  SendDelta(
      c,
      {{"tool_calls", json::array({{{"index", index},
                                    {"id", call.id},
                                    {"type", "function"},
                                    {"function", {{"name", call.name}, {"arguments", ""}}}}})}},
      nullptr);
  // Arguments in pieces of up to 32 bytes, cut between UTF-8 characters.
  size_t at = 0;
  while (at < call.arguments.size()) {
    size_t end = std::min(call.arguments.size(), at + 32);
    while (end < call.arguments.size() &&
           (static_cast<unsigned char>(call.arguments[end]) & 0xC0) == 0x80) {
      ++end;
    }
    SendDelta(
        c,
        {{"tool_calls",
          json::array({{{"index", index},
                        {"function", {{"arguments", call.arguments.substr(at, end - at)}}}}})}},
        nullptr);
    at = end;
  }
}

json CompletionJob::Message(const Choice& c, const char** finish_reason) const {
  *finish_reason = FinishReasonText(c.gen->finish_reason());
  json message = {{"role", "assistant"}, {"content", c.gen->text()}};
  if (!tools_.active()) return message;
  AssistantTurn turn = ParseToolCalls(tools_, c.gen->text());
  if (turn.calls.empty()) return message;
  if (tools_.choice == ToolPlan::Choice::kNamed &&
      static_cast<size_t>(c.index) < call_ids_.size() &&
      !call_ids_[static_cast<size_t>(c.index)].empty()) {
    turn.calls[0].id = call_ids_[static_cast<size_t>(c.index)];
  }
  json calls = json::array();
  for (const ToolCall& call : turn.calls) {
    calls.push_back({{"id", call.id},
                     {"type", "function"},
                     {"function", {{"name", call.name}, {"arguments", call.arguments}}}});
  }
  message["content"] = turn.content.empty() ? json(nullptr) : json(turn.content);
  message["tool_calls"] = std::move(calls);
  if (c.gen->finish_reason() == FinishReason::kStop) *finish_reason = "tool_calls";
  return message;
}

json CompletionJob::ChoiceLogprobs(const Choice& c, size_t from) const {
  // Offsets of an echoing answer count from the end of the prompt.
  size_t base = 0;
  if (req_.echo && !req_.chat) EchoLogprobs(c, &base);
  return LogprobsJson(*state_->tokenizer, req_.chat, c.gen->token_ids(), c.gen->logprobs(), from,
                      req_.return_tokens_as_token_ids, base);
}

json CompletionJob::EchoLogprobs(const Choice& c, size_t* end) const {
  const PreparedPrompt& p = PromptOf(c);
  return EchoLogprobsJson(*state_->tokenizer, p.ids, c.gen->prompt_logprobs(), req_.logprobs,
                          req_.return_tokens_as_token_ids, p.specials_in_text, end);
}

json CompletionJob::Usage() const {
  int prompt = 0, completion = 0, cached = 0;
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Generation& g = *choices_[i].gen;
    completion += static_cast<int>(g.token_ids().size());
    if (i % req_.n == 0) {  // each prompt counts once, whatever n
      prompt += g.num_prompt_tokens();
      cached += g.num_cached_tokens();
    }
  }
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

json CompletionJob::FullResponse() const {
  json choices = json::array();
  for (const Choice& c : choices_) {
    const std::string& text = c.gen->text();
    json choice = {{"index", c.index},
                   {"finish_reason", FinishReasonText(c.gen->finish_reason())},
                   {"stop_reason", c.gen->stop_reason()},
                   {"logprobs", req_.logprobs >= 0 ? ChoiceLogprobs(c, 0) : json(nullptr)}};
    if (req_.chat) {
      const char* reason = nullptr;
      choice["message"] = Message(c, &reason);
      choice["finish_reason"] = reason;
    } else {
      choice["text"] = req_.echo ? PromptOf(c).text + text : text;
      if (req_.echo && req_.logprobs >= 0) {
        json echoed = EchoLogprobs(c, nullptr);
        AppendLogprobs(echoed, choice["logprobs"]);
        choice["logprobs"] = std::move(echoed);
      }
      // vLLM's prompt_logprobs sits on each completions choice.
      if (req_.prompt_logprobs >= 0) {
        choice["prompt_logprobs"] = PromptLogprobsJson(
            *state_->tokenizer, PromptOf(c).ids, c.gen->prompt_logprobs(), req_.prompt_logprobs);
      }
    }
    choices.push_back(std::move(choice));
  }
  json response = {{"id", id_},
                   {"object", req_.chat ? "chat.completion" : "text_completion"},
                   {"created", created_},
                   {"model", state_->served_model_name},
                   {"choices", std::move(choices)},
                   {"usage", Usage()}};
  // ...and at the top of a chat answer (one prompt, whatever n).
  if (req_.chat && req_.prompt_logprobs >= 0 && !choices_.empty()) {
    response["prompt_logprobs"] =
        PromptLogprobsJson(*state_->tokenizer, prompts_[0].ids, choices_[0].gen->prompt_logprobs(),
                           req_.prompt_logprobs);
  }
  return response;
}

void CompletionJob::Cancel() {
  if (finished_) return;
  cancelled_ = true;
  for (Choice& c : choices_) c.gen->Cancel();
  Finish();
}

void CompletionJob::Finish() {
  if (finished_) return;
  finished_ = true;
  std::string error;
  for (Choice& c : choices_) {
    c.gen->stream().SetNotifier(nullptr);
    if (!c.gen->error().empty()) error = c.gen->error();
    c.gen->Record();
  }
  state_->active_requests.fetch_sub(1);
  if (cancelled_) return;
  if (req_.stream) {
    if (!error.empty()) {
      writer_->WriteChunk(SseEvent(ApiError{500, "server_error", error, ""}.ToJson()));
    } else if (req_.include_usage) {
      writer_->WriteChunk(
          SseEvent({{"id", id_},
                    {"object", req_.chat ? "chat.completion.chunk" : "text_completion"},
                    {"created", created_},
                    {"model", state_->served_model_name},
                    {"choices", json::array()},
                    {"usage", Usage()}}));
    }
    writer_->WriteChunk("data: [DONE]\n\n");
    writer_->EndStream();
    return;
  }
  if (!error.empty()) {
    SendError(*writer_, ApiError{500, "server_error", error, ""});
    return;
  }
  SendJson(*writer_, 200, FullResponse());
}

}  // namespace sluice::openai
