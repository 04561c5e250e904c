#include "engine/grammar/grammar.h"

#include <algorithm>
#include <functional>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sluice::grammar {

ByteSet ByteSet::Complement() const {
  ByteSet out;
  for (size_t i = 0; i < 4; ++i) out.bits[i] = ~bits[i];
  return out;
}

Expr Expr::Bytes(ByteSet set) {
  Expr e;
  e.kind = Kind::kBytes;
  e.bytes = set;
  return e;
}

Expr Expr::Byte(uint8_t b) {
  ByteSet s;
  s.Add(b);
  return Bytes(s);
}

Expr Expr::Literal(absl::string_view text) {
  std::vector<Expr> items;
  items.reserve(text.size());
  for (char c : text) items.push_back(Byte(static_cast<uint8_t>(c)));
  return Seq(std::move(items));
}

Expr Expr::Seq(std::vector<Expr> items) {
  if (items.size() == 1) return std::move(items[0]);
  Expr e;
  e.kind = items.empty() ? Kind::kEmpty : Kind::kSeq;
  e.items = std::move(items);
  return e;
}

Expr Expr::Alt(std::vector<Expr> items) {
  if (items.size() == 1) return std::move(items[0]);
  Expr e;
  e.kind = Kind::kAlt;
  e.items = std::move(items);
  return e;
}

Expr Expr::Rule(int rule) {
  Expr e;
  e.kind = Kind::kRule;
  e.rule = rule;
  return e;
}

Expr Expr::Repeat(Expr item, int min, int max) {
  Expr e;
  e.kind = Kind::kRepeat;
  e.items.push_back(std::move(item));
  e.min = min;
  e.max = max;
  return e;
}

namespace {

constexpr uint32_t kMaxCodepoint = 0x10FFFF;

int Utf8Length(uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

void Encode(uint32_t cp, int n, uint8_t* out) {
  if (n == 1) {
    out[0] = static_cast<uint8_t>(cp);
    return;
  }
  for (int i = n - 1; i > 0; --i) {
    out[i] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    cp >>= 6;
  }
  static constexpr uint8_t kLead[] = {0, 0, 0xC0, 0xE0, 0xF0};
  out[0] = static_cast<uint8_t>(kLead[n] | cp);
}

// [lo, hi] of one encoded length as sequences of byte ranges: split until every byte
// position but the first spans whole continuation ranges where the others vary.
void Utf8Sequences(uint32_t lo, uint32_t hi,
                   std::vector<std::vector<std::pair<uint8_t, uint8_t>>>& out) {
  for (uint32_t edge : {0x7Fu, 0x7FFu, 0xFFFFu}) {
    if (lo <= edge && edge < hi) {
      Utf8Sequences(lo, edge, out);
      Utf8Sequences(edge + 1, hi, out);
      return;
    }
  }
  const int n = Utf8Length(lo);
  for (int i = 1; i < n; ++i) {
    const uint32_t mask = (uint32_t{1} << (6 * i)) - 1;
    if ((lo & ~mask) != (hi & ~mask)) {
      if ((lo & mask) != 0) {
        Utf8Sequences(lo, lo | mask, out);
        Utf8Sequences((lo | mask) + 1, hi, out);
        return;
      }
      if ((hi & mask) != mask) {
        Utf8Sequences(lo, (hi & ~mask) - 1, out);
        Utf8Sequences(hi & ~mask, hi, out);
        return;
      }
    }
  }
  uint8_t a[4], b[4];
  Encode(lo, n, a);
  Encode(hi, n, b);
  std::vector<std::pair<uint8_t, uint8_t>> seq;
  for (int i = 0; i < n; ++i) seq.emplace_back(a[i], b[i]);
  out.push_back(std::move(seq));
}

Expr FromSequences(const std::vector<std::vector<std::pair<uint8_t, uint8_t>>>& seqs) {
  ByteSet ascii;  // one-byte sequences share one set
  std::vector<Expr> alts;
  for (const auto& seq : seqs) {
    if (seq.size() == 1) {
      ascii.AddRange(seq[0].first, seq[0].second);
      continue;
    }
    std::vector<Expr> items;
    for (const auto& [lo, hi] : seq) {
      ByteSet s;
      s.AddRange(lo, hi);
      items.push_back(Expr::Bytes(s));
    }
    alts.push_back(Expr::Seq(std::move(items)));
  }
  if (!ascii.Empty()) alts.insert(alts.begin(), Expr::Bytes(ascii));
  if (alts.empty()) return Expr::Bytes(ByteSet{});  // matches nothing
  return Expr::Alt(std::move(alts));
}

}  // namespace

Expr CodepointRange(uint32_t lo, uint32_t hi) {
  return CodepointClass({{lo, hi}}, /*negate=*/false);
}

Expr CodepointClass(std::vector<std::pair<uint32_t, uint32_t>> ranges, bool negate) {
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<uint32_t, uint32_t>> merged;
  for (auto [lo, hi] : ranges) {
    hi = std::min(hi, kMaxCodepoint);
    if (lo > hi) continue;
    if (!merged.empty() && lo <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, hi);
    } else {
      merged.emplace_back(lo, hi);
    }
  }
  if (negate) {
    std::vector<std::pair<uint32_t, uint32_t>> inverse;
    uint32_t next = 0;
    for (auto [lo, hi] : merged) {
      if (lo > next) inverse.emplace_back(next, lo - 1);
      next = hi + 1;
    }
    if (next <= kMaxCodepoint) inverse.emplace_back(next, kMaxCodepoint);
    merged = std::move(inverse);
  }
  std::vector<std::vector<std::pair<uint8_t, uint8_t>>> seqs;
  for (auto [lo, hi] : merged) {
    // Surrogates are no scalar values: they never appear in valid UTF-8.
    if (lo <= 0xDFFF && hi >= 0xD800) {
      if (lo < 0xD800) Utf8Sequences(lo, 0xD7FF, seqs);
      if (hi > 0xDFFF) Utf8Sequences(0xE000, hi, seqs);
      continue;
    }
    Utf8Sequences(lo, hi, seqs);
  }
  return FromSequences(seqs);
}

int GrammarBuilder::AddRule(std::string name) {
  names_.push_back(std::move(name));
  bodies_.emplace_back();
  has_body_.push_back(false);
  return static_cast<int>(names_.size()) - 1;
}

int GrammarBuilder::Find(absl::string_view name) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return static_cast<int>(i);
  }
  return -1;
}

void GrammarBuilder::SetBody(int rule, Expr body) {
  bodies_[static_cast<size_t>(rule)] = std::move(body);
  has_body_[static_cast<size_t>(rule)] = true;
}

namespace {

// A rule's automaton while it is built: epsilon edges allowed.
struct Nfa {
  struct Edge {
    ByteSet bytes;
    int32_t rule = -1;
    int32_t to = 0;
  };
  std::vector<std::vector<int32_t>> eps;
  std::vector<std::vector<Edge>> edges;
  int32_t New() {
    eps.emplace_back();
    edges.emplace_back();
    return static_cast<int32_t>(eps.size()) - 1;
  }
};

class NfaBuilder {
 public:
  NfaBuilder(Nfa& nfa, int* budget, const Limits& limits)
      : nfa_(nfa), budget_(budget), limits_(limits) {}

  // Builds `e` from node `from`; returns its end node.
  absl::StatusOr<int32_t> Build(const Expr& e, int32_t from) {
    if (--*budget_ < 0) return TooLarge();
    switch (e.kind) {
      case Expr::Kind::kEmpty: {
        const int32_t to = nfa_.New();
        nfa_.eps[from].push_back(to);
        return to;
      }
      case Expr::Kind::kBytes: {
        const int32_t to = nfa_.New();
        if (!e.bytes.Empty()) nfa_.edges[from].push_back({e.bytes, -1, to});
        return to;
      }
      case Expr::Kind::kRule: {
        const int32_t to = nfa_.New();
        nfa_.edges[from].push_back({ByteSet{}, e.rule, to});
        return to;
      }
      case Expr::Kind::kSeq: {
        int32_t at = from;
        for (const Expr& item : e.items) {
          absl::StatusOr<int32_t> next = Build(item, at);
          if (!next.ok()) return next;
          at = *next;
        }
        return at;
      }
      case Expr::Kind::kAlt: {
        const int32_t to = nfa_.New();
        for (const Expr& item : e.items) {
          absl::StatusOr<int32_t> end = Build(item, from);
          if (!end.ok()) return end;
          nfa_.eps[*end].push_back(to);
        }
        return to;
      }
      case Expr::Kind::kRepeat: {
        if (e.min > limits_.max_repeat || e.max > limits_.max_repeat) {
          return absl::InvalidArgumentError(
              absl::StrCat("a repetition bound of ", std::max(e.min, e.max),
                           " is past the limit of ", limits_.max_repeat));
        }
        int32_t at = from;
        for (int i = 0; i < e.min; ++i) {
          absl::StatusOr<int32_t> next = Build(e.items[0], at);
          if (!next.ok()) return next;
          at = *next;
        }
        if (e.max < 0) {
          const int32_t loop = nfa_.New();
          nfa_.eps[at].push_back(loop);
          absl::StatusOr<int32_t> end = Build(e.items[0], loop);
          if (!end.ok()) return end;
          nfa_.eps[*end].push_back(loop);
          return loop;
        }
        const int32_t to = nfa_.New();
        for (int i = e.min; i < e.max; ++i) {
          nfa_.eps[at].push_back(to);
          absl::StatusOr<int32_t> next = Build(e.items[0], at);
          if (!next.ok()) return next;
          at = *next;
        }
        nfa_.eps[at].push_back(to);
        return to;
      }
    }
    return absl::InternalError("unknown expression");
  }

 private:
  absl::Status TooLarge() const {
    return absl::ResourceExhaustedError(
        absl::StrCat("the grammar is past the limit of ", limits_.max_nodes, " automaton nodes"));
  }
  Nfa& nfa_;
  int* budget_;
  const Limits& limits_;
};

void AddRanges(const ByteSet& set, int32_t to, std::vector<RuleFsm::Edge>& out) {
  int b = 0;
  while (b < 256) {
    if (!set.Has(b)) {
      ++b;
      continue;
    }
    int e = b;
    while (e + 1 < 256 && set.Has(e + 1)) ++e;
    out.push_back({static_cast<uint8_t>(b), static_cast<uint8_t>(e), -1, to});
    b = e + 1;
  }
}

// The automaton without epsilon edges, nodes unreachable from the start dropped.
RuleFsm Finish(const Nfa& nfa, int32_t start, int32_t end) {
  const int32_t n = static_cast<int32_t>(nfa.eps.size());
  // Epsilon closures, as the nodes they reach.
  std::vector<std::vector<int32_t>> closure(static_cast<size_t>(n));
  std::vector<int32_t> seen(static_cast<size_t>(n), -1);
  for (int32_t s = 0; s < n; ++s) {
    std::vector<int32_t> stack = {s};
    seen[s] = s;
    while (!stack.empty()) {
      const int32_t x = stack.back();
      stack.pop_back();
      closure[s].push_back(x);
      for (int32_t y : nfa.eps[x]) {
        if (seen[y] != s) {
          seen[y] = s;
          stack.push_back(y);
        }
      }
    }
  }
  // Renumber the nodes reachable from the start by labelled edges.
  std::vector<int32_t> id(static_cast<size_t>(n), -1);
  std::vector<int32_t> order = {start};
  id[start] = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    for (int32_t x : closure[order[i]]) {
      for (const Nfa::Edge& e : nfa.edges[x]) {
        if (id[e.to] < 0) {
          id[e.to] = static_cast<int32_t>(order.size());
          order.push_back(e.to);
        }
      }
    }
  }
  RuleFsm fsm;
  fsm.start = 0;
  fsm.edge_begin.push_back(0);
  for (int32_t node : order) {
    std::vector<RuleFsm::Edge> bytes, calls;
    bool final = false;
    for (int32_t x : closure[node]) {
      final = final || x == end;
      for (const Nfa::Edge& e : nfa.edges[x]) {
        if (e.rule >= 0) {
          calls.push_back({0, 0, e.rule, id[e.to]});
        } else {
          AddRanges(e.bytes, id[e.to], bytes);
        }
      }
    }
    auto key = [](const RuleFsm::Edge& e) { return std::make_tuple(e.lo, e.hi, e.rule, e.to); };
    auto less = [&](const RuleFsm::Edge& a, const RuleFsm::Edge& b) { return key(a) < key(b); };
    auto same = [&](const RuleFsm::Edge& a, const RuleFsm::Edge& b) { return key(a) == key(b); };
    for (auto* v : {&bytes, &calls}) {
      std::sort(v->begin(), v->end(), less);
      v->erase(std::unique(v->begin(), v->end(), same), v->end());
    }
    fsm.edges.insert(fsm.edges.end(), bytes.begin(), bytes.end());
    fsm.call_begin.push_back(static_cast<int32_t>(fsm.edges.size()));
    fsm.edges.insert(fsm.edges.end(), calls.begin(), calls.end());
    fsm.edge_begin.push_back(static_cast<int32_t>(fsm.edges.size()));
    fsm.final.push_back(final ? 1 : 0);
  }
  return fsm;
}

// Rules that can end before reading a byte.
std::vector<bool> Nullable(const std::vector<RuleFsm>& rules) {
  std::vector<bool> nullable(rules.size(), false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < rules.size(); ++r) {
      if (nullable[r]) continue;
      const RuleFsm& f = rules[r];
      std::vector<bool> seen(static_cast<size_t>(f.num_nodes()), false);
      std::vector<int32_t> stack = {f.start};
      seen[f.start] = true;
      while (!stack.empty() && !nullable[r]) {
        const int32_t x = stack.back();
        stack.pop_back();
        if (f.final[x]) nullable[r] = true;
        for (int32_t i = f.call_begin[x]; i < f.edge_begin[x + 1]; ++i) {
          const RuleFsm::Edge& e = f.edges[i];
          if (nullable[e.rule] && !seen[e.to]) {
            seen[e.to] = true;
            stack.push_back(e.to);
          }
        }
      }
      changed = changed || nullable[r];
    }
  }
  return nullable;
}

// Labels node `to` of a counted repetition with `want` (items read there); a node first
// seen is pushed. Two counts meet only in the loop of an unbounded repetition (max < 0),
// which becomes kLoop; false when they meet otherwise, or at kEnd.
bool MergeCount(std::vector<int32_t>& chars, int32_t to, int32_t want, int max, int32_t unseen,
                std::vector<int32_t>& stack) {
  int32_t& have = chars[static_cast<size_t>(to)];
  if (have == unseen) {
    have = want;
    stack.push_back(to);
  } else if (have != want) {
    if (max >= 0 || have == StringBody::kEnd || want == StringBody::kEnd) return false;
    if (have != StringBody::kLoop) {
      have = StringBody::kLoop;
      stack.push_back(to);
    }
  }
  return true;
}

// Counts the characters read at each node of a string body's automaton; empty when the
// automaton is not of the shape json char{min,max} '"'.
StringBody LabelStringBody(const RuleFsm& f, int char_rule, int max) {
  StringBody body;
  body.max = max;
  body.chars.assign(static_cast<size_t>(f.num_nodes()), StringBody::kEnd - 1);  // unseen
  const int32_t unseen = StringBody::kEnd - 1;
  std::vector<int32_t> stack = {f.start};
  body.chars[f.start] = 0;
  auto fail = [&] {
    body.chars.clear();
    return body;
  };
  while (!stack.empty()) {
    const int32_t x = stack.back();
    stack.pop_back();
    const int32_t at = body.chars[x];
    if (at == StringBody::kEnd) {
      if (f.edge_begin[x + 1] > f.edge_begin[x] || !f.final[x]) return fail();
      continue;
    }
    if (f.final[x]) return fail();  // a body ends only after its quote
    for (int32_t i = f.edge_begin[x]; i < f.edge_begin[x + 1]; ++i) {
      const RuleFsm::Edge& e = f.edges[i];
      int32_t want;
      if (e.rule < 0) {
        if (e.lo != '"' || e.hi != '"') return fail();
        want = StringBody::kEnd;
      } else {
        if (e.rule != char_rule) return fail();
        want = at == StringBody::kLoop ? StringBody::kLoop : at + 1;
      }
      if (!MergeCount(body.chars, e.to, want, max, unseen, stack)) return fail();
    }
  }
  for (int32_t c : body.chars) {
    if (c == unseen) return fail();
  }
  return body;
}

// Counts the bytes read at each node of a byte run's automaton; empty chars when the
// automaton is not of the shape set{min,max}.
ByteRun LabelByteRun(const RuleFsm& f, const ByteSet& set, int max) {
  ByteRun run;
  run.set = set;
  run.max = max;
  const int32_t unseen = StringBody::kLoop - 1;
  run.chars.assign(static_cast<size_t>(f.num_nodes()), unseen);
  run.chars[f.start] = 0;
  std::vector<int32_t> stack = {f.start};
  auto fail = [&] {
    run.chars.clear();
    return run;
  };
  while (!stack.empty()) {
    const int32_t x = stack.back();
    stack.pop_back();
    if (f.call_begin[x] != f.edge_begin[x + 1]) return fail();  // no calls in a run
    ByteSet read;
    int32_t to = -1;
    for (int32_t i = f.edge_begin[x]; i < f.call_begin[x]; ++i) {
      const RuleFsm::Edge& e = f.edges[i];
      if (to >= 0 && e.to != to) return fail();
      to = e.to;
      read.AddRange(e.lo, e.hi);
    }
    if (to < 0) continue;  // the last node of a bounded run
    if (read.bits != set.bits) return fail();
    const int32_t at = run.chars[x];
    const int32_t want = at == StringBody::kLoop ? StringBody::kLoop : at + 1;
    if (!MergeCount(run.chars, to, want, max, unseen, stack)) return fail();
  }
  for (int32_t c : run.chars) {
    if (c == unseen) return fail();
  }
  return run;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Grammar>> GrammarBuilder::Build(int root) && {
  if (root < 0 || root >= num_rules()) return absl::InvalidArgumentError("no root rule");
  if (num_rules() > limits_.max_rules) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the grammar has ", num_rules(), " rules; the limit is ", limits_.max_rules));
  }
  auto g = std::shared_ptr<Grammar>(new Grammar());
  g->names_ = names_;
  g->root_ = root;
  int budget = limits_.max_nodes;
  for (size_t r = 0; r < names_.size(); ++r) {
    if (!has_body_[r]) {
      return absl::InvalidArgumentError(absl::StrCat("rule '", names_[r], "' is not defined"));
    }
    Nfa nfa;
    const int32_t start = nfa.New();
    NfaBuilder builder(nfa, &budget, limits_);
    absl::StatusOr<int32_t> end = builder.Build(bodies_[r], start);
    if (!end.ok()) return end.status();
    g->rules_.push_back(Finish(nfa, start, *end));
    g->num_nodes_ += g->rules_.back().num_nodes();
  }
  // Left recursion would make the matcher's expansion endless: refuse it.
  const std::vector<bool> nullable = Nullable(g->rules_);
  std::vector<std::vector<int32_t>> left_calls(g->rules_.size());
  for (size_t r = 0; r < g->rules_.size(); ++r) {
    const RuleFsm& f = g->rules_[r];
    std::vector<bool> seen(static_cast<size_t>(f.num_nodes()), false);
    std::vector<int32_t> stack = {f.start};
    seen[f.start] = true;
    while (!stack.empty()) {
      const int32_t x = stack.back();
      stack.pop_back();
      for (int32_t i = f.call_begin[x]; i < f.edge_begin[x + 1]; ++i) {
        const RuleFsm::Edge& e = f.edges[i];
        left_calls[r].push_back(e.rule);
        if (nullable[e.rule] && !seen[e.to]) {
          seen[e.to] = true;
          stack.push_back(e.to);
        }
      }
    }
  }
  std::vector<int> color(g->rules_.size(), 0);  // 0 new, 1 on the path, 2 done
  std::function<int(int)> cycle = [&](int r) -> int {
    color[r] = 1;
    for (int32_t c : left_calls[r]) {
      if (color[c] == 1) return c;
      if (color[c] == 0) {
        if (int found = cycle(c); found >= 0) return found;
      }
    }
    color[r] = 2;
    return -1;
  };
  for (size_t r = 0; r < g->rules_.size(); ++r) {
    if (color[r] != 0) continue;
    if (int found = cycle(static_cast<int>(r)); found >= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("rule '", names_[found],
                       "' is left-recursive (it can call itself before reading "
                       "anything); write the repetition with * or + instead"));
    }
  }
  if (json_char_rule_ >= 0 && json_char_rule_ < num_rules()) {
    g->json_char_rule_ = json_char_rule_;
    g->string_bodies_.resize(g->rules_.size());
    for (const auto& [rule, max] : string_body_max_) {
      if (rule < 0 || rule >= num_rules()) continue;
      g->string_bodies_[static_cast<size_t>(rule)] =
          LabelStringBody(g->rules_[static_cast<size_t>(rule)], json_char_rule_, max);
    }
  }
  if (!byte_run_marks_.empty()) {
    g->byte_runs_.resize(g->rules_.size());
    for (const ByteRun& mark : byte_run_marks_) {
      const int rule = mark.chars[0];
      if (rule < 0 || rule >= num_rules()) continue;
      g->byte_runs_[static_cast<size_t>(rule)] =
          LabelByteRun(g->rules_[static_cast<size_t>(rule)], mark.set, mark.max);
    }
  }
  return std::shared_ptr<const Grammar>(std::move(g));
}

}  // namespace sluice::grammar
