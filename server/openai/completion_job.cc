#include "server/openai/completion_job.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/openai/responses.h"
#include "spdlog/spdlog.h"

namespace sluice::openai {

using nlohmann::json;

struct CompletionJob::Choice {
  int index = 0;
  std::shared_ptr<RequestStream> stream;
  std::unique_ptr<IncrementalDetokenizer> detok;
  std::string pending;  // decoded text held back while it could start a stop string
  std::string text;     // text answered so far
  std::vector<int32_t> token_ids;
  std::vector<TokenLogprobs> logprobs;
  size_t logprobs_sent = 0;
  int num_prompt_tokens = 0;
  int num_cached_tokens = 0;
  std::string finish_reason;  // "stop", "length"; empty while running
  std::string error;
  bool done = false;
  bool sent_role = false;
  bool has_first_token = false;
  Clock::time_point last_token_time;
  RequestTiming timing;
};

void CompletionJob::Start(ServerState* state, CompletionRequest request,
                          std::vector<PreparedPrompt> prompts,
                          std::shared_ptr<http::ResponseWriter> writer, Clock::time_point arrival) {
  auto job = std::make_shared<CompletionJob>(state, std::move(request), std::move(prompts), writer,
                                             arrival);
  // Submit every choice; a refusal of any aborts the ones already admitted.
  for (size_t p = 0; p < job->prompts_.size(); ++p) {
    for (int i = 0; i < job->req_.n; ++i) {
      SubmitParams params;
      params.prompt_ids = job->prompts_[p].ids;
      params.sampling = job->req_.sampling;
      params.sampling.logprobs = job->req_.logprobs;
      if (params.sampling.seed && i > 0) params.sampling.seed = *params.sampling.seed + i;
      params.cache_salt = job->req_.cache_salt;
      params.priority = job->req_.priority;
      auto stream = state->engine->Submit(std::move(params));
      if (!stream.ok()) {
        for (auto& c : job->choices_) state->engine->Abort(c->stream->id());
        job->finished_ = true;
        SendEngineRefusal(*state, *writer, stream.status());
        return;
      }
      auto c = std::make_unique<Choice>();
      c->index = static_cast<int>(job->choices_.size());
      c->stream = *stream;
      c->detok = std::make_unique<IncrementalDetokenizer>(*state->tokenizer,
                                                          /*skip_special_tokens=*/true);
      job->choices_.push_back(std::move(c));
    }
  }
  state->active_requests.fetch_add(1);
  if (job->req_.stream) writer->StartStream(200, "text/event-stream");
  std::weak_ptr<CompletionJob> weak = job;
  writer->OnClientGone([weak] {
    if (auto j = weak.lock()) j->Cancel();
  });
  for (auto& c : job->choices_) {
    c->stream->SetNotifier([job, writer] { writer->Run([job] { job->Pump(); }); });
  }
  writer->Run([job] { job->Pump(); });  // outputs pushed before the notifier was set
}

CompletionJob::CompletionJob(ServerState* state, CompletionRequest request,
                             std::vector<PreparedPrompt> prompts,
                             std::shared_ptr<http::ResponseWriter> writer,
                             Clock::time_point arrival)
    : state_(state),
      req_(std::move(request)),
      prompts_(std::move(prompts)),
      writer_(std::move(writer)),
      arrival_(arrival),
      id_(NewResponseId(req_.chat ? "chatcmpl-" : "cmpl-")),
      created_(UnixSeconds()) {
  for (const std::string& s : req_.stop) max_stop_len_ = std::max(max_stop_len_, s.size());
}

CompletionJob::~CompletionJob() = default;

void CompletionJob::Pump() {
  if (finished_) return;
  for (auto& c : choices_) {
    if (c->done) continue;
    for (RequestOutput& out : c->stream->Drain()) {
      Consume(*c, std::move(out));
      if (c->done) break;
    }
  }
  if (std::all_of(choices_.begin(), choices_.end(), [](const auto& c) { return c->done; })) {
    Finish();
  }
}

void CompletionJob::Consume(Choice& c, RequestOutput out) {
  if (!out.new_token_ids.empty()) {
    if (!c.has_first_token) {
      c.timing.ttft_s = std::chrono::duration<double>(out.time - arrival_).count();
      c.has_first_token = true;
    } else {
      c.timing.itl_s.push_back(std::chrono::duration<double>(out.time - c.last_token_time).count());
    }
    c.last_token_time = out.time;
  }
  c.token_ids.insert(c.token_ids.end(), out.new_token_ids.begin(), out.new_token_ids.end());
  if (req_.logprobs >= 0) {
    c.logprobs.insert(c.logprobs.end(), out.logprobs.begin(), out.logprobs.end());
  }
  c.num_prompt_tokens = out.num_prompt_tokens;
  c.num_cached_tokens = out.num_cached_prompt_tokens;
  c.timing.queue_s = out.queue_time_s;
  std::string delta = c.detok->Add(out.new_token_ids);
  if (out.finished()) {
    delta += c.detok->Finish();
    c.timing.e2e_s = std::chrono::duration<double>(out.time - arrival_).count();
    c.timing.output_tokens = static_cast<int>(c.token_ids.size());
    switch (out.finish_reason) {
      case FinishReason::kStop:
        c.finish_reason = "stop";
        break;
      case FinishReason::kLength:
        c.finish_reason = "length";
        break;
      default:
        c.error = out.error.empty() ? "request aborted" : out.error;
        c.finish_reason = "abort";
    }
  }
  EmitText(c, std::move(delta), out.finished());
}

void CompletionJob::EmitText(Choice& c, std::string delta, bool final_piece) {
  c.pending += delta;
  // A stop string ends the choice: text up to it is answered, the request aborted.
  size_t stop_at = std::string::npos;
  for (const std::string& s : req_.stop) stop_at = std::min(stop_at, c.pending.find(s));
  std::string out;
  if (stop_at != std::string::npos) {
    out = c.pending.substr(0, stop_at);
    c.pending.clear();
    if (!final_piece) state_->engine->Abort(c.stream->id());
    c.finish_reason = "stop";
    c.error.clear();
    final_piece = true;
  } else if (final_piece || max_stop_len_ == 0) {
    out = std::move(c.pending);
    c.pending.clear();
  } else if (c.pending.size() >= max_stop_len_) {
    // Hold back what could still begin a stop string, cut on a UTF-8 boundary.
    size_t cut = c.pending.size() - (max_stop_len_ - 1);
    while (cut > 0 && (static_cast<unsigned char>(c.pending[cut]) & 0xC0) == 0x80) --cut;
    out = c.pending.substr(0, cut);
    c.pending.erase(0, cut);
  }
  c.text += out;
  if (final_piece) c.done = true;
  if (!req_.stream) return;
  if (!c.error.empty() && c.done) return;  // reported by Finish
  if (!out.empty() || c.done || (req_.chat && !c.sent_role)) {
    SendChunk(c, out, c.done ? c.finish_reason.c_str() : nullptr,
              req_.logprobs >= 0 ? ChoiceLogprobs(c, c.logprobs_sent) : json(nullptr));
    c.logprobs_sent = c.logprobs.size();
  }
}

void CompletionJob::SendChunk(const Choice& c, const std::string& text, const char* finish_reason,
                              const json& logprobs) {
  json choice = {{"index", c.index},
                 {"logprobs", logprobs},
                 {"finish_reason", finish_reason ? json(finish_reason) : json(nullptr)}};
  if (req_.chat) {
    json delta = json::object();
    if (!c.sent_role) delta["role"] = "assistant";
    if (!text.empty() || !c.sent_role) delta["content"] = text;
    const_cast<Choice&>(c).sent_role = true;
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

json CompletionJob::ChoiceLogprobs(const Choice& c, size_t from) const {
  return LogprobsJson(*state_->tokenizer, req_.chat, c.token_ids, c.logprobs, from);
}

json CompletionJob::Usage() const {
  int prompt = 0, completion = 0, cached = 0;
  for (size_t i = 0; i < choices_.size(); ++i) {
    completion += static_cast<int>(choices_[i]->token_ids.size());
    if (i % req_.n == 0) {  // each prompt counts once, whatever n
      prompt += choices_[i]->num_prompt_tokens;
      cached += choices_[i]->num_cached_tokens;
    }
  }
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

json CompletionJob::FullResponse() const {
  json choices = json::array();
  for (const auto& c : choices_) {
    json choice = {{"index", c->index},
                   {"finish_reason", c->finish_reason},
                   {"logprobs", req_.logprobs >= 0 ? ChoiceLogprobs(*c, 0) : json(nullptr)}};
    if (req_.chat) {
      choice["message"] = {{"role", "assistant"}, {"content", c->text}};
    } else {
      const size_t prompt_index = static_cast<size_t>(c->index / req_.n);
      choice["text"] = req_.echo ? prompts_[prompt_index].text + c->text : c->text;
    }
    choices.push_back(std::move(choice));
  }
  return {{"id", id_},
          {"object", req_.chat ? "chat.completion" : "text_completion"},
          {"created", created_},
          {"model", state_->served_model_name},
          {"choices", std::move(choices)},
          {"usage", Usage()}};
}

void CompletionJob::Cancel() {
  if (finished_) return;
  cancelled_ = true;
  for (auto& c : choices_) {
    if (!c->done) state_->engine->Abort(c->stream->id());
  }
  Finish();
}

void CompletionJob::Finish() {
  if (finished_) return;
  finished_ = true;
  std::string error;
  for (auto& c : choices_) {
    c->stream->SetNotifier(nullptr);
    if (!c->error.empty()) error = c->error;
    const char* outcome = cancelled_ ? "cancelled" : (c->error.empty() ? "success" : "error");
    state_->metrics->Finished(outcome, c->timing);
  }
  state_->active_requests.fetch_sub(1);
  if (cancelled_) return;
  if (req_.stream) {
    if (!error.empty()) {
      writer_->WriteChunk(SseEvent(ApiError{500, "server_error", error, ""}.ToJson()));
    } else if (req_.include_usage) {
      writer_->WriteChunk(SseEvent({{"id", id_},
                                    {"object", req_.chat ? "chat.completion.chunk"
                                                         : "text_completion"},
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
