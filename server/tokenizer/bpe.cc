#include "server/tokenizer/bpe.h"

#include <climits>
#include <cstddef>
#include <cstdio>
#include <queue>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace sluice {
namespace {

constexpr size_t kSmallWord = 48;
constexpr std::string_view kMetaspace = "\xE2\x96\x81";

// True if "▁" at byte `pos` of `text` follows a character other than "▁".
bool FollowsOtherChar(std::string_view text, size_t pos) {
  return pos > 0 && (pos < kMetaspace.size() ||
                     text.substr(pos - kMetaspace.size(), kMetaspace.size()) != kMetaspace);
}

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// Maps a token written in the byte-level alphabet back to raw bytes; nullopt if a
// character is outside the alphabet.
std::optional<std::string> ByteLevelToBytes(std::string_view token) {
  std::string out;
  size_t pos = 0;
  while (pos < token.size()) {
    const int len = utf8::SequenceLength(token, pos);
    if (len == 0) return std::nullopt;
    const int b = utf8::CodePointToByte(utf8::DecodeAt(token, pos, len));
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
    pos += len;
  }
  return out;
}

const std::string& EmptyString() {
  static const std::string* const empty = new std::string();
  return *empty;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const nlohmann::json& config,
                                                             bool byte_level) {
  std::unique_ptr<BpeModel> model(new BpeModel());
  if (config.contains("dropout") && !config.at("dropout").is_null() &&
      config.at("dropout").get<double>() != 0.0) {
    return absl::InvalidArgumentError("BPE dropout is not supported");
  }
  for (const char* field : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (config.contains(field) && !config.at(field).is_null() &&
        !config.at(field).get<std::string>().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("BPE ", field, " is not supported"));
    }
  }
  model->byte_level_ = byte_level;
  model->ignore_merges_ = config.value("ignore_merges", false);
  model->byte_fallback_ = config.value("byte_fallback", false);
  model->fuse_unk_ = config.value("fuse_unk", false);
  if (absl::Status status = model->LoadVocab(config); !status.ok()) return status;
  if (absl::Status status = model->LoadMerges(config.at("merges")); !status.ok()) {
    return status;
  }
  return model;
}

absl::Status BpeModel::LoadVocab(const nlohmann::json& config) {
  const nlohmann::json& vocab = config.at("vocab");
  if (!vocab.is_object()) return absl::InvalidArgumentError("BPE vocab must be an object");
  vocab_.reserve(vocab.size());
  for (const auto& [token, id_json] : vocab.items()) {
    const auto id = id_json.get<int32_t>();
    if (id < 0) return absl::InvalidArgumentError(absl::StrCat("negative id for '", token, "'"));
    vocab_.emplace(token, id);
    if (static_cast<size_t>(id) >= id_to_token_.size()) {
      id_to_token_.resize(id + 1);
    }
    id_to_token_[id] = token;
  }
  if (config.contains("unk_token") && !config.at("unk_token").is_null()) {
    const auto it = vocab_.find(config.at("unk_token").get<std::string>());
    if (it != vocab_.end()) unk_id_ = it->second;
  }
  byte_ids_.fill(-1);
  fallback_ids_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    if (auto it = vocab_.find(absl::string_view(name)); it != vocab_.end()) {
      fallback_ids_[b] = it->second;
    }
    if (byte_level_) {
      const auto it = vocab_.find(utf8::ByteLevelStrings()[b]);
      if (it != vocab_.end()) byte_ids_[b] = it->second;
    }
  }
  split_at_metaspace_ =
      !byte_level_ && vocab_.contains(absl::string_view(kMetaspace.data(), kMetaspace.size()));
  for (const auto& [token, id] : vocab_) {
    for (size_t pos = token.find(kMetaspace, 1); split_at_metaspace_ && pos != std::string::npos;
         pos = token.find(kMetaspace, pos + 1)) {
      if (FollowsOtherChar(token, pos)) split_at_metaspace_ = false;
    }
  }
  if (byte_level_) {
    byte_vocab_.reserve(vocab_.size());
    for (const auto& [token, id] : vocab_) {
      if (auto bytes = ByteLevelToBytes(token)) byte_vocab_.emplace(std::move(*bytes), id);
    }
  }
  return absl::OkStatus();
}

absl::Status BpeModel::LoadMerges(const nlohmann::json& merges) {
  if (!merges.is_array()) return absl::InvalidArgumentError("BPE merges must be an array");
  merges_.reserve(merges.size());
  int32_t rank = 0;
  for (const nlohmann::json& merge : merges) {
    std::string left, right;
    if (merge.is_string()) {
      const std::string line = merge.get<std::string>();
      const size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("merge ", rank, " '", line, "' is not 'a b'"));
      }
      left = line.substr(0, space);
      right = line.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", rank, " is neither \"a b\" nor [a, b]"));
    }
    const auto l = vocab_.find(left), r = vocab_.find(right), m = vocab_.find(left + right);
    if (l == vocab_.end() || r == vocab_.end() || m == vocab_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("merge ", rank, " ('", left, "', '", right,
                                                     "') uses a token not in the vocab"));
    }
    merges_.try_emplace(PairKey(l->second, r->second), MergeTarget{rank, m->second});
    ++rank;
  }
  return absl::OkStatus();
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  const auto it = vocab_.find(utf8::View(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string& BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return EmptyString();
  return id_to_token_[id];
}

std::optional<BpeModel::MergeTarget> BpeModel::FindMerge(int32_t left, int32_t right) const {
  const auto it = merges_.find(PairKey(left, right));
  if (it == merges_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::InitialSymbols(std::string_view piece, std::vector<int32_t>* symbols) const {
  bool last_unk = false;
  auto push_unk = [&]() {
    if (!unk_id_.has_value()) return;
    if (!(fuse_unk_ && last_unk)) symbols->push_back(*unk_id_);
    last_unk = true;
  };
  if (byte_level_) {
    for (char c : piece) {
      const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
      if (id >= 0) {
        symbols->push_back(id);
        last_unk = false;
      } else {
        push_unk();
      }
    }
    return;
  }
  size_t pos = 0;
  while (pos < piece.size()) {
    int len = utf8::SequenceLength(piece, pos);
    if (len == 0) len = 1;
    const std::string_view ch = piece.substr(pos, len);
    pos += len;
    if (const auto it = vocab_.find(utf8::View(ch)); it != vocab_.end()) {
      symbols->push_back(it->second);
      last_unk = false;
      continue;
    }
    bool has_all_bytes = byte_fallback_;
    for (char c : ch) has_all_bytes = has_all_bytes && fallback_ids_[static_cast<uint8_t>(c)] >= 0;
    if (has_all_bytes) {
      for (char c : ch) symbols->push_back(fallback_ids_[static_cast<uint8_t>(c)]);
      last_unk = false;
    } else {
      push_unk();
    }
  }
}

void BpeModel::MergeSmall(std::vector<int32_t>* symbols) const {
  std::vector<int32_t>& s = *symbols;
  MergeTarget pairs[kSmallWord];
  constexpr MergeTarget kNone{INT_MAX, -1};
  for (size_t i = 0; i + 1 < s.size(); ++i) pairs[i] = FindMerge(s[i], s[i + 1]).value_or(kNone);
  while (s.size() > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < s.size(); ++i) {
      if (pairs[i].rank < pairs[best].rank) best = i;
    }
    if (pairs[best].rank == INT_MAX) break;
    s[best] = pairs[best].id;
    s.erase(s.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    for (size_t i = best + 1; i + 1 < s.size(); ++i) pairs[i] = pairs[i + 1];
    if (best > 0) pairs[best - 1] = FindMerge(s[best - 1], s[best]).value_or(kNone);
    if (best + 1 < s.size()) pairs[best] = FindMerge(s[best], s[best + 1]).value_or(kNone);
  }
}

void BpeModel::MergeLarge(std::vector<int32_t>* symbols) const {
  const auto n = static_cast<int32_t>(symbols->size());
  std::vector<Symbol> sym(n);
  for (int32_t i = 0; i < n; ++i) sym[i] = {(*symbols)[i], i - 1, i + 1 < n ? i + 1 : -1};
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto push_pair = [&](int32_t pos) {
    if (pos < 0 || sym[pos].next < 0) return;
    if (auto m = FindMerge(sym[pos].id, sym[sym[pos].next].id)) queue.push({m->rank, pos, m->id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = sym[top.pos];
    if (left.id < 0 || left.next < 0) continue;
    const auto current = FindMerge(left.id, sym[left.next].id);
    if (!current.has_value() || current->id != top.id || current->rank != top.rank) continue;
    Symbol& right = sym[left.next];
    left.id = top.id;
    right.id = -1;
    left.next = right.next;
    if (left.next >= 0) sym[left.next].prev = top.pos;
    push_pair(left.prev);
    push_pair(top.pos);
  }
  symbols->clear();
  for (int32_t i = 0; i >= 0 && i < n; i = sym[i].next) symbols->push_back(sym[i].id);
}

void BpeModel::Tokenize(std::string_view piece, std::vector<int32_t>* ids) const {
  if (!split_at_metaspace_) {
    TokenizeWord(piece, ids);
    return;
  }
  size_t start = 0;
  for (size_t pos = piece.find(kMetaspace, 1); pos != std::string_view::npos;
       pos = piece.find(kMetaspace, pos + 1)) {
    if (!FollowsOtherChar(piece, pos)) continue;
    TokenizeWord(piece.substr(start, pos - start), ids);
    start = pos;
  }
  TokenizeWord(piece.substr(start), ids);
}

void BpeModel::TokenizeWord(std::string_view piece, std::vector<int32_t>* ids) const {
  if (piece.empty()) return;
  const auto& vocab = byte_level_ ? byte_vocab_ : vocab_;
  if (ignore_merges_) {
    if (const auto it = vocab.find(utf8::View(piece)); it != vocab.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  CacheShard* shard = nullptr;
  if (piece.size() <= kMaxCachedPieceBytes) {
    shard = &cache_[absl::Hash<absl::string_view>{}(utf8::View(piece)) % kNumCacheShards];
    std::lock_guard<std::mutex> lock(shard->mu);
    if (const auto it = shard->entries.find(utf8::View(piece)); it != shard->entries.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> symbols;
  symbols.reserve(piece.size());
  InitialSymbols(piece, &symbols);
  if (symbols.size() <= kSmallWord) {
    MergeSmall(&symbols);
  } else {
    MergeLarge(&symbols);
  }
  ids->insert(ids->end(), symbols.begin(), symbols.end());
  if (shard != nullptr) {
    std::lock_guard<std::mutex> lock(shard->mu);
    if (shard->entries.size() >= kMaxEntriesPerShard) shard->entries.clear();
    shard->entries.emplace(std::string(piece), std::move(symbols));
  }
}

}  // namespace sluice
