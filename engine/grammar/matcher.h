// Running a grammar over generated tokens: which tokens may come next (a bitmask over
// the vocabulary), advancing on the sampled one, and rolling back (for speculative
// drafts).
//
// The grammar runs as a pushdown automaton over bytes. A configuration (the set of rule
// stacks consistent with the bytes so far) becomes a state of an Automaton, built lazily
// and shared by every request with the same grammar: each state's transition on a byte
// class is computed once, so a mask is a walk over the vocabulary's trie in which each
// node costs one table lookup, and repeated states reuse their masks.
// Thread safety: a Vocabulary is immutable and shared. An Automaton is shared and locks
// itself. A Matcher belongs to one request (one thread at a time).
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/call_once.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
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

  // The trie of the tokens' byte strings in depth-first order, the root left out: node i
  // is reached from its parent (the nearest node before it one level up) by its byte,
  // its subtree is [i, end), and it spells exactly `token` (or -1), plus, when `more`,
  // the other tokens of extra_tokens[extra_begin[i], extra_begin[i + 1]). Nodes with many
  // children (and the root) index them by byte.
  struct Trie {
    struct Node {
      int32_t end;
      int32_t token;
      int32_t fan;     // a node of kTableFanout children or more: its child table, else -1
      uint16_t depth;  // 1 for the root's children
      uint8_t byte;
      uint8_t more;
    };
    static constexpr int kTableFanout = 16;
    std::vector<Node> nodes;
    std::vector<int32_t> child_tables;  // [fan * 256 + byte]: the child by that byte, or -1
    std::vector<int32_t> extra_begin, extra_tokens;
    std::array<int32_t, 256> root_child;  // the root's child by byte, or -1
    int max_depth = 0;
    int size() const { return static_cast<int>(nodes.size()); }
  };
  const Trie& trie() const { return trie_; }

  // The tokens as contents of a JSON string (engine/grammar's JSON fronts), so that a
  // string's mask is a lookup: built on first use, then shared.
  struct JsonStrings {
    size_t words = 0;   // of a mask row
    int max_slots = 0;  // the most characters one token spells inside a string
    // Row r of [max_slots + 1, words]: the tokens that stay inside a string and need at
    // most r of its characters (a partial character at the token's end counts as one).
    std::vector<uint32_t> inside;
    // The tokens that reach the closing quote, as (characters before it, id), sorted.
    std::vector<std::pair<int32_t, int32_t>> closing;
  };
  const JsonStrings& json_strings() const;

  // The tokens as runs of one byte set (ByteRun), so that a walk skips those that fit:
  // built on first use of a set, then shared; nullptr past kMaxByteRunTables sets.
  struct ByteRuns {
    size_t words = 0;
    int max_len = 0;  // the longest token made only of the set's bytes
    // Row r of [max_len + 1, words]: the tokens of at most r bytes, all in the set.
    std::vector<uint32_t> rows;
    // By trie node: when its path from the root and its whole subtree are in the set, the
    // longest token in the subtree; else -1.
    std::vector<int16_t> pure;
  };
  static constexpr size_t kMaxByteRunTables = 64;
  const ByteRuns* byte_runs(const ByteSet& set) const;

 private:
  std::vector<std::string> bytes_;
  std::vector<int32_t> end_ids_;
  Trie trie_;
  mutable absl::once_flag json_once_;
  mutable std::unique_ptr<const JsonStrings> json_;
  mutable absl::Mutex runs_mu_;
  mutable std::vector<std::pair<ByteSet, std::unique_ptr<const ByteRuns>>> runs_
      ABSL_GUARDED_BY(runs_mu_);
};

// The configurations of one grammar reached so far, as numbered states with memoized
// byte transitions and the masks of recent states. Grows on demand; past its bounds it
// starts afresh (a new generation) and matchers replay their bytes.
class Automaton {
 public:
  // Rule calls nest at most this deep: a call past it is not taken (so a right-recursive
  // grammar, which stacks a frame per repetition, stays bounded in work per token).
  static constexpr int32_t kMaxDepth = 1000;

  struct Bounds {
    size_t max_transitions = size_t{1} << 22;  // states x byte classes
    size_t max_frames = size_t{1} << 22;
    // Masks of recent states: 64 bitmasks at a 128k vocabulary (more of those that allow
    // few tokens, kept as ids), 2,048 at 4k.
    size_t mask_cache_bytes = size_t{1} << 20;
    // Masks inside JSON strings from Vocabulary::json_strings, and walks that skip the
    // tokens a byte run takes (Vocabulary::byte_runs). Off: plain trie walks.
    bool json_string_masks = true;
    bool byte_run_masks = true;
  };

  Automaton(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const Vocabulary> vocab,
            Bounds bounds);
  Automaton(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const Vocabulary> vocab)
      : Automaton(std::move(grammar), std::move(vocab), Bounds{}) {}

  const Vocabulary& vocab() const { return *vocab_; }
  const std::shared_ptr<const Vocabulary>& shared_vocab() const { return vocab_; }
  int num_byte_classes() const { return num_classes_; }
  // For tests and metrics.
  size_t num_states() const;
  uint64_t generation() const;
  // Masks made from Vocabulary::json_strings rather than by a walk.
  size_t num_string_masks() const;
  // Walks that skipped tokens of a byte run (Vocabulary::byte_runs).
  size_t num_run_masks() const;

 private:
  friend class Matcher;
  friend class Vocabulary;
  static constexpr int32_t kDead = -1, kUnknown = -2;
  // State::string_room: not inside a JSON string body, or no bound on its characters.
  static constexpr int32_t kNoString = -2, kUnbounded = -1;

  // A rule frame: at `node` of `rule`, returning to `parent` (-1: the bottom).
  struct Frame {
    int32_t rule, node, parent;
    int32_t depth;  // frames below it
  };
  struct State {
    std::vector<int32_t> tops;  // frames at a node with byte edges, sorted, unique
    bool can_end = false;
    ByteSet first;  // the bytes some top reads
    // At a character boundary of a JSON string body (and nothing else): how many more
    // characters it takes, kUnbounded, or kNoString.
    int32_t string_room = kNoString;
    // A top in a byte run (ByteRun): its rule and how many more bytes it takes
    // (kUnbounded), or rule -1.
    int32_t run_rule = -1, run_room = 0;
    bool sparse = false;  // reads few bytes: walks jump to those children
  };
  static constexpr int kSparseBytes = 16;
  struct WalkScope {
    uint32_t* mask;
    const int16_t* pure;  // a byte run's table (Vocabulary::ByteRuns::pure), or null
    int room;
  };

  // All below need mu_ held.
  void StartAfresh() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeStartAfresh() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int32_t Next(int32_t state, uint8_t b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int32_t ComputeNext(int32_t state, uint8_t b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int32_t InternState(State s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int32_t InternFrame(int32_t rule, int32_t node, int32_t parent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Expand(int32_t frame, State& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FillMask(int32_t state, uint32_t* mask) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Walk(int32_t state, uint32_t* mask) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A token the walk allowed, kept while the walk allows few.
  void Note(int32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (walk_ids_.size() < kSparseTokens) {
      walk_ids_.push_back(static_cast<uint32_t>(id));
    } else {
      walk_dense_ = true;
    }
  }
  // The subtrees of child_of[b] for each byte b `state` reads.
  void WalkChildren(const int32_t* child_of, int32_t state, const WalkScope& scope)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Trie nodes [begin, end) (whole subtrees), their parents' states in walk_.
  void WalkRange(int32_t begin, int32_t end, const WalkScope& scope)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int32_t StringRoom(const State& s) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FindRun(State& s) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const Vocabulary::ByteRuns* RunTable(int32_t rule) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The mask of a state inside a JSON string body, from the vocabulary's table; the
  // tokens that close the string are run through the automaton.
  void StringMask(int32_t state, uint32_t* mask) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int32_t Run(int32_t state, const std::string& bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<const Grammar> grammar_;
  const std::shared_ptr<const Vocabulary> vocab_;
  const Bounds bounds_;
  uint8_t class_of_[256] = {};  // bytes no edge tells apart share a class
  int num_classes_ = 0;

  mutable absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int32_t start_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Frame> frames_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, int32_t> frame_index_ ABSL_GUARDED_BY(mu_);
  std::vector<State> states_ ABSL_GUARDED_BY(mu_);
  // Key: the state's tops, then -2 when it can end or -3 when it cannot.
  absl::flat_hash_map<std::vector<int32_t>, int32_t> state_index_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> next_ ABSL_GUARDED_BY(mu_);         // [state * num_classes_ + class]
  std::vector<int32_t> visit_mark_ ABSL_GUARDED_BY(mu_);   // Expand's visited set, by frame
  std::vector<int32_t> expand_work_ ABSL_GUARDED_BY(mu_);  // Expand's frames to visit
  int32_t visit_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  size_t string_masks_ ABSL_GUARDED_BY(mu_) = 0;
  size_t run_masks_ ABSL_GUARDED_BY(mu_) = 0;
  // By rule: its byte run's table, once looked up (kMaxByteRunTables may leave it null).
  std::vector<std::pair<bool, const Vocabulary::ByteRuns*>> run_tables_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> walk_ ABSL_GUARDED_BY(mu_);  // the walk's state per trie depth
  // A recent state's mask: its bitmask, or for one of few tokens (kSparseTokens at most)
  // their ids, which cost less to keep.
  static constexpr size_t kSparseTokens = 1024;
  struct CachedMask {
    int32_t state;
    bool sparse;
    std::vector<uint32_t> data;  // sparse: token ids
  };
  size_t cached_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint32_t> walk_ids_ ABSL_GUARDED_BY(mu_);  // the walk's tokens, while few
  bool walk_dense_ ABSL_GUARDED_BY(mu_) = false;
  std::list<CachedMask> masks_ ABSL_GUARDED_BY(mu_);  // most recent first
  absl::flat_hash_map<int32_t, std::list<CachedMask>::iterator> mask_index_ ABSL_GUARDED_BY(mu_);
};

class Matcher {
 public:
  static constexpr int32_t kMaxDepth = Automaton::kMaxDepth;

  explicit Matcher(std::shared_ptr<Automaton> automaton);
  // With an automaton of its own.
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
  bool CanEnd() const { return can_end_.back(); }
  // An end token was accepted: nothing more may come.
  bool Terminated() const { return terminated_; }
  // Only the end may come: no byte continues any stack.
  bool OnlyEndAllowed() const { return only_end_.back(); }
  int num_accepted() const { return static_cast<int>(ends_.size()); }
  int vocab_size() const { return automaton_->vocab().size(); }

 private:
  // Brings history_ up to the automaton's generation (it may have started afresh).
  void Sync() ABSL_EXCLUSIVE_LOCKS_REQUIRED(automaton_->mu_);
  // The state after `bytes` from `state`, or Automaton::kDead.
  int32_t Run(int32_t state, const char* bytes, size_t n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(automaton_->mu_);
  void Push(int32_t state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(automaton_->mu_);

  std::shared_ptr<Automaton> automaton_;
  uint64_t generation_ = 0;
  std::vector<int32_t> history_;          // [0]: the start; one state per accept
  std::vector<bool> can_end_, only_end_;  // per history entry
  std::string bytes_;                     // everything accepted, for a replay
  std::vector<size_t> ends_;              // where each accept ends in bytes_
  bool terminated_ = false;
};

}  // namespace sluice::grammar
