// The engine's public types: names, the one sampling validator every front uses, and the
// request stream.
#include "engine/api.h"

#include <cmath>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace sluice {
namespace {

constexpr char kFieldPayload[] = "sluice.invalid_field";

absl::Status Invalid(const std::string& field, const std::string& message) {
  absl::Status s = absl::InvalidArgumentError(absl::StrCat("'", field, "' ", message));
  s.SetPayload(kFieldPayload, absl::Cord(field));
  return s;
}

absl::Status Range(const std::string& field, double value, double lo, double hi) {
  return Invalid(field, absl::StrCat("must be between ", lo, " and ", hi, ", got ", value));
}

}  // namespace

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "?";
}

absl::Status ValidateSampling(const SamplingParams& s) {
  // NaN fails every comparison below, so each range test is written to reject it.
  if (!(s.temperature >= 0.0f && s.temperature <= 2.0f)) {
    return Range("temperature", s.temperature, 0, 2);
  }
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) {
    return Invalid("top_p", absl::StrCat("must be in (0, 1], got ", s.top_p));
  }
  if (s.top_k < -1)
    return Invalid("top_k", absl::StrCat("must be -1 (off), 0 (off) or positive, got ", s.top_k));
  if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) return Range("min_p", s.min_p, 0, 1);
  if (s.prompt_logprobs < -1 || s.prompt_logprobs > kMaxLogprobs) {
    return Range("prompt_logprobs", s.prompt_logprobs, 0, kMaxLogprobs);
  }
  // Scoring a prompt needs no new token: max_tokens 0 is the prompt alone.
  if (const int least = s.prompt_logprobs >= 0 ? 0 : 1; s.max_tokens < least) {
    return Invalid("max_tokens", absl::StrCat("must be at least ", least, ", got ", s.max_tokens));
  }
  if (!(std::abs(s.presence_penalty) <= 2.0f)) {
    return Range("presence_penalty", s.presence_penalty, -2, 2);
  }
  if (!(std::abs(s.frequency_penalty) <= 2.0f)) {
    return Range("frequency_penalty", s.frequency_penalty, -2, 2);
  }
  if (!(s.repetition_penalty > 0.0f && s.repetition_penalty <= 10.0f)) {
    return Invalid("repetition_penalty",
                   absl::StrCat("must be in (0, 10], got ", s.repetition_penalty));
  }
  if (s.logprobs < -1 || s.logprobs > kMaxLogprobs) {
    return Range("logprobs", s.logprobs, 0, kMaxLogprobs);
  }
  for (const auto& [id, bias] : s.logit_bias) {
    if (id < 0) return Invalid("logit_bias", absl::StrCat("token id ", id, " is negative"));
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      return Invalid("logit_bias", absl::StrCat("values must be between -100 and 100; token ", id,
                                                " has ", bias));
    }
  }
  for (int32_t id : s.allowed_token_ids) {
    if (id < 0) return Invalid("allowed_token_ids", absl::StrCat("token id ", id, " is negative"));
  }
  for (const std::vector<int32_t>& word : s.bad_words) {
    if (word.empty()) return Invalid("bad_words", "holds an empty word");
  }
  if (s.constraint && (!s.constraint->grammar || !s.constraint->vocab)) {
    return Invalid("constraint", "needs a grammar and a vocabulary");
  }
  if (s.min_tokens < 0 || s.min_tokens > s.max_tokens) {
    return Invalid("min_tokens", absl::StrCat("must be between 0 and max_tokens (", s.max_tokens,
                                              "), got ", s.min_tokens));
  }
  for (size_t i = 0; i < s.stop_token_ids.size(); ++i) {
    if (s.stop_token_ids[i] < 0) {
      return Invalid("stop_token_ids", absl::StrCat("must hold token ids >= 0; item ", i, " is ",
                                                    s.stop_token_ids[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateStops(const std::vector<std::string>& stops) {
  auto invalid = [](const std::string& message) { return InvalidFieldError("stop", message); };
  if (stops.size() > static_cast<size_t>(kMaxStopStrings)) {
    return invalid(absl::StrCat("holds ", stops.size(), " strings; at most ", kMaxStopStrings));
  }
  for (size_t i = 0; i < stops.size(); ++i) {
    if (stops[i].empty()) return invalid(absl::StrCat("string ", i, " is empty"));
    if (stops[i].size() > kMaxStopStringBytes) {
      return invalid(absl::StrCat("string ", i, " has ", stops[i].size(), " bytes; at most ",
                                  kMaxStopStringBytes));
    }
  }
  return absl::OkStatus();
}

absl::Status InvalidFieldError(const std::string& field, const std::string& message) {
  return Invalid(field, message);
}

std::optional<std::string> InvalidField(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kInvalidArgument) return std::nullopt;
  const auto field = status.GetPayload(kFieldPayload);
  if (!field) return std::nullopt;
  return std::string(*field);
}

void RequestStream::Push(RequestOutput output) {
  std::function<void()> notify;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(output));
    notify = notifier_;
  }
  cv_.notify_all();
  if (notify) notify();
}

std::optional<RequestOutput> RequestStream::Pop(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !queue_.empty(); })) return std::nullopt;
  RequestOutput out = std::move(queue_.front());
  queue_.pop_front();
  return out;
}

std::vector<RequestOutput> RequestStream::Drain() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<RequestOutput> out(std::make_move_iterator(queue_.begin()),
                                 std::make_move_iterator(queue_.end()));
  queue_.clear();
  return out;
}

void RequestStream::SetNotifier(std::function<void()> notifier) {
  std::lock_guard<std::mutex> lock(mu_);
  notifier_ = std::move(notifier);
}

}  // namespace sluice
