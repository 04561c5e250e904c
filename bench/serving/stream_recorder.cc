#include "bench/serving/stream_recorder.h"

#include "nlohmann/json.hpp"

namespace sluice::bench {

void SseParser::Feed(std::string_view bytes) {
  for (char c : bytes) {
    if (c == '\n' && last_was_cr_) {  // the \n of a \r\n already ended the line
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = (c == '\r');
    if (c == '\n' || c == '\r') {
      Line(line_);
      line_.clear();
    } else {
      line_.push_back(c);
    }
  }
}

void SseParser::Line(std::string_view line) {
  if (line.empty()) {
    if (has_data_) on_event_(data_);
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;
  const size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field != "data") return;
  if (has_data_) data_.push_back('\n');
  data_.append(value);
  has_data_ = true;
}

void StreamRecorder::OnEvent(std::string_view data, double t_s) {
  if (data == "[DONE]") {
    done_ = true;
    return;
  }
  const nlohmann::json j = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    if (error_.empty()) error_ = "unparsable SSE event: " + std::string(data.substr(0, 200));
    return;
  }
  if (j.contains("error")) {
    if (error_.empty()) error_ = "error event: " + j["error"].dump().substr(0, 300);
    return;
  }
  auto choices = j.find("choices");
  if (choices != j.end() && choices->is_array() && !choices->empty()) {
    if (num_chunks_ == 0) {
      first_s_ = t_s;
    } else {
      itl_s_.push_back(t_s - last_s_);
    }
    last_s_ = t_s;
    ++num_chunks_;
  }
  auto usage = j.find("usage");
  if (usage != j.end() && usage->is_object()) {
    prompt_tokens_ = usage->value("prompt_tokens", prompt_tokens_);
    completion_tokens_ = usage->value("completion_tokens", completion_tokens_);
    auto details = usage->find("prompt_tokens_details");
    if (details != usage->end() && details->is_object()) {
      cached_tokens_ = details->value("cached_tokens", cached_tokens_);
    }
  }
}

RequestResult StreamRecorder::Finish(const std::string& transport_error) const {
  RequestResult r;
  r.error = !transport_error.empty() ? transport_error : error_;
  if (r.error.empty() && num_chunks_ == 0) r.error = "no chunk with choices in the stream";
  r.ok = r.error.empty();
  r.ttft_s = first_s_;
  r.e2e_s = last_s_;
  r.itl_s = itl_s_;
  r.prompt_tokens = prompt_tokens_;
  r.output_tokens = completion_tokens_ >= 0 ? completion_tokens_ : num_chunks_;
  r.cached_tokens = cached_tokens_;
  return r;
}

}  // namespace sluice::bench
