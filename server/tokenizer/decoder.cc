#include "server/tokenizer/decoder.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace sluice {
namespace {

class ByteLevelDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::string bytes;
    for (const std::string& token : *tokens) {
      const size_t mark = bytes.size();
      size_t pos = 0;
      bool mapped = true;
      while (pos < token.size()) {
        const int len = utf8::SequenceLength(token, pos);
        const int b = len == 0 ? -1 : utf8::CodePointToByte(utf8::DecodeAt(token, pos, len));
        if (b < 0) {
          mapped = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
        pos += len;
      }
      if (!mapped) {
        bytes.resize(mark);
        bytes.append(token);
      }
    }
    tokens->assign(1, utf8::Lossy(bytes));
  }
  void TokenBytes(std::string* token) const override {
    std::string bytes;
    size_t pos = 0;
    while (pos < token->size()) {
      const int len = utf8::SequenceLength(*token, pos);
      const int b = len == 0 ? -1 : utf8::CodePointToByte(utf8::DecodeAt(*token, pos, len));
      if (b < 0) return;  // not a byte-level token: its text is its bytes
      bytes.push_back(static_cast<char>(b));
      pos += len;
    }
    *token = std::move(bytes);
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      std::string& token = (*tokens)[i];
      token = absl::StrReplaceAll(token, {{replacement_, " "}});
      if (i == 0 && strip_first_ && absl::StartsWith(token, " ")) token.erase(0, 1);
    }
  }
  void TokenBytes(std::string* token) const override {
    *token = absl::StrReplaceAll(*token, {{replacement_, " "}});
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    if (pattern_.empty()) return;
    for (std::string& token : *tokens) token = absl::StrReplaceAll(token, {{pattern_, content_}});
  }
  void TokenBytes(std::string* token) const override {
    if (!pattern_.empty()) *token = absl::StrReplaceAll(*token, {{pattern_, content_}});
  }

 private:
  std::string pattern_;
  std::string content_;
};

// Runs of <0xNN> tokens become their bytes when those are valid UTF-8, otherwise one
// U+FFFD per byte.
class ByteFallbackDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens->size());
    std::string run;
    size_t run_tokens = 0;
    auto flush = [&]() {
      if (run_tokens == 0) return;
      if (!utf8::FindInvalid(run).has_value()) {
        out.push_back(run);
      } else {
        for (size_t i = 0; i < run_tokens; ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      run.clear();
      run_tokens = 0;
    };
    for (std::string& token : *tokens) {
      if (const int b = ParseByte(token); b >= 0) {
        run.push_back(static_cast<char>(b));
        ++run_tokens;
        continue;
      }
      flush();
      out.push_back(std::move(token));
    }
    flush();
    *tokens = std::move(out);
  }
  void TokenBytes(std::string* token) const override {
    if (const int b = ParseByte(*token); b >= 0) *token = std::string(1, static_cast<char>(b));
  }

 private:
  static int HexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }
  static int ParseByte(const std::string& token) {
    if (token.size() != 6 || !absl::StartsWith(token, "<0x") || token[5] != '>') return -1;
    const int hi = HexDigit(token[3]), lo = HexDigit(token[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
  }
};

class FuseDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    tokens->assign(1, absl::StrJoin(*tokens, ""));
  }
  void TokenBytes(std::string*) const override {}
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, int start, int stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& token : *tokens) {
      for (int i = 0; i < start_ && absl::StartsWith(token, content_); ++i) {
        token.erase(0, content_.size());
      }
      for (int i = 0; i < stop_ && absl::EndsWith(token, content_); ++i) {
        token.resize(token.size() - content_.size());
      }
    }
  }
  // Stripping is of the whole text's ends, not of a token wherever it stands.
  void TokenBytes(std::string*) const override {}

 private:
  std::string content_;
  int start_;
  int stop_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (const auto& part : parts_) part->DecodeChain(tokens);
  }
  void TokenBytes(std::string* token) const override {
    for (const auto& part : parts_) part->TokenBytes(token);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const nlohmann::json& config) {
  const std::string type = config.at("type").get<std::string>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    bool strip_first = config.value("add_prefix_space", true);
    if (config.contains("prepend_scheme")) {
      strip_first = config.at("prepend_scheme").get<std::string>() != "never";
    }
    return std::make_unique<MetaspaceDecoder>(
        config.value("replacement", std::string("\xE2\x96\x81")), strip_first);
  }
  if (type == "Replace") {
    const nlohmann::json& pattern = config.at("pattern");
    if (!pattern.contains("String")) {
      return absl::InvalidArgumentError("Replace decoder supports only a String pattern");
    }
    return std::make_unique<ReplaceDecoder>(pattern.at("String").get<std::string>(),
                                            config.at("content").get<std::string>());
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(config.at("content").get<std::string>(),
                                          config.at("start").get<int>(),
                                          config.at("stop").get<int>());
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const nlohmann::json& part : config.at("decoders")) {
      auto made = DecoderFromJson(part);
      if (!made.ok()) return made.status();
      parts.push_back(std::move(*made));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported decoder type '", type, "'"));
}

}  // namespace sluice
