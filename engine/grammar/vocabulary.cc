// The vocabulary's trie and its per-tokenizer tables (matcher.h): JSON string contents and
// byte runs, built on first use.
#include <algorithm>
#include <cstring>
#include <utility>

#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"

namespace sluice::grammar {

namespace {

// Bitmask rows 0..last, `words` each: row r holds the tokens of buckets[0..r].
std::vector<uint32_t> CumulativeRows(const std::vector<std::vector<int32_t>>& buckets, int last,
                                     size_t words) {
  std::vector<uint32_t> rows(static_cast<size_t>(last + 1) * words, 0);
  for (size_t r = 0; r < buckets.size(); ++r) {
    uint32_t* row = rows.data() + r * words;
    if (r > 0) std::memcpy(row, row - words, sizeof(uint32_t) * words);
    for (int32_t id : buckets[r]) row[id >> 5] |= uint32_t{1} << (id & 31);
  }
  return rows;
}

}  // namespace

Vocabulary::Vocabulary(std::vector<std::string> token_bytes, std::vector<int32_t> end_ids)
    : bytes_(std::move(token_bytes)), end_ids_(std::move(end_ids)) {
  // Built as lists of (byte, child) per node, then laid out depth first, children by byte.
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
  for (auto& c : children) std::sort(c.begin(), c.end());
  // Iterative depth-first layout: (node, byte into it, depth); a node's end is set
  // when the walk has left its subtree.
  struct Item {
    int32_t node;
    uint8_t byte;
    uint16_t depth;
  };
  std::vector<Item> todo;
  std::vector<int32_t> open;  // laid-out ancestors still open, by depth
  for (auto it = children[0].rbegin(); it != children[0].rend(); ++it) {
    todo.push_back({it->second, it->first, 1});
  }
  trie_.extra_begin.push_back(0);
  while (!todo.empty()) {
    const Item item = todo.back();
    todo.pop_back();
    const int32_t pos = trie_.size();
    while (open.size() >= item.depth) {
      trie_.nodes[static_cast<size_t>(open.back())].end = pos;
      open.pop_back();
    }
    const auto& here = tokens[static_cast<size_t>(item.node)];
    trie_.nodes.push_back({0, here.empty() ? -1 : here[0], -1, item.depth, item.byte,
                           static_cast<uint8_t>(here.size() > 1)});
    if (here.size() > 1)
      trie_.extra_tokens.insert(trie_.extra_tokens.end(), here.begin() + 1, here.end());
    trie_.extra_begin.push_back(static_cast<int32_t>(trie_.extra_tokens.size()));
    trie_.max_depth = std::max<int>(trie_.max_depth, item.depth);
    open.push_back(pos);
    const auto& kids = children[static_cast<size_t>(item.node)];
    for (auto it = kids.rbegin(); it != kids.rend(); ++it) {
      todo.push_back({it->second, it->first, static_cast<uint16_t>(item.depth + 1)});
    }
  }
  for (int32_t n : open) trie_.nodes[static_cast<size_t>(n)].end = trie_.size();
  // Child tables of the nodes with many children.
  for (int32_t i = 0; i < trie_.size(); ++i) {
    Trie::Node& node = trie_.nodes[static_cast<size_t>(i)];
    int kids = 0;
    for (int32_t j = i + 1; j < node.end; j = trie_.nodes[static_cast<size_t>(j)].end) ++kids;
    if (kids < Trie::kTableFanout) continue;
    node.fan = static_cast<int32_t>(trie_.child_tables.size() / 256);
    trie_.child_tables.resize(trie_.child_tables.size() + 256, -1);
    int32_t* table = trie_.child_tables.data() + static_cast<size_t>(node.fan) * 256;
    for (int32_t j = i + 1; j < node.end; j = trie_.nodes[static_cast<size_t>(j)].end) {
      table[trie_.nodes[static_cast<size_t>(j)].byte] = j;
    }
  }
  trie_.root_child.fill(-1);
  for (int32_t i = 0; i < trie_.size(); ++i) {
    const Trie::Node& n = trie_.nodes[static_cast<size_t>(i)];
    if (n.depth == 1) trie_.root_child[n.byte] = i;
  }
}

const Vocabulary::JsonStrings& Vocabulary::json_strings() const {
  absl::call_once(json_once_, [this] {
    // Each token through the body of an unbounded JSON string, as the JSON fronts compile
    // it, counting character boundaries (the states of a body between characters).
    auto probe = CompileJsonSchema(R"({"type":"string"})");
    auto table = std::make_unique<JsonStrings>();
    table->words = (static_cast<size_t>(size()) + 31) / 32;
    if (!probe.ok()) {  // cannot happen; an empty table only turns the lookup off
      json_ = std::move(table);
      return;
    }
    // Not owned: the automaton lives only in this scan.
    Automaton a(*probe,
                std::shared_ptr<const Vocabulary>(std::shared_ptr<const Vocabulary>(), this));
    absl::MutexLock lock(&a.mu_);
    const int32_t open = a.Next(a.start_, '"');
    std::vector<std::vector<int32_t>> by_slots;
    for (int32_t id = 0; id < size(); ++id) {
      const std::string& b = bytes(id);
      if (b.empty() || is_end(id)) continue;
      int32_t state = open, chars = 0;
      bool closed = false;
      for (char ch : b) {
        state = a.Next(state, static_cast<uint8_t>(ch));
        if (state == Automaton::kDead) break;
        const Automaton::State& st = a.states_[static_cast<size_t>(state)];
        if (st.tops.empty()) {  // the closing quote
          closed = true;
          break;
        }
        chars += st.string_room != Automaton::kNoString;
      }
      if (state == Automaton::kDead) continue;
      if (closed) {
        table->closing.emplace_back(chars, id);
        continue;
      }
      const bool partial =
          a.states_[static_cast<size_t>(state)].string_room == Automaton::kNoString;
      const size_t slots = static_cast<size_t>(chars + (partial ? 1 : 0));
      if (by_slots.size() <= slots) by_slots.resize(slots + 1);
      by_slots[slots].push_back(id);
    }
    std::sort(table->closing.begin(), table->closing.end());
    table->max_slots = by_slots.empty() ? 0 : static_cast<int>(by_slots.size()) - 1;
    table->inside = CumulativeRows(by_slots, table->max_slots, table->words);
    json_ = std::move(table);
  });
  return *json_;
}

const Vocabulary::ByteRuns* Vocabulary::byte_runs(const ByteSet& set) const {
  absl::MutexLock lock(&runs_mu_);
  for (const auto& [have, table] : runs_) {
    if (have.bits == set.bits) return table.get();
  }
  if (runs_.size() >= kMaxByteRunTables) return nullptr;
  auto table = std::make_unique<ByteRuns>();
  table->words = (static_cast<size_t>(size()) + 31) / 32;
  const int n = trie_.size();
  table->pure.assign(static_cast<size_t>(n), -1);
  std::vector<int16_t>& longest = table->pure;  // -1: not all in the set
  std::vector<bool> path(static_cast<size_t>(trie_.max_depth) + 1, true);
  std::vector<std::vector<int32_t>> by_len;
  // Only below the root's children by a byte of the set.
  for (int b = 0; b < 256; ++b) {
    const int32_t root = trie_.root_child[static_cast<size_t>(b)];
    if (root < 0 || !set.Has(b)) continue;
    const int32_t stop = trie_.nodes[static_cast<size_t>(root)].end;
    // Bottom up: whether a subtree is all in the set, and its longest token.
    for (int32_t i = stop - 1; i >= root; --i) {
      const Trie::Node& node = trie_.nodes[static_cast<size_t>(i)];
      if (!set.Has(node.byte)) continue;
      int16_t best = node.token >= 0 ? static_cast<int16_t>(node.depth) : 0;
      bool pure = true;
      for (int32_t j = i + 1; j < node.end && pure; j = trie_.nodes[static_cast<size_t>(j)].end) {
        pure = longest[static_cast<size_t>(j)] >= 0;
        best = std::max(best, longest[static_cast<size_t>(j)]);
      }
      longest[static_cast<size_t>(i)] = pure ? best : -1;
    }
    // Top down: the path from the root in the set too.
    for (int32_t i = root; i < stop; ++i) {
      const Trie::Node& node = trie_.nodes[static_cast<size_t>(i)];
      const bool on = path[node.depth - 1] && set.Has(node.byte);
      path[node.depth] = on;
      if (!on) {
        longest[static_cast<size_t>(i)] = -1;
        continue;
      }
      if (node.token < 0) continue;
      if (by_len.size() <= node.depth) by_len.resize(node.depth + 1);
      by_len[node.depth].push_back(node.token);
      if (node.more) {
        for (int32_t k = trie_.extra_begin[static_cast<size_t>(i)];
             k < trie_.extra_begin[static_cast<size_t>(i) + 1]; ++k) {
          by_len[node.depth].push_back(trie_.extra_tokens[static_cast<size_t>(k)]);
        }
      }
    }
  }
  table->max_len = by_len.empty() ? 0 : static_cast<int>(by_len.size()) - 1;
  table->rows = CumulativeRows(by_len, table->max_len, table->words);
  runs_.emplace_back(set, std::move(table));
  return runs_.back().second.get();
}

bool Vocabulary::is_end(int32_t id) const {
  return std::find(end_ids_.begin(), end_ids_.end(), id) != end_ids_.end();
}

}  // namespace sluice::grammar
