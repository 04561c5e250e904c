// Reading grammar sources (EBNF, regular expressions): a cursor that reports errors by
// line and column, characters with their escapes, character classes and {m,n} bounds.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "engine/grammar/grammar.h"

namespace sluice::grammar {

class TextReader {
 public:
  explicit TextReader(absl::string_view text) : text_(text) {}
  bool done() const { return pos_ >= text_.size(); }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  char peek(size_t ahead) const { return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0'; }
  char next() { return text_[pos_++]; }
  size_t pos() const { return pos_; }
  void Seek(size_t pos) { pos_ = pos; }
  bool LookingAt(absl::string_view s) const { return absl::StartsWith(text_.substr(pos_), s); }
  bool Consume(absl::string_view s) {
    if (!LookingAt(s)) return false;
    pos_ += s.size();
    return true;
  }
  // InvalidArgument: "expected <what> at line L, column C".
  absl::Status Error(size_t at, absl::string_view what) const;

 private:
  absl::string_view text_;
  size_t pos_ = 0;
};

void AppendUtf8(uint32_t cp, std::string& out);

// One character: an escape (\n \t \r \f \v \0 \\ \xHH \uHHHH \u{H...} or an escaped
// punctuation mark) or one UTF-8 encoded code point of the source.
absl::StatusOr<uint32_t> ReadChar(TextReader& in, bool in_class);

// A [class] at the reader (ranges, ^, escapes, \d \w \s and their negations), as an
// expression over bytes. `json_string`: '"', '\' and control characters are left out.
absl::StatusOr<Expr> ReadClass(TextReader& in, bool json_string);

// \d \w \s \D \W \S as code point ranges (negated for the capitals).
bool ShorthandClass(char c, std::vector<std::pair<uint32_t, uint32_t>>& ranges, bool* negate);

// {m}, {m,} or {m,n} at the reader; max -1 for no bound.
absl::StatusOr<std::pair<int, int>> ReadBounds(TextReader& in, const Limits& limits);

}  // namespace sluice::grammar
