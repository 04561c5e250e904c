#include "engine/grammar/matcher.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace sluice::grammar {

Vocabulary::Vocabulary(std::vector<std::string> token_bytes, std::vector<int32_t> end_ids)
    : bytes_(std::move(token_bytes)), end_ids_(std::move(end_ids)) {
  // Built as lists of (byte, child) per node, then flattened with children by byte.
  std::vector<std::vector<std::pair<uint8_t, int32_t>>> children(1);
  std::vector<std::vector<int32_t>> tokens(1);
  for (size_t id = 0; id < bytes_.size(); ++id) {
    if (bytes_[id].empty() || is_end(static_cast<int32_t>(id))) continue;
    int32_t node = 0;
    for (char ch : bytes_[id]) {
      const uint8_t b = static_cast<uint8_t>(ch);
      int32_t next = -1;
      for (const auto& [cb, cn] : children[static_cast<size_t>(node)]) {
        if (cb == b) next = cn;
      }
      if (next < 0) {
        next = static_cast<int32_t>(children.size());
        children[static_cast<size_t>(node)].emplace_back(b, next);
        children.emplace_back();
        tokens.emplace_back();
      }
      node = next;
    }
    tokens[static_cast<size_t>(node)].push_back(static_cast<int32_t>(id));
  }
  trie_.child_begin.push_back(0);
  trie_.token_begin.push_back(0);
  for (size_t n = 0; n < children.size(); ++n) {
    std::sort(children[n].begin(), children[n].end());
    for (const auto& [b, c] : children[n]) {
      trie_.child_byte.push_back(b);
      trie_.child_node.push_back(c);
    }
    trie_.child_begin.push_back(static_cast<int32_t>(trie_.child_byte.size()));
    trie_.token_ids.insert(trie_.token_ids.end(), tokens[n].begin(), tokens[n].end());
    trie_.token_begin.push_back(static_cast<int32_t>(trie_.token_ids.size()));
  }
}

bool Vocabulary::is_end(int32_t id) const {
  return std::find(end_ids_.begin(), end_ids_.end(), id) != end_ids_.end();
}

Matcher::Matcher(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const Vocabulary> vocab)
    : grammar_(std::move(grammar)), vocab_(std::move(vocab)) {
  State start;
  ++visit_epoch_;
  Expand(Intern(grammar_->root(), grammar_->rules()[grammar_->root()].start, -1), start);
  std::sort(start.tops.begin(), start.tops.end());
  history_.push_back(std::move(start));
}

namespace {

// (rule, node, parent) mixed into the interning key; a hit is confirmed against the frame.
uint64_t FrameKey(int32_t rule, int32_t node, int32_t parent) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(rule)) << 44) ^
         (static_cast<uint64_t>(static_cast<uint32_t>(node)) << 24) ^
         static_cast<uint64_t>(static_cast<uint32_t>(parent + 1));
}

}  // namespace

int32_t Matcher::DepthOf(int32_t parent) const {
  return parent < 0 ? 0 : frames_[static_cast<size_t>(parent)].depth + 1;
}

int32_t Matcher::Intern(int32_t rule, int32_t node, int32_t parent) {
  const uint64_t key = FrameKey(rule, node, parent);
  // The key mixes three fields: confirm a hit against the frame itself.
  auto [it, inserted] = interned_.try_emplace(key, static_cast<int32_t>(frames_.size()));
  if (!inserted) {
    const Frame& f = frames_[static_cast<size_t>(it->second)];
    if (f.rule == rule && f.node == node && f.parent == parent) return it->second;
    // A collision (only past 2^20 rules or nodes): a fresh, uninterned frame.
    frames_.push_back({rule, node, parent, DepthOf(parent)});
    return static_cast<int32_t>(frames_.size()) - 1;
  }
  frames_.push_back({rule, node, parent, DepthOf(parent)});
  return it->second;
}

void Matcher::Expand(int32_t frame, State& out) {
  // Iterative: a right-recursive grammar can stack many frames that all end at once.
  std::vector<int32_t>& work = expand_work_;
  work.clear();
  work.push_back(frame);
  while (!work.empty()) {
    const int32_t id = work.back();
    work.pop_back();
    if (visit_mark_.size() <= static_cast<size_t>(id))
      visit_mark_.resize(frames_.size() * 2 + 16, 0);
    if (visit_mark_[static_cast<size_t>(id)] == visit_epoch_) continue;
    visit_mark_[static_cast<size_t>(id)] = visit_epoch_;
    const Frame f = frames_[static_cast<size_t>(id)];
    const RuleFsm& fsm = grammar_->rules()[static_cast<size_t>(f.rule)];
    if (fsm.call_begin[f.node] > fsm.edge_begin[f.node]) out.tops.push_back(id);
    for (int32_t i = fsm.call_begin[f.node]; i < fsm.edge_begin[f.node + 1]; ++i) {
      const RuleFsm::Edge e = fsm.edges[static_cast<size_t>(i)];
      if (f.depth + 1 >= kMaxDepth) break;  // too deep: the call is not taken
      const int32_t back = Intern(f.rule, e.to, f.parent);
      work.push_back(Intern(e.rule, grammar_->rules()[static_cast<size_t>(e.rule)].start, back));
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

void Matcher::Step(const State& from, uint8_t b, State& out) {
  out.tops.clear();
  out.can_end = false;
  ++visit_epoch_;
  for (int32_t top : from.tops) {
    const Frame f = frames_[static_cast<size_t>(top)];
    const RuleFsm& fsm = grammar_->rules()[static_cast<size_t>(f.rule)];
    for (int32_t i = fsm.edge_begin[f.node]; i < fsm.call_begin[f.node]; ++i) {
      const RuleFsm::Edge& e = fsm.edges[static_cast<size_t>(i)];
      if (e.lo > b) break;  // byte edges are sorted by lo
      if (b <= e.hi) Expand(Intern(f.rule, e.to, f.parent), out);
    }
  }
  std::sort(out.tops.begin(), out.tops.end());
}

bool Matcher::AcceptBytes(const std::string& bytes) {
  if (Terminated()) return false;
  State cur = history_.back(), next;
  for (char ch : bytes) {
    Step(cur, static_cast<uint8_t>(ch), next);
    if (next.tops.empty() && !next.can_end) return false;
    std::swap(cur, next);
  }
  history_.push_back(std::move(cur));
  return true;
}

bool Matcher::AcceptToken(int32_t id) {
  if (Terminated() || id < 0 || id >= vocab_->size()) return false;
  if (vocab_->is_end(id)) {
    if (!CanEnd()) return false;
    history_.push_back(history_.back());
    terminated_ = true;
    return true;
  }
  const std::string& bytes = vocab_->bytes(id);
  if (bytes.empty()) return false;  // a special token: never part of a grammar's text
  return AcceptBytes(bytes);
}

void Matcher::Rollback(int n) {
  n = std::min(n, num_accepted());
  if (n <= 0) return;
  history_.resize(history_.size() - static_cast<size_t>(n));
  terminated_ = false;  // an end token is always the last accepted
}

void Matcher::Walk(int32_t trie_node, int depth, uint32_t* mask) {
  const Vocabulary::Trie& t = vocab_->trie();
  for (int32_t i = t.token_begin[trie_node]; i < t.token_begin[trie_node + 1]; ++i) {
    const int32_t id = t.token_ids[static_cast<size_t>(i)];
    mask[id >> 5] |= uint32_t{1} << (id & 31);
  }
  if (walk_.size() <= static_cast<size_t>(depth + 1)) walk_.resize(static_cast<size_t>(depth) + 2);
  for (int32_t c = t.child_begin[trie_node]; c < t.child_begin[trie_node + 1]; ++c) {
    if (walk_[depth].tops.empty()) return;  // nothing continues: no longer token fits
    Step(walk_[depth], t.child_byte[static_cast<size_t>(c)], walk_[depth + 1]);
    if (walk_[depth + 1].tops.empty() && !walk_[depth + 1].can_end) continue;
    Walk(t.child_node[static_cast<size_t>(c)], depth + 1, mask);
  }
}

void Matcher::FillMask(uint32_t* mask) {
  const size_t words = (static_cast<size_t>(vocab_->size()) + 31) / 32;
  std::memset(mask, 0, sizeof(uint32_t) * words);
  if (Terminated()) return;
  // A state seen lately (a loop inside a string, a repeated structure) has its mask.
  const State& now = history_.back();
  for (auto it = mask_cache_.begin(); it != mask_cache_.end(); ++it) {
    if (it->can_end == now.can_end && it->tops == now.tops) {
      std::memcpy(mask, it->mask.data(), sizeof(uint32_t) * words);
      if (it != mask_cache_.begin()) mask_cache_.splice(mask_cache_.begin(), mask_cache_, it);
      return;
    }
  }
  // The walk's frames are temporary: drop them (and their interning) afterwards.
  const size_t mark = frames_.size();
  if (walk_.empty()) walk_.resize(1);
  walk_[0] = history_.back();
  Walk(0, 0, mask);
  for (size_t f = mark; f < frames_.size(); ++f) {
    const Frame& fr = frames_[f];
    const uint64_t key = FrameKey(fr.rule, fr.node, fr.parent);
    auto it = interned_.find(key);
    if (it != interned_.end() && it->second == static_cast<int32_t>(f)) interned_.erase(it);
  }
  frames_.resize(mark);
  if (CanEnd()) {
    for (int32_t id : vocab_->end_ids()) mask[id >> 5] |= uint32_t{1} << (id & 31);
  }
  // History states hold only frames that outlive walks, so their ids stay meaningful.
  mask_cache_.push_front({now.tops, now.can_end, std::vector<uint32_t>(mask, mask + words)});
  if (mask_cache_.size() > kMaskCache) mask_cache_.pop_back();
}

}  // namespace sluice::grammar
