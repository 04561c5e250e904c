#include "engine/grammar/matcher.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace sluice::grammar {

namespace {

// The smallest byte >= from in `set`, or 256.
int NextByte(const ByteSet& set, int from) {
  for (int w = from >> 6; w < 4 && from < 256; ++w, from = w << 6) {
    const uint64_t bits = set.bits[static_cast<size_t>(w)] & (~uint64_t{0} << (from & 63));
    if (bits != 0) return (w << 6) + __builtin_ctzll(bits);
  }
  return 256;
}

// (rule, node, parent) mixed into the interning key; a hit is confirmed against the frame.
uint64_t FrameKey(int32_t rule, int32_t node, int32_t parent) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(rule)) << 44) ^
         (static_cast<uint64_t>(static_cast<uint32_t>(node)) << 24) ^
         static_cast<uint64_t>(static_cast<uint32_t>(parent + 1));
}

}  // namespace

Automaton::Automaton(std::shared_ptr<const Grammar> grammar,
                     std::shared_ptr<const Vocabulary> vocab, Bounds bounds)
    : grammar_(std::move(grammar)), vocab_(std::move(vocab)), bounds_(bounds) {
  // Byte classes: bytes between the same edge boundaries behave alike in every state.
  bool boundary[257] = {};
  boundary[0] = true;
  for (const RuleFsm& fsm : grammar_->rules()) {
    for (const RuleFsm::Edge& e : fsm.edges) {
      if (e.rule >= 0) continue;
      boundary[e.lo] = true;
      boundary[e.hi + 1] = true;
    }
  }
  int c = -1;
  for (int b = 0; b < 256; ++b) {
    if (boundary[b]) ++c;
    class_of_[b] = static_cast<uint8_t>(c);
  }
  num_classes_ = c + 1;
  absl::MutexLock lock(&mu_);
  StartAfresh();
  // The tables of the grammar's byte runs now, not in a request's first masks.
  if (bounds_.byte_run_masks) {
    for (size_t r = 0; r < grammar_->rules().size(); ++r) {
      if (grammar_->byte_run(static_cast<int>(r)) != nullptr) RunTable(static_cast<int32_t>(r));
    }
  }
}

size_t Automaton::num_states() const {
  absl::MutexLock lock(&mu_);
  return states_.size();
}

uint64_t Automaton::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

size_t Automaton::num_run_masks() const {
  absl::MutexLock lock(&mu_);
  return run_masks_;
}

size_t Automaton::num_string_masks() const {
  absl::MutexLock lock(&mu_);
  return string_masks_;
}

void Automaton::StartAfresh() {
  ++generation_;
  frames_.clear();
  frame_index_.clear();
  states_.clear();
  state_index_.clear();
  next_.clear();
  visit_mark_.clear();
  masks_.clear();
  mask_index_.clear();
  cached_bytes_ = 0;
  State start;
  ++visit_epoch_;
  Expand(InternFrame(grammar_->root(), grammar_->rules()[grammar_->root()].start, -1), start);
  std::sort(start.tops.begin(), start.tops.end());
  start_ = InternState(std::move(start));
}

void Automaton::MaybeStartAfresh() {
  if (next_.size() > bounds_.max_transitions || frames_.size() > bounds_.max_frames) {
    StartAfresh();
  }
}

int32_t Automaton::InternFrame(int32_t rule, int32_t node, int32_t parent) {
  const int32_t depth = parent < 0 ? 0 : frames_[static_cast<size_t>(parent)].depth + 1;
  auto [it, inserted] =
      frame_index_.try_emplace(FrameKey(rule, node, parent), static_cast<int32_t>(frames_.size()));
  if (!inserted) {
    const Frame& f = frames_[static_cast<size_t>(it->second)];
    if (f.rule == rule && f.node == node && f.parent == parent) return it->second;
    // A collision (only past 2^20 rules or nodes): a fresh, unindexed frame.
    frames_.push_back({rule, node, parent, depth});
    return static_cast<int32_t>(frames_.size()) - 1;
  }
  frames_.push_back({rule, node, parent, depth});
  return it->second;
}

int32_t Automaton::InternState(State s) {
  std::vector<int32_t> key = s.tops;
  key.push_back(s.can_end ? -2 : -3);
  auto [it, inserted] =
      state_index_.try_emplace(std::move(key), static_cast<int32_t>(states_.size()));
  if (inserted) {
    s.string_room = StringRoom(s);
    FindRun(s);
    for (int32_t top : s.tops) {
      const Frame& f = frames_[static_cast<size_t>(top)];
      const RuleFsm& fsm = grammar_->rules()[static_cast<size_t>(f.rule)];
      for (int32_t i = fsm.edge_begin[f.node]; i < fsm.call_begin[f.node]; ++i) {
        s.first.AddRange(fsm.edges[static_cast<size_t>(i)].lo,
                         fsm.edges[static_cast<size_t>(i)].hi);
      }
    }
    int read = 0;
    for (uint64_t w : s.first.bits) read += __builtin_popcountll(w);
    s.sparse = read <= kSparseBytes;
    states_.push_back(std::move(s));
    next_.resize(next_.size() + static_cast<size_t>(num_classes_), kUnknown);
  }
  return it->second;
}

void Automaton::Expand(int32_t frame, State& out) {
  // Iterative: a right-recursive grammar can stack many frames that all end at once.
  std::vector<int32_t>& work = expand_work_;
  work.clear();
  work.push_back(frame);
  while (!work.empty()) {
    const int32_t id = work.back();
    work.pop_back();
    if (visit_mark_.size() <= static_cast<size_t>(id)) {
      visit_mark_.resize(frames_.size() * 2 + 16, 0);
    }
    if (visit_mark_[static_cast<size_t>(id)] == visit_epoch_) continue;
    visit_mark_[static_cast<size_t>(id)] = visit_epoch_;
    const Frame f = frames_[static_cast<size_t>(id)];
    const RuleFsm& fsm = grammar_->rules()[static_cast<size_t>(f.rule)];
    if (fsm.call_begin[f.node] > fsm.edge_begin[f.node]) out.tops.push_back(id);
    for (int32_t i = fsm.call_begin[f.node]; i < fsm.edge_begin[f.node + 1]; ++i) {
      const RuleFsm::Edge e = fsm.edges[static_cast<size_t>(i)];
      if (f.depth + 1 >= kMaxDepth) break;  // too deep: the call is not taken
      const int32_t back = InternFrame(f.rule, e.to, f.parent);
      work.push_back(
          InternFrame(e.rule, grammar_->rules()[static_cast<size_t>(e.rule)].start, back));
    }
    if (fsm.final[f.node]) {
      if (f.parent < 0) {
        out.can_end = true;
      } else {
        work.push_back(f.parent);
      }
    }
  }
}

int32_t Automaton::ComputeNext(int32_t state, uint8_t b) {
  State out;
  ++visit_epoch_;
  // By index: Expand interns frames, never states, so states_ does not move here.
  for (int32_t top : states_[static_cast<size_t>(state)].tops) {
    const Frame f = frames_[static_cast<size_t>(top)];
    const RuleFsm& fsm = grammar_->rules()[static_cast<size_t>(f.rule)];
    for (int32_t i = fsm.edge_begin[f.node]; i < fsm.call_begin[f.node]; ++i) {
      const RuleFsm::Edge& e = fsm.edges[static_cast<size_t>(i)];
      if (e.lo > b) break;  // byte edges are sorted by lo
      if (b <= e.hi) Expand(InternFrame(f.rule, e.to, f.parent), out);
    }
  }
  if (out.tops.empty() && !out.can_end) return kDead;
  std::sort(out.tops.begin(), out.tops.end());
  return InternState(std::move(out));
}

int32_t Automaton::Next(int32_t state, uint8_t b) {
  const size_t slot = static_cast<size_t>(state) * static_cast<size_t>(num_classes_) + class_of_[b];
  int32_t to = next_[slot];
  if (to == kUnknown) {
    // A byte no top reads is dead without stepping.
    to = states_[static_cast<size_t>(state)].first.Has(b) ? ComputeNext(state, b) : kDead;
    next_[slot] = to;  // by index: InternState may have grown next_
  }
  return to;
}

void Automaton::Walk(int32_t state, uint32_t* mask) {
  const Vocabulary::Trie& t = vocab_->trie();
  walk_.resize(static_cast<size_t>(t.max_depth) + 1);
  walk_[0] = state;
  // In a byte run, the tokens that fit it are allowed whatever else the state reads:
  // take them from the run's table and skip the subtrees made only of them.
  WalkScope scope{mask, nullptr, 0};
  if (bounds_.byte_run_masks && states_[static_cast<size_t>(state)].run_rule >= 0) {
    const State& st = states_[static_cast<size_t>(state)];
    if (const Vocabulary::ByteRuns* runs = RunTable(st.run_rule); runs != nullptr) {
      scope.room = st.run_room == kUnbounded ? runs->max_len : std::min(st.run_room, runs->max_len);
      const uint32_t* row = runs->rows.data() + static_cast<size_t>(scope.room) * runs->words;
      for (size_t w = 0; w < runs->words; ++w) mask[w] |= row[w];
      walk_dense_ = true;
      scope.pure = runs->pure.data();
      ++run_masks_;
    }
  }
  WalkChildren(t.root_child.data(), state, scope);
}

void Automaton::WalkChildren(const int32_t* child_of, int32_t state, const WalkScope& scope) {
  // Only the children by a byte the state reads (states read few bytes; a node with a
  // child table has many children).
  const ByteSet first = states_[static_cast<size_t>(state)].first;  // a copy: states_ grows
  const Vocabulary::Trie::Node* nodes = vocab_->trie().nodes.data();
  for (int b = NextByte(first, 0); b < 256; b = NextByte(first, b + 1)) {
    const int32_t i = child_of[b];
    if (i >= 0) WalkRange(i, nodes[i].end, scope);
  }
}

void Automaton::WalkRange(int32_t begin, int32_t end, const WalkScope& scope) {
  const Vocabulary::Trie& t = vocab_->trie();
  const Vocabulary::Trie::Node* nodes = t.nodes.data();
  int32_t* walk = walk_.data();
  uint32_t* mask = scope.mask;
  const size_t classes = static_cast<size_t>(num_classes_);
  const int32_t* next = next_.data();  // again after Next, which may grow the table
  for (int32_t i = begin; i < end;) {
    const Vocabulary::Trie::Node& node = nodes[i];
    if (scope.pure != nullptr && scope.pure[i] >= 0 && scope.pure[i] <= scope.room) {
      i = node.end;  // every token below fits the run: in the mask already
      continue;
    }
    const int32_t from = walk[node.depth - 1];
    int32_t to = next[static_cast<size_t>(from) * classes + class_of_[node.byte]];
    if (to < 0) {
      if (to == kUnknown) {
        to = Next(from, node.byte);
        next = next_.data();
      }
      if (to == kDead) {
        i = node.end;  // nothing in this subtree is allowed
        continue;
      }
    }
    walk[node.depth] = to;
    if (node.token >= 0) {
      mask[node.token >> 5] |= uint32_t{1} << (node.token & 31);
      if (!walk_dense_) Note(node.token);
      if (node.more) {
        for (int32_t k = t.extra_begin[static_cast<size_t>(i)];
             k < t.extra_begin[static_cast<size_t>(i) + 1]; ++k) {
          const int32_t id = t.extra_tokens[static_cast<size_t>(k)];
          mask[id >> 5] |= uint32_t{1} << (id & 31);
          if (!walk_dense_) Note(id);
        }
      }
    }
    if (node.fan >= 0 && states_[static_cast<size_t>(to)].sparse) {
      // Many children, few bytes read: go to those children directly.
      WalkChildren(t.child_tables.data() + static_cast<size_t>(node.fan) * 256, to, scope);
      next = next_.data();
      i = node.end;
      continue;
    }
    ++i;
  }
}

int32_t Automaton::StringRoom(const State& s) const {
  const int char_rule = grammar_->json_char_rule();
  if (char_rule < 0 || s.can_end || s.tops.empty() || s.tops.size() > 2) return kNoString;
  // The tops of a body at a character boundary: the next character's rule at its start,
  // returning into the body, and the body itself when its closing quote may come.
  int32_t ch = -1, quote = -1;
  for (int32_t top : s.tops) {
    const Frame& f = frames_[static_cast<size_t>(top)];
    if (ch < 0 && f.rule == char_rule && f.node == grammar_->rules()[char_rule].start) {
      ch = top;
    } else {
      quote = top;
    }
  }
  if (ch < 0) return kNoString;
  const Frame& c = frames_[static_cast<size_t>(ch)];
  // Escapes call one rule deeper: a string too near the depth bound is walked instead.
  if (c.parent < 0 || c.depth + 3 >= kMaxDepth) return kNoString;
  const Frame& after = frames_[static_cast<size_t>(c.parent)];
  const StringBody* body = grammar_->string_body(after.rule);
  if (body == nullptr) return kNoString;
  const int32_t read = body->chars[static_cast<size_t>(after.node)];  // with this character
  if (read == StringBody::kEnd) return kNoString;
  if (quote >= 0) {
    const Frame& q = frames_[static_cast<size_t>(quote)];
    if (q.rule != after.rule || q.parent != after.parent ||
        body->chars[static_cast<size_t>(q.node)] == StringBody::kEnd) {
      return kNoString;
    }
  }
  if (body->max < 0 || read == StringBody::kLoop) return kUnbounded;
  return body->max - read + 1;
}

void Automaton::FindRun(State& s) const {
  for (int32_t top : s.tops) {
    const Frame& f = frames_[static_cast<size_t>(top)];
    const ByteRun* run = grammar_->byte_run(f.rule);
    if (run == nullptr) continue;
    const int32_t read = run->chars[static_cast<size_t>(f.node)];
    const int32_t room = run->max < 0 || read == StringBody::kLoop ? kUnbounded : run->max - read;
    if (room == 0) continue;
    // The run that takes the most.
    if (s.run_rule < 0 || room == kUnbounded || (s.run_room != kUnbounded && room > s.run_room)) {
      s.run_rule = f.rule;
      s.run_room = room;
    }
  }
}

const Vocabulary::ByteRuns* Automaton::RunTable(int32_t rule) {
  if (run_tables_.size() <= static_cast<size_t>(rule)) run_tables_.resize(grammar_->rules().size());
  auto& [looked, table] = run_tables_[static_cast<size_t>(rule)];
  if (!looked) {
    looked = true;
    table = vocab_->byte_runs(grammar_->byte_run(rule)->set);
  }
  return table;
}

int32_t Automaton::Run(int32_t state, const std::string& bytes) {
  for (char ch : bytes) {
    state = Next(state, static_cast<uint8_t>(ch));
    if (state == kDead) break;
  }
  return state;
}

void Automaton::StringMask(int32_t state, uint32_t* mask) {
  const Vocabulary::JsonStrings& t = vocab_->json_strings();
  const int32_t room = states_[static_cast<size_t>(state)].string_room;
  const int rows = room == kUnbounded ? t.max_slots : std::min<int>(room, t.max_slots);
  std::memcpy(mask, t.inside.data() + static_cast<size_t>(rows) * t.words,
              sizeof(uint32_t) * t.words);
  // What follows the quote depends on the rest of the grammar: run those tokens.
  for (const auto& [chars, id] : t.closing) {
    if (room != kUnbounded && chars > room) break;
    if (Run(state, vocab_->bytes(id)) != kDead) mask[id >> 5] |= uint32_t{1} << (id & 31);
  }
}

void Automaton::FillMask(int32_t state, uint32_t* mask) {
  const size_t words = (static_cast<size_t>(vocab_->size()) + 31) / 32;
  if (auto hit = mask_index_.find(state); hit != mask_index_.end()) {
    const auto it = hit->second;
    if (it->sparse) {
      std::memset(mask, 0, sizeof(uint32_t) * words);
      for (uint32_t id : it->data) mask[id >> 5] |= uint32_t{1} << (id & 31);
    } else {
      std::memcpy(mask, it->data.data(), sizeof(uint32_t) * words);
    }
    if (it != masks_.begin()) masks_.splice(masks_.begin(), masks_, it);
    return;
  }
  std::memset(mask, 0, sizeof(uint32_t) * words);
  walk_ids_.clear();
  walk_dense_ = false;
  if (bounds_.json_string_masks && states_[static_cast<size_t>(state)].string_room != kNoString &&
      !vocab_->json_strings().inside.empty()) {
    StringMask(state, mask);
    walk_dense_ = true;
    ++string_masks_;
  } else {
    Walk(state, mask);
  }
  if (states_[static_cast<size_t>(state)].can_end) {
    for (int32_t id : vocab_->end_ids()) {
      mask[id >> 5] |= uint32_t{1} << (id & 31);
      walk_ids_.push_back(static_cast<uint32_t>(id));
    }
  }
  // Into the cache, evicting the oldest past its bytes.
  CachedMask entry{state, !walk_dense_, {}};
  if (entry.sparse) {
    entry.data = walk_ids_;
  } else {
    entry.data.assign(mask, mask + words);
  }
  const size_t bytes = sizeof(uint32_t) * entry.data.size() + 64;
  if (bytes > bounds_.mask_cache_bytes) return;
  while (!masks_.empty() && cached_bytes_ + bytes > bounds_.mask_cache_bytes) {
    cached_bytes_ -= sizeof(uint32_t) * masks_.back().data.size() + 64;
    mask_index_.erase(masks_.back().state);
    masks_.pop_back();
  }
  cached_bytes_ += bytes;
  masks_.push_front(std::move(entry));
  mask_index_[state] = masks_.begin();
}

Matcher::Matcher(std::shared_ptr<Automaton> automaton) : automaton_(std::move(automaton)) {
  absl::MutexLock lock(&automaton_->mu_);
  generation_ = automaton_->generation_;
  Push(automaton_->start_);
}

Matcher::Matcher(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const Vocabulary> vocab)
    : Matcher(std::make_shared<Automaton>(std::move(grammar), std::move(vocab))) {}

void Matcher::Push(int32_t state) {
  const Automaton::State& s = automaton_->states_[static_cast<size_t>(state)];
  history_.push_back(state);
  can_end_.push_back(s.can_end);
  only_end_.push_back(s.tops.empty());
}

int32_t Matcher::Run(int32_t state, const char* bytes, size_t n) {
  for (size_t i = 0; i < n && state != Automaton::kDead; ++i) {
    state = automaton_->Next(state, static_cast<uint8_t>(bytes[i]));
  }
  return state;
}

void Matcher::Sync() {
  automaton_->MaybeStartAfresh();
  if (generation_ == automaton_->generation_) return;
  // The automaton started afresh: the same bytes lead to the same configurations.
  generation_ = automaton_->generation_;
  int32_t state = automaton_->start_;
  history_[0] = state;
  size_t begin = 0;
  for (size_t k = 0; k < ends_.size(); ++k) {
    state = Run(state, bytes_.data() + begin, ends_[k] - begin);
    history_[k + 1] = state;
    begin = ends_[k];
  }
}

void Matcher::FillMask(uint32_t* mask) {
  if (Terminated()) {
    std::memset(mask, 0, sizeof(uint32_t) * ((static_cast<size_t>(vocab_size()) + 31) / 32));
    return;
  }
  absl::MutexLock lock(&automaton_->mu_);
  Sync();
  automaton_->FillMask(history_.back(), mask);
}

bool Matcher::AcceptBytes(const std::string& bytes) {
  if (Terminated()) return false;
  absl::MutexLock lock(&automaton_->mu_);
  Sync();
  const int32_t state = Run(history_.back(), bytes.data(), bytes.size());
  if (state == Automaton::kDead) return false;
  bytes_ += bytes;
  ends_.push_back(bytes_.size());
  Push(state);
  return true;
}

bool Matcher::AcceptToken(int32_t id) {
  if (Terminated() || id < 0 || id >= vocab_size()) return false;
  const Vocabulary& vocab = automaton_->vocab();
  if (vocab.is_end(id)) {
    if (!CanEnd()) return false;
    absl::MutexLock lock(&automaton_->mu_);
    Sync();
    ends_.push_back(bytes_.size());
    Push(history_.back());
    terminated_ = true;
    return true;
  }
  const std::string& bytes = vocab.bytes(id);
  if (bytes.empty()) return false;  // a special token: never part of a grammar's text
  return AcceptBytes(bytes);
}

void Matcher::Rollback(int n) {
  n = std::min(n, num_accepted());
  if (n <= 0) return;
  const size_t keep = ends_.size() - static_cast<size_t>(n);
  bytes_.resize(keep == 0 ? 0 : ends_[keep - 1]);
  ends_.resize(keep);
  history_.resize(keep + 1);
  can_end_.resize(keep + 1);
  only_end_.resize(keep + 1);
  terminated_ = false;  // an end token is always the last accepted
}

}  // namespace sluice::grammar
