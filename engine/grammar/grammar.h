// Context-free grammars over bytes, the common form every constraint compiles to (JSON
// Schema, regular expressions, EBNF, choices). A grammar is a set of rules; each rule's
// body is compiled to a byte-level automaton whose edges read a byte range or call
// another rule, so a matcher runs the whole grammar as a pushdown automaton (matcher.h).
// Thread safety: a built Grammar is immutable and shared freely.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice::grammar {

// A set of bytes.
struct ByteSet {
  std::array<uint64_t, 4> bits{};
  void Add(int b) { bits[static_cast<size_t>(b) >> 6] |= uint64_t{1} << (b & 63); }
  void AddRange(int lo, int hi) {  // a word at a time
    for (int w = lo >> 6; w <= (hi >> 6) && w < 4; ++w) {
      const int from = std::max(lo, w << 6) & 63, to = std::min(hi, (w << 6) + 63) & 63;
      bits[static_cast<size_t>(w)] |= (~uint64_t{0} >> (63 - to)) & (~uint64_t{0} << from);
    }
  }
  bool Has(int b) const { return (bits[static_cast<size_t>(b) >> 6] >> (b & 63)) & 1; }
  bool Empty() const { return (bits[0] | bits[1] | bits[2] | bits[3]) == 0; }
  ByteSet Complement() const;
};

// A rule body before compilation.
struct Expr {
  enum class Kind { kEmpty, kBytes, kSeq, kAlt, kRule, kRepeat };
  Kind kind = Kind::kEmpty;
  ByteSet bytes;            // kBytes
  std::vector<Expr> items;  // kSeq, kAlt; kRepeat: the one repeated
  int rule = -1;            // kRule: the rule called
  int min = 0, max = -1;    // kRepeat: at least min, at most max (-1: no bound)

  static Expr Empty() { return Expr{}; }
  static Expr Bytes(ByteSet set);
  static Expr Byte(uint8_t b);
  static Expr Literal(absl::string_view text);
  static Expr Seq(std::vector<Expr> items);
  static Expr Alt(std::vector<Expr> items);
  static Expr Rule(int rule);
  static Expr Repeat(Expr item, int min, int max);
  static Expr Optional(Expr item) { return Repeat(std::move(item), 0, 1); }
  static Expr Star(Expr item) { return Repeat(std::move(item), 0, -1); }
  static Expr Plus(Expr item) { return Repeat(std::move(item), 1, -1); }
};

// Code points [lo, hi] (each a Unicode scalar value, surrogates left out) as the UTF-8
// byte sequences that spell them: an alternation of byte-range sequences.
Expr CodepointRange(uint32_t lo, uint32_t hi);
// Any of `ranges` (inclusive pairs), or with `negate` any scalar value outside them.
Expr CodepointClass(std::vector<std::pair<uint32_t, uint32_t>> ranges, bool negate);

// Bounds on what a grammar may grow to: a schema or pattern past them is refused (a 400
// naming the bound) instead of slowing everything else down.
struct Limits {
  int max_rules = 20000;
  int max_nodes = 500000;  // automaton nodes over all rules
  int max_repeat = 2000;   // {m,n} bounds
};

// One compiled rule: nodes 0..N-1, node n's edges are edges[edge_begin[n], edge_begin[n+1]).
struct RuleFsm {
  struct Edge {
    uint8_t lo = 0, hi = 0;  // a byte in [lo, hi], when rule < 0
    int32_t rule = -1;       // >= 0: call this rule, continuing at `to` when it returns
    int32_t to = 0;
  };
  int32_t start = 0;
  std::vector<int32_t> edge_begin;  // num_nodes + 1
  std::vector<Edge> edges;          // per node: byte edges (by lo) first, then calls
  std::vector<int32_t> call_begin;  // per node: index of its first call edge
  std::vector<uint8_t> final;       // the rule may end here
  int num_nodes() const { return static_cast<int>(final.size()); }
};

// The body of a JSON string (its characters, at most max of them, then the closing
// quote) as one rule: chars[node] is how many characters have been read at a node of
// it, kLoop past a minimum when max < 0, or kEnd after the quote. Lets the matcher mask
// string contents from per-token character counts instead of a vocabulary walk.
struct StringBody {
  static constexpr int32_t kLoop = -1, kEnd = -2;
  int max = -1;  // -1: no bound
  std::vector<int32_t> chars;
};

// A run of up to max bytes of one set (a regular expression's [a-z0-9]{1,64}) as one rule:
// chars[node] is how many bytes have been read at a node of it, kLoop past a minimum
// when max < 0. Lets the matcher skip, in its vocabulary walk, the tokens that fit.
struct ByteRun {
  ByteSet set;
  int max = -1;  // -1: no bound
  std::vector<int32_t> chars;
};

class Grammar {
 public:
  const std::vector<RuleFsm>& rules() const { return rules_; }
  const std::string& rule_name(int r) const { return names_[static_cast<size_t>(r)]; }
  int root() const { return root_; }
  int num_nodes() const { return num_nodes_; }
  // The rule of one JSON string character (its JSON front's), or -1.
  int json_char_rule() const { return json_char_rule_; }
  // Rule r as a byte run, or nullptr.
  const ByteRun* byte_run(int r) const {
    return static_cast<size_t>(r) < byte_runs_.size() &&
                   !byte_runs_[static_cast<size_t>(r)].chars.empty()
               ? &byte_runs_[static_cast<size_t>(r)]
               : nullptr;
  }
  // Rule r as a JSON string body, or nullptr.
  const StringBody* string_body(int r) const {
    return static_cast<size_t>(r) < string_bodies_.size() &&
                   !string_bodies_[static_cast<size_t>(r)].chars.empty()
               ? &string_bodies_[static_cast<size_t>(r)]
               : nullptr;
  }

 private:
  friend class GrammarBuilder;
  std::vector<RuleFsm> rules_;
  std::vector<std::string> names_;
  int root_ = 0;
  int num_nodes_ = 0;
  int json_char_rule_ = -1;
  std::vector<StringBody> string_bodies_;  // by rule; empty chars: not a body
  std::vector<ByteRun> byte_runs_;         // by rule; empty chars: not a run
};

// Declares rules, sets their bodies, and compiles them: Thompson automata, epsilon
// edges removed. Refuses left recursion (a rule that can call itself before reading a
// byte), rules left without a body, and grammars past the limits.
class GrammarBuilder {
 public:
  explicit GrammarBuilder(Limits limits = {}) : limits_(limits) {}

  // A new rule's id; names need not be unique (helpers get numbered names).
  int AddRule(std::string name);
  // The rule of that name, or -1.
  int Find(absl::string_view name) const;
  void SetBody(int rule, Expr body);
  // JSON strings: `rule` spells one character of a JSON string (unescaped or an escape),
  // the one every string body calls.
  void MarkJsonChar(int rule) { json_char_rule_ = rule; }
  // `rule`'s body is Repeat(Rule(json char), min, max) then '"'. Checked against its
  // automaton when built; a rule of another shape stays unmarked.
  void MarkStringBody(int rule, int max) { string_body_max_.emplace_back(rule, max); }
  // `rule`'s body is Repeat(Bytes(set), min, max); checked as string bodies are.
  void MarkByteRun(int rule, const ByteSet& set, int max) {
    byte_run_marks_.push_back({set, max, {rule}});
  }
  int num_rules() const { return static_cast<int>(names_.size()); }
  const Limits& limits() const { return limits_; }

  absl::StatusOr<std::shared_ptr<const Grammar>> Build(int root) &&;

 private:
  Limits limits_;
  std::vector<std::string> names_;
  std::vector<Expr> bodies_;
  std::vector<bool> has_body_;
  int json_char_rule_ = -1;
  std::vector<std::pair<int, int>> string_body_max_;  // (rule, max)
  std::vector<ByteRun> byte_run_marks_;               // chars: {the rule}
};

}  // namespace sluice::grammar
