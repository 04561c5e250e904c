#include "server/tokenizer/added_tokens.h"

#include <utf8proc.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/normalizer.h"

namespace sluice {
namespace {

// Code point ending text[..pos], or nullopt at the start.
std::optional<char32_t> CodePointBefore(std::string_view text, size_t pos) {
  if (pos == 0) return std::nullopt;
  size_t start = pos - 1;
  while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
  const int len = utf8::SequenceLength(text, start);
  if (len == 0) return std::nullopt;
  return utf8::DecodeAt(text, start, len);
}

std::optional<char32_t> CodePointAt(std::string_view text, size_t pos) {
  if (pos >= text.size()) return std::nullopt;
  const int len = utf8::SequenceLength(text, pos);
  if (len == 0) return std::nullopt;
  return utf8::DecodeAt(text, pos, len);
}

// A regex \w character: letter, mark, number, connector punctuation.
bool IsWordChar(std::optional<char32_t> cp) {
  if (!cp.has_value()) return false;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(*cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

// Rust's char::is_whitespace (the Unicode White_Space property).
bool IsWhitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

}  // namespace

absl::StatusOr<AddedTokens> AddedTokens::FromJson(const nlohmann::json& config,
                                                  const Normalizer* normalizer) {
  AddedTokens added;
  added.tries_[0].emplace_back();
  added.tries_[1].emplace_back();
  if (config.is_null()) return added;
  if (!config.is_array()) return absl::InvalidArgumentError("added_tokens must be an array");
  for (const nlohmann::json& entry : config) {
    AddedToken token;
    token.id = entry.at("id").get<int32_t>();
    token.content = entry.at("content").get<std::string>();
    token.special = entry.value("special", false);
    token.single_word = entry.value("single_word", false);
    token.lstrip = entry.value("lstrip", false);
    token.rstrip = entry.value("rstrip", false);
    token.normalized = entry.value("normalized", !token.special);
    if (token.content.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("added token ", token.id, " is empty"));
    }
    if (utf8::FindInvalid(token.content).has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("added token ", token.id, " is not UTF-8"));
    }
    added.by_id_[token.id] = added.tokens_.size();
    added.by_content_[token.content] = added.tokens_.size();
    added.tokens_.push_back(std::move(token));
  }
  for (size_t i = 0; i < added.tokens_.size(); ++i) {
    std::string match = added.tokens_[i].content;
    if (added.tokens_[i].normalized && normalizer != nullptr) normalizer->Normalize(&match);
    if (match.empty()) continue;
    added.Insert(&added.tries_[added.tokens_[i].normalized ? 1 : 0], match, i);
  }
  if (added.tries_[1].size() == 1) added.tries_[1].clear();
  return added;
}

void AddedTokens::Insert(Trie* trie, std::string_view content, size_t token_index) {
  first_bytes_[trie == &tries_[1] ? 1 : 0][static_cast<uint8_t>(content[0])] = true;
  int32_t node = 0;
  for (char c : content) {
    const auto b = static_cast<uint8_t>(c);
    auto it = (*trie)[node].children.find(b);
    if (it == (*trie)[node].children.end()) {
      const auto child = static_cast<int32_t>(trie->size());
      (*trie)[node].children.emplace(b, child);
      trie->emplace_back();
      node = child;
    } else {
      node = it->second;
    }
  }
  (*trie)[node].token = static_cast<int32_t>(token_index);
}

int32_t AddedTokens::LongestAt(const Trie& trie, std::string_view text, size_t pos,
                               size_t* end) const {
  int32_t best = -1;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto it = trie[node].children.find(static_cast<uint8_t>(text[i]));
    if (it == trie[node].children.end()) break;
    node = it->second;
    if (trie[node].token >= 0) {
      best = trie[node].token;
      *end = i + 1;
    }
  }
  return best;
}

std::vector<Segment> AddedTokens::Split(std::string_view text, bool normalized) const {
  std::vector<Segment> segments;
  const int which = normalized ? 1 : 0;
  const Trie& trie = tries_[which];
  size_t emitted = 0;  // Text before this offset is already in `segments`.
  size_t pos = 0;
  while (!trie.empty() && pos < text.size()) {
    if (!first_bytes_[which][static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    size_t stop = pos;
    const int32_t index = LongestAt(trie, text, pos, &stop);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[index];
    size_t start = pos;
    pos = stop;
    if (token.single_word &&
        (IsWordChar(CodePointBefore(text, start)) || IsWordChar(CodePointAt(text, stop)))) {
      continue;
    }
    if (token.lstrip) {
      while (start > emitted) {
        const auto cp = CodePointBefore(text, start);
        if (!cp.has_value() || !IsWhitespace(*cp)) break;
        --start;
        while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
      }
    }
    if (token.rstrip) {
      while (const auto cp = CodePointAt(text, stop)) {
        if (!IsWhitespace(*cp)) break;
        stop += utf8::SequenceLength(text, stop);
      }
      pos = stop;
    }
    if (start > emitted) segments.push_back({emitted, start, -1});
    segments.push_back({start, stop, token.id});
    emitted = stop;
  }
  if (emitted < text.size()) segments.push_back({emitted, text.size(), -1});
  return segments;
}

const AddedToken* AddedTokens::Find(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t> AddedTokens::FindContent(std::string_view content) const {
  const auto it = by_content_.find(utf8::View(content));
  if (it == by_content_.end()) return std::nullopt;
  return tokens_[it->second].id;
}

}  // namespace sluice
