// The BPE model of tokenizer.json ("model": {"type": "BPE"}).
#ifndef SLUICE_SERVER_TOKENIZER_BPE_H_
#define SLUICE_SERVER_TOKENIZER_BPE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace sluice {

// Thread safety: Tokenize is const and may run on several threads at once; its piece
// cache is sharded and locked.
// Invariants: in byte-level mode the encoding vocabulary is keyed by raw bytes (each
// token's byte-level characters mapped back to the bytes they stand for), so pieces are
// tokenized without mapping them to the byte-level alphabet first.
class BpeModel {
 public:
  // Builds the model from the "model" object; `byte_level` is true when a ByteLevel
  // pre-tokenizer feeds it. May throw nlohmann::json::exception (the loader catches).
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& config,
                                                            bool byte_level);

  // Appends the ids of one pre-tokenized piece to `ids`.
  void Tokenize(std::string_view piece, std::vector<int32_t>* ids) const;

  // Id of a token written as in tokenizer.json, if the vocabulary has it.
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // Token of `id` as written in tokenizer.json; empty if `id` is not in the vocabulary.
  const std::string& IdToToken(int32_t id) const;
  // One past the largest id of the vocabulary.
  int vocab_size() const { return static_cast<int>(id_to_token_.size()); }

 private:
  struct MergeTarget {
    int32_t rank;
    int32_t id;
  };
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
  };
  // NOTE: the piece cache is bounded (a shard is emptied when full) at 16,384 pieces of up
  // to 128 bytes, 2 MiB or so: new words in every prompt must not grow a server's memory.
  static constexpr int kNumCacheShards = 64;
  static constexpr size_t kMaxCachedPieceBytes = 128;
  static constexpr size_t kMaxEntriesPerShard = 256;
  struct CacheShard {
    std::mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> entries;
  };

  BpeModel() = default;
  // Reads vocab and unk_token and derives the byte tables and split_at_metaspace_.
  absl::Status LoadVocab(const nlohmann::json& config);
  absl::Status LoadMerges(const nlohmann::json& merges);
  void TokenizeWord(std::string_view word, std::vector<int32_t>* ids) const;
  void InitialSymbols(std::string_view piece, std::vector<int32_t>* symbols) const;
  std::optional<MergeTarget> FindMerge(int32_t left, int32_t right) const;
  void MergeSmall(std::vector<int32_t>* symbols) const;
  void MergeLarge(std::vector<int32_t>* symbols) const;

  bool byte_level_ = false;
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  std::optional<int32_t> unk_id_;
  // NOTE: SentencePiece-style vocabularies (no pre-tokenizer) see the whole text as one
  // piece. When no token has "▁" after another character, no merge can cross the point
  // before a "▁" that follows a non-"▁" character, so the piece is cut there into words
  // that tokenize (and cache) independently with the same result.
  bool split_at_metaspace_ = false;
  absl::flat_hash_map<std::string, int32_t> vocab_;
  // Raw-byte keys in byte-level mode; empty otherwise (vocab_ is used).
  absl::flat_hash_map<std::string, int32_t> byte_vocab_;
  std::vector<std::string> id_to_token_;
  absl::flat_hash_map<uint64_t, MergeTarget> merges_;
  // Byte-level: the id of each byte's character, or -1.
  std::array<int32_t, 256> byte_ids_{};
  // Byte fallback: the id of each byte's <0xNN> token, or -1.
  std::array<int32_t, 256> fallback_ids_{};
  mutable std::array<CacheShard, kNumCacheShards> cache_;
};

}  // namespace sluice

#endif  // SLUICE_SERVER_TOKENIZER_BPE_H_
