#include "server/core/generation.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"

namespace sluice {
namespace {

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

}  // namespace

std::string TokenText(const Tokenizer& tokenizer, int32_t id) {
  return tokenizer.Decode(std::vector<int32_t>{id}, /*skip_special_tokens=*/false);
}

Refusal RefusalOf(ServerState& state, const absl::Status& status, const std::string& protocol) {
  Refusal r;
  r.message = std::string(status.message());
  switch (status.code()) {
    case absl::StatusCode::kResourceExhausted:
      r.kind = Refusal::Kind::kOverloaded;
      r.retry_after_ms = RetryAfterMs(status).value_or(1000);
      state.metrics->Rejected("overloaded", protocol);
      break;
    case absl::StatusCode::kUnavailable:
      r.kind = Refusal::Kind::kUnavailable;
      state.metrics->Rejected("draining", protocol);
      break;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      r.kind = Refusal::Kind::kInvalid;
      r.field = InvalidField(status).value_or("");
      state.metrics->Rejected("invalid", protocol);
      break;
    default:
      r.kind = Refusal::Kind::kInternal;
      state.metrics->Rejected("invalid", protocol);
  }
  return r;
}

std::variant<std::unique_ptr<Generation>, Refusal> Generation::Start(ServerState& state,
                                                                     SubmitParams params,
                                                                     Options options,
                                                                     Clock::time_point arrival) {
  if (absl::Status s = ValidateStops(options.stop); !s.ok()) {
    return RefusalOf(state, s, options.protocol);
  }
  params.sampling.logprobs = options.logprobs ? std::max(params.sampling.logprobs, 0) : -1;
  absl::StatusOr<std::shared_ptr<RequestStream>> stream = state.engine->Submit(std::move(params));
  if (!stream.ok()) return RefusalOf(state, stream.status(), options.protocol);
  return std::unique_ptr<Generation>(
      new Generation(state, *std::move(stream), std::move(options), arrival));
}

Generation::Generation(ServerState& state, std::shared_ptr<RequestStream> stream, Options options,
                       Clock::time_point arrival)
    : state_(state),
      stream_(std::move(stream)),
      options_(std::move(options)),
      arrival_(arrival),
      detok_(*state.tokenizer, options_.skip_special_tokens) {
  for (const std::string& s : options_.stop) max_stop_len_ = std::max(max_stop_len_, s.size());
}

Generation::~Generation() {
  stream_->SetNotifier(nullptr);
  if (!done_) state_.engine->Abort(stream_->id());
}

GenerationDelta Generation::Poll() {
  GenerationDelta delta;
  if (done_) return delta;
  for (RequestOutput& out : stream_->Drain()) {
    Consume(std::move(out), delta);
    if (done_) break;
  }
  delta.finished = done_;
  return delta;
}

void Generation::Consume(RequestOutput out, GenerationDelta& delta) {
  if (!out.prompt_logprobs.empty()) prompt_logprobs_ = std::move(out.prompt_logprobs);
  has_output_ = true;
  if (!out.new_token_ids.empty()) {
    if (!has_first_token_) {
      timing_.ttft_s = Seconds(arrival_, out.time);
      has_first_token_ = true;
    } else {
      timing_.itl_s.push_back(Seconds(last_token_time_, out.time));
    }
    last_token_time_ = out.time;
  }
  num_prompt_tokens_ = out.num_prompt_tokens;
  num_cached_tokens_ = out.num_cached_prompt_tokens;
  timing_.queue_s = out.queue_time_s;
  auto finish = [&](std::string& piece) {
    piece += detok_.Finish();
    finish_reason_ = out.finish_reason;
    stop_token_id_ = out.stop_token_id;
    if (out.finish_reason == FinishReason::kAbort || out.finish_reason == FinishReason::kError) {
      error_ = out.error.empty() ? "request aborted" : out.error;
    }
  };
  // Token by token: an output may carry several (kept speculative drafts), and a stop
  // string inside them ends the tokens there as well as the text.
  const size_t n = out.new_token_ids.size();
  for (size_t i = 0; i < n && !done_; ++i) {
    const int32_t id = out.new_token_ids[i];
    const bool final_piece = i + 1 == n && out.finished();
    token_ids_.push_back(id);
    delta.token_ids.push_back(id);
    if (options_.logprobs && i < out.logprobs.size()) {
      logprobs_.push_back(out.logprobs[i]);
      delta.logprobs.push_back(std::move(out.logprobs[i]));
    }
    std::string piece = detok_.Add(id);
    if (final_piece) finish(piece);
    delta.text += TakeText(std::move(piece), final_piece);
  }
  if (n == 0 && out.finished()) {
    std::string piece;
    finish(piece);
    delta.text += TakeText(std::move(piece), true);
  }
  if (done_) {
    timing_.e2e_s = Seconds(arrival_, out.time);
    timing_.output_tokens = static_cast<int>(token_ids_.size());
  }
}

std::string Generation::TakeText(std::string piece, bool final_piece) {
  held_ += piece;
  // A stop string ends the generation: text up to it is handed out, the request aborted.
  size_t stop_at = std::string::npos;
  const std::string* matched = nullptr;
  for (const std::string& s : options_.stop) {
    const size_t at = held_.find(s);
    if (at < stop_at) stop_at = at, matched = &s;
  }
  std::string out;
  if (stop_at != std::string::npos) {
    stop_string_ = *matched;
    stop_token_id_ = -1;
    out = held_.substr(0, stop_at + (options_.include_stop_str_in_output ? matched->size() : 0));
    held_.clear();
    if (!final_piece) state_.engine->Abort(stream_->id());
    finish_reason_ = FinishReason::kStop;
    error_.clear();
    final_piece = true;
  } else if (final_piece || max_stop_len_ == 0) {
    out = std::move(held_);
    held_.clear();
  } else if (held_.size() >= max_stop_len_) {
    // Hold back what could still begin a stop string, cut on a UTF-8 boundary.
    size_t cut = held_.size() - (max_stop_len_ - 1);
    while (cut > 0 && (static_cast<unsigned char>(held_[cut]) & 0xC0) == 0x80) --cut;
    out = held_.substr(0, cut);
    held_.erase(0, cut);
  }
  text_ += out;
  if (final_piece) done_ = true;
  return out;
}

nlohmann::json Generation::stop_reason() const {
  if (finish_reason_ != FinishReason::kStop) return nullptr;
  if (!stop_string_.empty()) return stop_string_;
  if (stop_token_id_ >= 0) return stop_token_id_;
  return nullptr;
}

void Generation::Cancel() {
  if (!done_) state_.engine->Abort(stream_->id());
  cancelled_ = true;
  done_ = true;
}

void Generation::Record() {
  if (recorded_) return;
  recorded_ = true;
  const char* outcome = cancelled_ ? "cancelled" : (error_.empty() ? "success" : "error");
  state_.metrics->Finished(outcome, timing_, options_.protocol);
}

}  // namespace sluice
