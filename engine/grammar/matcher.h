// Running a grammar over generated tokens: which tokens may come next (a bitmask over
// the vocabulary), advancing on the sampled one, and rolling back (for speculative
// drafts). The matcher is a pushdown automaton over bytes: its state is the set of rule
// stacks that are consistent with the bytes so far, stacks shared in an arena.
// Thread safety: a Vocabulary is immutable and shared; a Matcher belongs to one request.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/grammar/grammar.h"

namespace sluice::grammar {

// The byte string of every token id, in a trie for the mask walk.
class Vocabulary {
 public:
  // `token_bytes[id]`: what the token spells, as raw bytes; empty for special tokens,
  // which a grammar never allows. `end_ids`: the end-of-sequence tokens, allowed when
  // the grammar may end.
  Vocabulary(std::vector<std::string> token_bytes, std::vector<int32_t> end_ids);

  int size() const { return static_cast<int>(bytes_.size()); }
  const std::string& bytes(int32_t id) const { return bytes_[static_cast<size_t>(id)]; }
  const std::vector<int32_t>& end_ids() const { return end_ids_; }
  bool is_end(int32_t id) const;

  // Trie node n's children are child_byte/child_node[child_begin[n], child_begin[n + 1]),
  // by byte; the tokens spelled exactly by node n are token_ids[token_begin[n], ...).
  struct Trie {
    std::vector<int32_t> child_begin, token_begin;
    std::vector<uint8_t> child_byte;
    std::vector<int32_t> child_node, token_ids;
  };
  const Trie& trie() const { return trie_; }

 private:
  std::vector<std::string> bytes_;
  std::vector<int32_t> end_ids_;
  Trie trie_;
};

class Matcher {
 public:
  // Rule calls nest at most this deep: a call past it is not taken (so a right-recursive
  // grammar, which stacks a frame per repetition, stays bounded in work per token).
  static constexpr int32_t kMaxDepth = 1000;

  Matcher(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const Vocabulary> vocab);

  // Tokens allowed next: bit id of `mask` (vocab size bits, 32 per word) is set for each.
  void FillMask(uint32_t* mask);
  // Advances on `id`; false (nothing changed) when the grammar does not allow it.
  bool AcceptToken(int32_t id);
  // Advances on raw bytes (a prefix the front forces); false when not allowed.
  bool AcceptBytes(const std::string& bytes);
  // Undoes the last `n` accepted tokens (or byte strings).
  void Rollback(int n);
  // The bytes so far form a whole sentence of the grammar (end-of-sequence may come).
  bool CanEnd() const { return history_.back().can_end; }
  // An end token was accepted: nothing more may come.
  bool Terminated() const { return terminated_; }
  // Only the end may come: no byte continues any stack.
  bool OnlyEndAllowed() const { return history_.back().tops.empty(); }
  int num_accepted() const { return static_cast<int>(history_.size()) - 1; }
  int vocab_size() const { return vocab_->size(); }

 private:
  // A rule frame: at `node` of `rule`, returning to `parent` (-1: the bottom).
  struct Frame {
    int32_t rule, node, parent;
    int32_t depth;  // frames below it
  };
  struct State {
    std::vector<int32_t> tops;  // frames at a node with byte edges, sorted, unique
    bool can_end = false;
  };
  int32_t Intern(int32_t rule, int32_t node, int32_t parent);
  int32_t DepthOf(int32_t parent) const;
  void Expand(int32_t frame, State& out);
  // The state after byte b from `from`; empty tops and !can_end when b is not allowed.
  void Step(const State& from, uint8_t b, State& out);
  void Walk(int32_t trie_node, int depth, uint32_t* mask);

  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const Vocabulary> vocab_;
  std::vector<Frame> frames_;
  absl::flat_hash_map<uint64_t, int32_t> interned_;  // (rule, node, parent) -> frame
  std::vector<State> history_;                       // [0]: the start; one per accept
  std::vector<State> walk_;                          // per trie depth, during FillMask
  std::vector<int32_t> visit_mark_;                  // Expand's visited set, by frame
  std::vector<int32_t> expand_work_;
  // The masks of the last states seen, most recent first.
  struct CachedMask {
    std::vector<int32_t> tops;
    bool can_end;
    std::vector<uint32_t> mask;
  };
  static constexpr size_t kMaskCache = 8;
  std::list<CachedMask> mask_cache_;  // Expand's frames still to visit
  int32_t visit_epoch_ = 0;
  bool terminated_ = false;
};

}  // namespace sluice::grammar
