#include "server/tokenizer/incremental_detokenizer.h"

#include "absl/strings/match.h"

namespace sluice {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string IncrementalDetokenizer::Delta(size_t end, std::string* window_text) const {
  const std::span<const int32_t> all(ids_);
  const std::string emitted = tokenizer_.Decode(
      all.subspan(prefix_offset_, read_offset_ - prefix_offset_), skip_special_tokens_);
  *window_text =
      tokenizer_.Decode(all.subspan(prefix_offset_, end - prefix_offset_), skip_special_tokens_);
  if (window_text->size() <= emitted.size()) return "";
  return window_text->substr(emitted.size());
}

std::string IncrementalDetokenizer::Add(std::span<const int32_t> ids) {
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  std::string window_text;
  std::string delta = Delta(ids_.size(), &window_text);
  if (delta.empty() || absl::EndsWith(delta, kReplacement)) return "";
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return delta;
}

std::string IncrementalDetokenizer::Finish() {
  std::string window_text;
  std::string delta = Delta(ids_.size(), &window_text);
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return delta;
}

}  // namespace sluice
