#include "server/tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/regex.h"

namespace sluice {
namespace {

bool IsAscii(char c) { return static_cast<unsigned char>(c) < 0x80; }

// NFC/NFD/NFKC/NFKD through utf8proc. ASCII text is invariant under every form and no
// composition joins two ASCII characters, so only the stretches around non-ASCII
// characters go through utf8proc.
class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(int options) : options_(options) {}

  void Normalize(std::string* text) const override {
    const std::string& in = *text;
    const std::string_view view = in;
    size_t pos = 0;
    while (pos < in.size() && IsAscii(in[pos])) ++pos;
    if (pos == in.size()) return;
    std::string out;
    out.reserve(in.size() + 16);
    size_t copied = 0;
    while (pos < in.size()) {
      // A stretch starts at the ASCII character before the first non-ASCII one (it may
      // take a combining mark) and ends where two ASCII characters meet.
      const size_t start = (pos > copied && IsAscii(in[pos - 1])) ? pos - 1 : pos;
      out.append(in, copied, start - copied);
      size_t end = pos;
      while (end < in.size() &&
             !(IsAscii(in[end]) && (end + 1 == in.size() || IsAscii(in[end + 1])))) {
        ++end;
      }
      AppendNormalized(view.substr(start, end - start), &out);
      copied = end;
      pos = end;
      while (pos < in.size() && IsAscii(in[pos])) ++pos;
    }
    out.append(in, copied, std::string::npos);
    *text = std::move(out);
  }

 private:
  void AppendNormalized(std::string_view stretch, std::string* out) const {
    utf8proc_uint8_t* result = nullptr;
    const utf8proc_ssize_t n =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(stretch.data()),
                     static_cast<utf8proc_ssize_t>(stretch.size()), &result,
                     static_cast<utf8proc_option_t>(options_));
    if (n < 0) {
      out->append(stretch);  // Unreachable for valid UTF-8; keep the text unchanged.
    } else {
      out->append(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
    }
    std::free(result);
  }

  int options_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void Normalize(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string pattern, std::unique_ptr<Regex> regex, std::string content)
      : pattern_(std::move(pattern)), regex_(std::move(regex)), content_(std::move(content)) {}

  void Normalize(std::string* text) const override {
    if (regex_ == nullptr) {
      if (!pattern_.empty()) *text = absl::StrReplaceAll(*text, {{pattern_, content_}});
      return;
    }
    std::string out;
    size_t pos = 0;
    Regex::Match m;
    while (pos <= text->size() && regex_->Find(*text, pos, &m)) {
      out.append(*text, pos, m.start - pos);
      out.append(content_);
      pos = m.end > m.start ? m.end : m.end + 1;
      if (m.end == m.start && m.start < text->size()) out.push_back((*text)[m.start]);
    }
    if (pos < text->size()) out.append(*text, pos, std::string::npos);
    *text = std::move(out);
  }

 private:
  std::string pattern_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  void Normalize(std::string* text) const override {
    for (const auto& part : parts_) part->Normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const nlohmann::json& config) {
  const std::string type = config.at("type").get<std::string>();
  if (type == "NFC") {
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
  }
  if (type == "NFD") {
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
  }
  if (type == "NFKC") {
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                                               UTF8PROC_COMPAT);
  }
  if (type == "NFKD") {
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE |
                                               UTF8PROC_COMPAT);
  }
  if (type == "Prepend") {
    return std::make_unique<PrependNormalizer>(config.at("prepend").get<std::string>());
  }
  if (type == "Replace") {
    const nlohmann::json& pattern = config.at("pattern");
    std::string content = config.at("content").get<std::string>();
    if (pattern.contains("String")) {
      return std::make_unique<ReplaceNormalizer>(pattern.at("String").get<std::string>(), nullptr,
                                                 std::move(content));
    }
    auto regex = Regex::Compile(pattern.at("Regex").get<std::string>());
    if (!regex.ok()) return regex.status();
    return std::make_unique<ReplaceNormalizer>("", std::move(*regex), std::move(content));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const nlohmann::json& part : config.at("normalizers")) {
      auto normalizer = NormalizerFromJson(part);
      if (!normalizer.ok()) return normalizer.status();
      parts.push_back(std::move(*normalizer));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported normalizer type '", type, "'"));
}

}  // namespace sluice
