#include "server/tokenizer/tokenizer.h"

#include <algorithm>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/utf8.h"
#include "server/tokenizer/added_tokens.h"
#include "server/tokenizer/bpe.h"
#include "server/tokenizer/decoder.h"
#include "server/tokenizer/normalizer.h"
#include "server/tokenizer/pretokenizer.h"

namespace sluice {

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool add_special_tokens) const {
  if (const auto bad = utf8::FindInvalid(text)) {
    return absl::InvalidArgumentError(
        absl::StrCat("input is not valid UTF-8 at byte offset ", *bad));
  }
  if (text.size() > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError("input is 4 GiB or more");
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  if (add_special_tokens) ids = special_prefix_;
  for (const Segment& segment : added_->Split(text, /*normalized=*/false)) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
    } else {
      EncodeText(text.substr(segment.start, segment.end - segment.start), segment.start == 0, &ids);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), special_suffix_.begin(), special_suffix_.end());
  return ids;
}

void Tokenizer::EncodeText(std::string_view text, bool is_first, std::vector<int32_t>* ids) const {
  if (normalizer_ == nullptr) {
    EncodeNormalized(text, is_first, ids);
    return;
  }
  std::string normalized(text);
  normalizer_->Normalize(&normalized);
  if (!added_->has_normalized()) {
    EncodeNormalized(normalized, is_first, ids);
    return;
  }
  for (const Segment& segment : added_->Split(normalized, /*normalized=*/true)) {
    if (segment.id >= 0) {
      ids->push_back(segment.id);
    } else {
      const std::string_view view = normalized;
      EncodeNormalized(view.substr(segment.start, segment.end - segment.start),
                       is_first && segment.start == 0, ids);
    }
  }
}

void Tokenizer::EncodeNormalized(std::string_view text, bool is_first,
                                 std::vector<int32_t>* ids) const {
  if (text.empty()) return;
  PieceBuffer buffer;
  buffer.text.assign(text);
  buffer.spans.push_back({0, static_cast<uint32_t>(text.size())});
  if (pre_tokenizer_ != nullptr) pre_tokenizer_->PreTokenize(&buffer, is_first);
  for (const PieceBuffer::Span& span : buffer.spans) model_->Tokenize(buffer.piece(span), ids);
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    if (const AddedToken* added = added_->Find(id)) {
      if (!(skip_special_tokens && added->special)) tokens.push_back(added->content);
      continue;
    }
    const std::string& token = model_->IdToToken(id);
    if (!token.empty()) tokens.push_back(token);
  }
  if (decoder_ == nullptr) return utf8::Lossy(absl::StrJoin(tokens, " "));
  decoder_->DecodeChain(&tokens);
  return absl::StrJoin(tokens, "");
}

int Tokenizer::vocab_size() const {
  int size = model_->vocab_size();
  for (const AddedToken& token : added_->tokens()) size = std::max(size, token.id + 1);
  return size;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (const auto id = added_->FindContent(token)) return id;
  return model_->TokenToId(token);
}

std::string Tokenizer::IdToToken(int32_t id) const {
  if (const AddedToken* added = added_->Find(id)) return added->content;
  return model_->IdToToken(id);
}

std::string Tokenizer::TokenBytes(int32_t id) const {
  if (const AddedToken* added = added_->Find(id)) return added->special ? "" : added->content;
  std::string token = model_->IdToToken(id);
  if (decoder_ != nullptr) decoder_->TokenBytes(&token);
  return token;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  const AddedToken* added = added_->Find(id);
  return added != nullptr && added->special;
}

}  // namespace sluice
