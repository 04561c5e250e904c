#include "bench/serving/workload.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace sluice::bench {
namespace {

// Short, frequent words: one token each in most BPE vocabularies.
constexpr std::array<const char*, 96> kWords = {
    "the",   "of",    "and",   "to",     "in",   "is",   "you",   "that",   "it",    "he",
    "was",   "for",   "on",    "are",    "as",   "with", "his",   "they",   "at",    "be",
    "this",  "have",  "from",  "or",     "one",  "had",  "by",    "word",   "but",   "not",
    "what",  "all",   "were",  "we",     "when", "your", "can",   "said",   "there", "use",
    "an",    "each",  "which", "she",    "do",   "how",  "their", "if",     "will",  "up",
    "other", "about", "out",   "many",   "then", "them", "these", "so",     "some",  "her",
    "would", "make",  "like",  "him",    "into", "time", "has",   "look",   "two",   "more",
    "write", "go",    "see",   "number", "no",   "way",  "could", "people", "my",    "than",
    "first", "water", "been",  "call",   "who",  "its",  "now",   "find",   "long",  "down",
    "day",   "did",   "get",   "come",   "made", "may"};

int64_t CountWords(const std::string& text) {
  std::istringstream in(text);
  int64_t n = 0;
  for (std::string w; in >> w;) ++n;
  return n;
}

int64_t Jitter(std::mt19937_64& rng, int64_t len, double ratio) {
  if (ratio <= 0) return len;
  const auto lo = static_cast<int64_t>(std::floor(static_cast<double>(len) * (1 - ratio)));
  const auto hi = static_cast<int64_t>(std::ceil(static_cast<double>(len) * (1 + ratio)));
  return std::uniform_int_distribution<int64_t>(std::max<int64_t>(lo, 1), hi)(rng);
}

}  // namespace

int64_t TokenModel::WordsFor(int64_t tokens) const {
  const double words = (static_cast<double>(tokens) - overhead) / per_word;
  return std::max<int64_t>(1, std::llround(words));
}

int64_t TokenModel::TokensFor(int64_t words) const {
  return std::llround(per_word * static_cast<double>(words));
}

TokenModel FitTokenModel(int64_t words_a, int64_t tokens_a, int64_t words_b, int64_t tokens_b) {
  if (tokens_b <= tokens_a) return TokenModel{};
  TokenModel tm;
  tm.per_word = static_cast<double>(tokens_b - tokens_a) / static_cast<double>(words_b - words_a);
  tm.overhead =
      std::max(0.0, static_cast<double>(tokens_a) - tm.per_word * static_cast<double>(words_a));
  return tm;
}

std::string RandomWords(std::mt19937_64& rng, int64_t count) {
  std::uniform_int_distribution<size_t> pick(0, kWords.size() - 1);
  std::string out;
  for (int64_t i = 0; i < count; ++i) {
    if (i > 0) out.push_back(' ');
    out += kWords[pick(rng)];
  }
  return out;
}

std::vector<WorkItem> SyntheticWorkload(const SyntheticConfig& config, const TokenModel& tm) {
  std::mt19937_64 rng(config.seed);
  std::vector<WorkItem> items;
  items.reserve(static_cast<size_t>(config.num_requests));
  for (int64_t i = 0; i < config.num_requests; ++i) {
    WorkItem item;
    item.expected_input_tokens = Jitter(rng, config.input_len, config.range_ratio);
    item.max_tokens = Jitter(rng, config.output_len, config.range_ratio);
    item.prompt = RandomWords(rng, tm.WordsFor(item.expected_input_tokens));
    items.push_back(std::move(item));
  }
  return items;
}

std::vector<WorkItem> PrefixWorkload(const PrefixConfig& config, const TokenModel& tm) {
  std::mt19937_64 rng(config.seed);
  // The overhead belongs to the whole prompt once: count it in the prefix.
  const int64_t prefix_words = tm.WordsFor(config.prefix_len);
  const int64_t user_words = std::max<int64_t>(
      1, std::llround(static_cast<double>(config.input_len - config.prefix_len) / tm.per_word));
  std::vector<std::string> systems;
  std::vector<std::vector<std::string>> users(static_cast<size_t>(config.num_prefixes));
  for (int64_t k = 0; k < config.num_prefixes; ++k) {
    systems.push_back(RandomWords(rng, prefix_words));
    for (int64_t m = 0; m < config.num_users; ++m) {
      users[static_cast<size_t>(k)].push_back(RandomWords(rng, user_words));
    }
  }
  std::vector<WorkItem> items;
  for (int64_t i = 0; i < config.num_requests; ++i) {
    const auto k = static_cast<size_t>(i % config.num_prefixes);
    const auto m = static_cast<size_t>((i / config.num_prefixes) % config.num_users);
    items.push_back(WorkItem{systems[k], users[k][m], config.input_len, config.output_len});
  }
  return items;
}

absl::StatusOr<std::vector<WorkItem>> ShareGptWorkload(const std::string& path,
                                                       int64_t num_requests, int64_t output_len,
                                                       uint64_t seed, const TokenModel& tm) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("sharegpt: cannot open " + path);
  nlohmann::json root = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_array()) {
    return absl::InvalidArgumentError("sharegpt: " + path + " is not a JSON array");
  }
  std::vector<WorkItem> pool;
  for (const nlohmann::json& entry : root) {
    if (!entry.is_object()) continue;
    auto conv = entry.find("conversations");
    if (conv == entry.end() || !conv->is_array() || conv->size() < 2) continue;
    const nlohmann::json& q = (*conv)[0];
    const nlohmann::json& a = (*conv)[1];
    if (!q.is_object() || !a.is_object() || !q.value("value", nlohmann::json()).is_string() ||
        !a.value("value", nlohmann::json()).is_string()) {
      continue;
    }
    WorkItem item;
    item.prompt = q["value"].get<std::string>();
    item.expected_input_tokens = tm.TokensFor(CountWords(item.prompt));
    item.max_tokens =
        output_len > 0 ? output_len : tm.TokensFor(CountWords(a["value"].get<std::string>()));
    if (item.expected_input_tokens < 4 || item.max_tokens < 4) continue;
    if (item.expected_input_tokens > 1024 || item.expected_input_tokens + item.max_tokens > 2048) {
      continue;
    }
    pool.push_back(std::move(item));
  }
  if (pool.empty()) {
    return absl::InvalidArgumentError("sharegpt: no usable conversation in " + path);
  }
  std::mt19937_64 rng(seed);
  std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<WorkItem> items;
  for (int64_t i = 0; i < num_requests; ++i) {
    items.push_back(pool[static_cast<size_t>(i) % pool.size()]);
  }
  return items;
}

std::string RequestBody(const WorkItem& item, const BodyOptions& options) {
  nlohmann::json body = {{"model", options.model},
                         {"max_tokens", item.max_tokens},
                         {"temperature", options.temperature},
                         {"stream", true},
                         {"stream_options", {{"include_usage", true}}}};
  if (options.ignore_eos) body["ignore_eos"] = true;
  if (options.endpoint == Endpoint::kChat) {
    nlohmann::json messages = nlohmann::json::array();
    if (!item.system.empty()) messages.push_back({{"role", "system"}, {"content", item.system}});
    messages.push_back({{"role", "user"}, {"content", item.prompt}});
    body["messages"] = std::move(messages);
  } else {
    body["prompt"] = item.system.empty() ? item.prompt : item.system + "\n" + item.prompt;
  }
  return body.dump();
}

}  // namespace sluice::bench
