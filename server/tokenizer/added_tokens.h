// Added tokens of tokenizer.json ("added_tokens"), found in the input before
// normalization and pre-tokenization as Hugging Face tokenizers finds them: leftmost
// longest match, honouring single_word, lstrip and rstrip.
#ifndef SLUICE_SERVER_TOKENIZER_ADDED_TOKENS_H_
#define SLUICE_SERVER_TOKENIZER_ADDED_TOKENS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace sluice {

class Normalizer;

struct AddedToken {
  int32_t id;
  std::string content;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// A part of the input: an added token's id, or text for the model (id < 0).
struct Segment {
  size_t start;
  size_t end;
  int32_t id;
};

// Thread safety: immutable after construction.
class AddedTokens {
 public:
  // Reads the "added_tokens" array; tokens marked normalized are matched in their
  // `normalizer` form (may be null). May throw nlohmann::json::exception (the loader
  // catches).
  static absl::StatusOr<AddedTokens> FromJson(const nlohmann::json& config,
                                              const Normalizer* normalizer);

  // Cuts `text` into segments; `normalized` picks the tokens matched on normalized
  // text (true) or on the raw input (false).
  std::vector<Segment> Split(std::string_view text, bool normalized) const;
  bool has_normalized() const { return !tries_[1].empty(); }

  const AddedToken* Find(int32_t id) const;
  std::optional<int32_t> FindContent(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // A byte trie: node 0 is the root; `token` is an index into tokens_ or -1.
  struct Node {
    absl::flat_hash_map<uint8_t, int32_t> children;
    int32_t token = -1;
  };
  using Trie = std::vector<Node>;

  void Insert(Trie* trie, std::string_view content, size_t token_index);
  // Index in tokens_ of the longest token at text[pos..], or -1; sets *end past it.
  int32_t LongestAt(const Trie& trie, std::string_view text, size_t pos, size_t* end) const;

  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, size_t> by_content_;
  Trie tries_[2];  // [0]: matched on raw input, [1]: on normalized text.
  bool first_bytes_[2][256] = {};
};

}  // namespace sluice

#endif  // SLUICE_SERVER_TOKENIZER_ADDED_TOKENS_H_
