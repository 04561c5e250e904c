#include "server/tokenizer/pretokenizer.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/regex.h"

namespace sluice {
namespace {

using Span = PieceBuffer::Span;

// The GPT-2 pattern that ByteLevel applies when use_regex is true.
constexpr std::string_view kByteLevelPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

absl::StatusOr<Behavior> ParseBehavior(const std::string& name) {
  if (name == "Removed") return Behavior::kRemoved;
  if (name == "Isolated") return Behavior::kIsolated;
  if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::kMergedWithNext;
  if (name == "Contiguous") return Behavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("unsupported Split behavior '", name, "'"));
}

std::string EscapeLiteral(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !absl::ascii_isalnum(c)) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

struct Part {
  Span span;
  bool is_match;
};

// Appends to `out` the pieces that `behavior` makes of the alternating parts of one span.
void ApplyBehavior(const std::vector<Part>& parts, Behavior behavior, std::vector<Span>* out) {
  const size_t first = out->size();
  bool previous_match = false;
  if (behavior == Behavior::kMergedWithNext) {
    std::vector<Span> reversed;
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
      if (it->is_match && !previous_match && !reversed.empty()) {
        reversed.back().start = it->span.start;
      } else {
        reversed.push_back(it->span);
      }
      previous_match = it->is_match;
    }
    out->insert(out->end(), reversed.rbegin(), reversed.rend());
    return;
  }
  for (const Part& part : parts) {
    const bool has_last = out->size() > first;
    switch (behavior) {
      case Behavior::kRemoved:
        if (!part.is_match) out->push_back(part.span);
        break;
      case Behavior::kIsolated:
        out->push_back(part.span);
        break;
      case Behavior::kMergedWithPrevious:
        if (part.is_match && !previous_match && has_last) {
          out->back().end = part.span.end;
        } else {
          out->push_back(part.span);
        }
        break;
      case Behavior::kContiguous:
        if (part.is_match == previous_match && has_last) {
          out->back().end = part.span.end;
        } else {
          out->push_back(part.span);
        }
        break;
      case Behavior::kMergedWithNext:
        break;
    }
    previous_match = part.is_match;
  }
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> regex, Behavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}

  void PreTokenize(PieceBuffer* buffer, bool /*is_first_segment*/) const override {
    std::vector<Span> out;
    out.reserve(buffer->spans.size() + buffer->text.size() / 4);
    std::vector<Part> parts;
    for (const Span& span : buffer->spans) {
      const std::string_view piece = buffer->piece(span);
      if (behavior_ == Behavior::kIsolated) {
        ForEachPart(piece, [&](size_t start, size_t end, bool /*is_match*/) {
          out.push_back(Offset(span, start, end));
        });
        continue;
      }
      parts.clear();
      ForEachPart(piece, [&](size_t start, size_t end, bool is_match) {
        parts.push_back({Offset(span, start, end), is_match != invert_});
      });
      ApplyBehavior(parts, behavior_, &out);
    }
    buffer->spans = std::move(out);
  }

 private:
  static Span Offset(const Span& span, size_t start, size_t end) {
    return {static_cast<uint32_t>(span.start + start), static_cast<uint32_t>(span.start + end)};
  }

  // Calls fn(start, end, is_match) for each match in `piece` and each stretch of text
  // between matches, in order. Empty matches do not split.
  template <typename Fn>
  void ForEachPart(std::string_view piece, Fn fn) const {
    size_t gap = 0;  // Start of the text not yet passed to fn.
    size_t pos = 0;
    Regex::Match m;
    while (pos < piece.size() && regex_->Find(piece, pos, &m)) {
      if (m.end == m.start) {
        pos = m.end + 1;
        while (pos < piece.size() && (static_cast<uint8_t>(piece[pos]) & 0xC0) == 0x80) {
          ++pos;
        }
        continue;
      }
      if (m.start > gap) fn(gap, m.start, false);
      fn(m.start, m.end, true);
      gap = pos = m.end;
    }
    if (gap < piece.size()) fn(gap, piece.size(), false);
  }

  std::unique_ptr<Regex> regex_;
  Behavior behavior_;
  bool invert_;
};

// Rebuilds `buffer` with each piece replaced by rewrite(piece, index).
template <typename Fn>
void RewritePieces(PieceBuffer* buffer, Fn rewrite) {
  PieceBuffer out;
  out.text.reserve(buffer->text.size() + buffer->spans.size());
  out.spans.reserve(buffer->spans.size());
  for (size_t i = 0; i < buffer->spans.size(); ++i) {
    const auto start = static_cast<uint32_t>(out.text.size());
    rewrite(buffer->piece(buffer->spans[i]), i, &out.text);
    out.spans.push_back({start, static_cast<uint32_t>(out.text.size())});
  }
  *buffer = std::move(out);
}

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<PreTokenizer> split)
      : add_prefix_space_(add_prefix_space), split_(std::move(split)) {}

  void PreTokenize(PieceBuffer* buffer, bool is_first_segment) const override {
    if (add_prefix_space_) {
      RewritePieces(buffer, [](std::string_view piece, size_t, std::string* out) {
        if (piece.empty() || piece[0] != ' ') out->push_back(' ');
        out->append(piece);
      });
    }
    if (split_ != nullptr) split_->PreTokenize(buffer, is_first_segment);
  }
  bool is_byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<PreTokenizer> split_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  MetaspacePreTokenizer(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}

  void PreTokenize(PieceBuffer* buffer, bool is_first_segment) const override {
    RewritePieces(buffer, [&](std::string_view piece, size_t index, std::string* out) {
      const bool first = is_first_segment && index == 0;
      const bool prepend = prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && first);
      std::string replaced = absl::StrReplaceAll(utf8::View(piece), {{" ", replacement_}});
      if (prepend && !absl::StartsWith(replaced, replacement_)) out->append(replacement_);
      out->append(replaced);
    });
    if (!split_) return;
    std::vector<Span> out;
    for (const Span& span : buffer->spans) {
      // MergedWithNext on the replacement character: each piece starts at one.
      const std::string_view piece = buffer->piece(span);
      size_t start = 0;
      size_t pos = piece.find(replacement_, 1);
      while (pos != std::string_view::npos) {
        out.push_back(
            {span.start + static_cast<uint32_t>(start), span.start + static_cast<uint32_t>(pos)});
        start = pos;
        pos = piece.find(replacement_, pos + replacement_.size());
      }
      if (start < piece.size()) {
        out.push_back({span.start + static_cast<uint32_t>(start), span.end});
      }
    }
    buffer->spans = std::move(out);
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void PreTokenize(PieceBuffer* buffer, bool is_first_segment) const override {
    for (const auto& part : parts_) part->PreTokenize(buffer, is_first_segment);
  }
  bool is_byte_level() const override {
    for (const auto& part : parts_) {
      if (part->is_byte_level()) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeSplit(std::string_view pattern, Behavior behavior,
                                                        bool invert) {
  auto regex = Regex::Compile(pattern);
  if (!regex.ok()) return regex.status();
  return std::make_unique<SplitPreTokenizer>(std::move(*regex), behavior, invert);
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> SplitFromJson(const nlohmann::json& config) {
  const nlohmann::json& pattern = config.at("pattern");
  std::string regex = pattern.contains("Regex")
                          ? pattern.at("Regex").get<std::string>()
                          : EscapeLiteral(pattern.at("String").get<std::string>());
  auto behavior = ParseBehavior(config.at("behavior").get<std::string>());
  if (!behavior.ok()) return behavior.status();
  return MakeSplit(regex, *behavior, config.value("invert", false));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> MetaspaceFromJson(const nlohmann::json& config) {
  auto prepend = MetaspacePreTokenizer::Prepend::kAlways;
  if (config.contains("prepend_scheme")) {
    const std::string scheme = config.at("prepend_scheme").get<std::string>();
    if (scheme == "first") {
      prepend = MetaspacePreTokenizer::Prepend::kFirst;
    } else if (scheme == "never") {
      prepend = MetaspacePreTokenizer::Prepend::kNever;
    } else if (scheme != "always") {
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported Metaspace prepend_scheme '", scheme, "'"));
    }
  } else if (!config.value("add_prefix_space", true)) {
    prepend = MetaspacePreTokenizer::Prepend::kNever;
  }
  return std::make_unique<MetaspacePreTokenizer>(
      config.value("replacement", std::string("\xE2\x96\x81")), prepend,
      config.value("split", true));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const nlohmann::json& config) {
  const std::string type = config.at("type").get<std::string>();
  if (type == "Split") return SplitFromJson(config);
  if (type == "ByteLevel") {
    std::unique_ptr<PreTokenizer> split;
    if (config.value("use_regex", true)) {
      auto made = MakeSplit(kByteLevelPattern, Behavior::kIsolated, false);
      if (!made.ok()) return made.status();
      split = std::move(*made);
    }
    return std::make_unique<ByteLevelPreTokenizer>(config.value("add_prefix_space", true),
                                                   std::move(split));
  }
  if (type == "Metaspace") return MetaspaceFromJson(config);
  if (type == "Digits") {
    return MakeSplit(config.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)",
                     Behavior::kIsolated, false);
  }
  if (type == "WhitespaceSplit") return MakeSplit(R"(\s+)", Behavior::kRemoved, false);
  if (type == "Whitespace") return MakeSplit(R"(\w+|[^\w\s]+)", Behavior::kRemoved, true);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const nlohmann::json& part : config.at("pretokenizers")) {
      auto made = PreTokenizerFromJson(part);
      if (!made.ok()) return made.status();
      parts.push_back(std::move(*made));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported pre_tokenizer type '", type, "'"));
}

}  // namespace sluice
