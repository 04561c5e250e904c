#include "server/openai/responses.h"

#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/api.h"

namespace sluice::openai {

using nlohmann::json;

std::string NewResponseId(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("%s%016x%08x", prefix, rng(), static_cast<uint32_t>(rng()));
}

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string SseEvent(const json& j) { return absl::StrCat("data: ", Dump(j), "\n\n"); }

void SendJson(http::ResponseWriter& w, int status, const json& body, http::Headers headers) {
  w.Send(status, "application/json", Dump(body), std::move(headers));
}

void SendError(http::ResponseWriter& w, const ApiError& error, http::Headers headers) {
  SendJson(w, error.status, error.ToJson(), std::move(headers));
}

void SendRefusal(http::ResponseWriter& w, const Refusal& refusal) {
  switch (refusal.kind) {
    case Refusal::Kind::kOverloaded: {
      const int64_t ms = refusal.retry_after_ms;
      SendError(w, ApiError{429, "rate_limit_exceeded", refusal.message, ""},
                {{"Retry-After", std::to_string(std::max<int64_t>(1, (ms + 999) / 1000))},
                 {"retry-after-ms", std::to_string(ms)}});
      return;
    }
    case Refusal::Kind::kUnavailable:
      SendError(w, ApiError{503, "service_unavailable", refusal.message, ""},
                {{"Retry-After", "5"}});
      return;
    case Refusal::Kind::kInvalid:
      SendError(w, ApiError{400, "invalid_request_error", refusal.message, refusal.field});
      return;
    case Refusal::Kind::kInternal:
      SendError(w, ApiError{500, "server_error", refusal.message, ""});
  }
}

namespace {

json TokenBytes(const std::string& s) {
  json bytes = json::array();
  for (unsigned char ch : s) bytes.push_back(static_cast<int>(ch));
  return bytes;
}

}  // namespace

json LogprobsJson(const Tokenizer& tok, bool chat, const std::vector<int32_t>& ids,
                  const std::vector<TokenLogprobs>& logprobs, size_t from, bool tokens_as_ids,
                  size_t offset_base) {
  const size_t end = std::min(ids.size(), logprobs.size());
  // vLLM's return_tokens_as_token_ids: "token_id:<id>", for tokens that are not valid
  // UTF-8 on their own.
  auto text_of = [&](int32_t id) {
    return tokens_as_ids ? absl::StrCat("token_id:", id) : TokenText(tok, id);
  };
  if (chat) {
    json content = json::array();
    for (size_t i = from; i < end; ++i) {
      json top = json::array();
      for (const auto& [id, lp] : logprobs[i].top) {
        const std::string t = text_of(id);
        top.push_back({{"token", t}, {"logprob", lp}, {"bytes", TokenBytes(t)}});
      }
      const std::string t = text_of(ids[i]);
      content.push_back({{"token", t},
                         {"logprob", logprobs[i].logprob},
                         {"bytes", TokenBytes(t)},
                         {"top_logprobs", std::move(top)}});
    }
    return {{"content", std::move(content)}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  size_t offset = offset_base;
  for (size_t i = 0; i < end; ++i) {
    const std::string t = text_of(ids[i]);
    if (i >= from) {
      tokens.push_back(t);
      token_logprobs.push_back(logprobs[i].logprob);
      json alternatives = json::object();
      for (const auto& [id, lp] : logprobs[i].top) alternatives[text_of(id)] = lp;
      top.push_back(std::move(alternatives));
      offsets.push_back(offset);
    }
    offset += tokens_as_ids ? TokenText(tok, ids[i]).size() : t.size();  // on the text itself
  }
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", top},
          {"text_offset", offsets}};
}

json EchoLogprobsJson(const Tokenizer& tok, const std::vector<int32_t>& prompt_ids,
                      const std::vector<TokenLogprobs>& scores, int top, bool tokens_as_ids,
                      bool specials_in_text, size_t* end) {
  json tokens = json::array(), token_logprobs = json::array(), tops = json::array(),
       offsets = json::array();
  size_t offset = 0;
  for (size_t i = 0; i < prompt_ids.size(); ++i) {
    const int32_t id = prompt_ids[i];
    const std::string text = TokenText(tok, id);
    tokens.push_back(tokens_as_ids ? absl::StrCat("token_id:", id) : text);
    offsets.push_back(offset);
    if (specials_in_text || !tok.IsSpecial(id)) offset += text.size();
    const TokenLogprobs* lp = i >= 1 && i - 1 < scores.size() ? &scores[i - 1] : nullptr;
    if (lp == nullptr) {
      token_logprobs.push_back(nullptr);
      tops.push_back(nullptr);
      continue;
    }
    token_logprobs.push_back(lp->logprob);
    json alternatives = json::object();
    for (size_t r = 0; r < lp->top.size() && r < static_cast<size_t>(std::max(top, 0)); ++r) {
      const auto& [alt, alt_lp] = lp->top[r];
      alternatives[tokens_as_ids ? absl::StrCat("token_id:", alt) : TokenText(tok, alt)] = alt_lp;
    }
    tops.push_back(std::move(alternatives));
  }
  if (end != nullptr) *end = offset;
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", tops},
          {"text_offset", offsets}};
}

void AppendLogprobs(json& into, const json& more) {
  for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) {
    for (const json& v : more[key]) into[key].push_back(v);
  }
}

json PromptLogprobsJson(const Tokenizer& tok, const std::vector<int32_t>& prompt_ids,
                        const std::vector<TokenLogprobs>& scores, int top) {
  json out = json::array();
  for (size_t i = 0; i < prompt_ids.size(); ++i) {
    if (i == 0 || i - 1 >= scores.size()) {
      out.push_back(nullptr);
      continue;
    }
    const TokenLogprobs& lp = scores[i - 1];
    json entry = json::object();
    for (size_t r = 0; r < lp.top.size() && r < static_cast<size_t>(std::max(top, 0)); ++r) {
      const auto& [alt, alt_lp] = lp.top[r];
      entry[std::to_string(alt)] = {{"logprob", alt_lp},
                                    {"rank", static_cast<int>(r) + 1},
                                    {"decoded_token", TokenText(tok, alt)}};
    }
    // The token itself, with its own rank, whether or not it is among the top.
    entry[std::to_string(prompt_ids[i])] = {{"logprob", lp.logprob},
                                            {"rank", lp.rank},
                                            {"decoded_token", TokenText(tok, prompt_ids[i])}};
    out.push_back(std::move(entry));
  }
  return out;
}

}  // namespace sluice::openai
