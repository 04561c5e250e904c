// Workloads, request bodies, the tokenizer fit and URL parsing.
#include "bench/serving/workload.h"

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "bench/serving/http_client.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace sluice::bench {
namespace {

int64_t Words(const std::string& s) {
  std::istringstream in(s);
  int64_t n = 0;
  for (std::string w; in >> w;) ++n;
  return n;
}

TEST(TokenModelTest, FitsTwoProbesAndInverts) {
  const TokenModel tm = FitTokenModel(50, 80, 250, 380);  // 1.5 tokens/word + 5
  EXPECT_DOUBLE_EQ(tm.per_word, 1.5);
  EXPECT_DOUBLE_EQ(tm.overhead, 5.0);
  EXPECT_EQ(tm.WordsFor(155), 100);
  EXPECT_EQ(tm.TokensFor(100), 150);
  EXPECT_DOUBLE_EQ(FitTokenModel(50, 80, 250, 80).per_word, 1.0);  // degenerate probes
}

TEST(SyntheticTest, LengthsFollowTheTokenModel) {
  const TokenModel tm{2.0, 4.0};
  const auto items = SyntheticWorkload({10, 204, 32, 0.0, 7}, tm);
  ASSERT_EQ(items.size(), 10u);
  for (const WorkItem& it : items) {
    EXPECT_EQ(Words(it.prompt), 100);  // (204 − 4) / 2
    EXPECT_EQ(it.max_tokens, 32);
    EXPECT_EQ(it.expected_input_tokens, 204);
    EXPECT_TRUE(it.system.empty());
  }
  EXPECT_NE(items[0].prompt, items[1].prompt);
  const auto ranged = SyntheticWorkload({200, 100, 100, 0.5, 7}, TokenModel{});
  for (const WorkItem& it : ranged) {
    EXPECT_GE(it.max_tokens, 50);
    EXPECT_LE(it.max_tokens, 150);
  }
}

TEST(PrefixTest, KSystemPromptsTimesMUsers) {
  const auto items = PrefixWorkload({24, 3, 4, 20, 50, 8, 1}, TokenModel{});
  ASSERT_EQ(items.size(), 24u);
  std::set<std::string> systems, pairs;
  for (size_t i = 0; i < items.size(); ++i) {
    systems.insert(items[i].system);
    pairs.insert(items[i].system + "|" + items[i].prompt);
    EXPECT_EQ(Words(items[i].system), 20);
    EXPECT_EQ(Words(items[i].prompt), 30);
    EXPECT_EQ(items[i].system, items[i % 3].system);  // request i uses prefix i % K
  }
  EXPECT_EQ(systems.size(), 3u);
  EXPECT_EQ(pairs.size(), 12u);  // K × M distinct prompts, each sent twice
}

TEST(ShareGptTest, LoadsFiltersAndCycles) {
  const std::string path = ::testing::TempDir() + "/sharegpt_test.json";
  std::ofstream(path) << R"([
    {"id": "a", "conversations": [{"from": "human", "value": "one two three four five"},
                                   {"from": "gpt", "value": "six seven eight nine ten eleven"}]},
    {"id": "short", "conversations": [{"from": "human", "value": "hi"},
                                       {"from": "gpt", "value": "hello there my friend"}]},
    {"id": "one-turn", "conversations": [{"from": "human", "value": "a b c d e"}]}
  ])";
  auto items = ShareGptWorkload(path, 3, 0, 0, TokenModel{});
  ASSERT_TRUE(items.ok()) << items.status();
  ASSERT_EQ(items->size(), 3u);
  for (const WorkItem& it : *items) {
    EXPECT_EQ(it.prompt, "one two three four five");
    EXPECT_EQ(it.expected_input_tokens, 5);
    EXPECT_EQ(it.max_tokens, 6);
  }
  auto fixed = ShareGptWorkload(path, 1, 50, 0, TokenModel{});
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ((*fixed)[0].max_tokens, 50);
  EXPECT_FALSE(ShareGptWorkload(path + ".missing", 1, 0, 0, TokenModel{}).ok());
}

TEST(RequestBodyTest, CompletionsAndChat) {
  const WorkItem item{"sys", "user words", 3, 16};
  const auto c = nlohmann::json::parse(RequestBody(item, {Endpoint::kCompletions, "m", true, 0}));
  EXPECT_EQ(c["prompt"], "sys\nuser words");
  EXPECT_EQ(c["max_tokens"], 16);
  EXPECT_EQ(c["stream"], true);
  EXPECT_EQ(c["stream_options"]["include_usage"], true);
  EXPECT_EQ(c["ignore_eos"], true);
  EXPECT_EQ(c["model"], "m");
  const auto chat = nlohmann::json::parse(RequestBody(item, {Endpoint::kChat, "m", false, 0}));
  ASSERT_EQ(chat["messages"].size(), 2u);
  EXPECT_EQ(chat["messages"][0]["role"], "system");
  EXPECT_EQ(chat["messages"][1]["content"], "user words");
  EXPECT_FALSE(chat.contains("ignore_eos"));
}

TEST(ParseTargetTest, HostPortAndPath) {
  auto t = ParseTarget("http://127.0.0.1:8011", Endpoint::kCompletions);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->host, "127.0.0.1");
  EXPECT_EQ(t->port, "8011");
  EXPECT_EQ(t->path, "/v1/completions");
  EXPECT_EQ(ParseTarget("http://h:1/v1/", Endpoint::kChat)->path, "/v1/chat/completions");
  EXPECT_EQ(ParseTarget("http://h/x/v1/completions", Endpoint::kChat)->path, "/x/v1/completions");
  EXPECT_EQ(ParseTarget("http://h", Endpoint::kChat)->port, "80");
  EXPECT_FALSE(ParseTarget("https://h:1", Endpoint::kChat).ok());
  EXPECT_FALSE(ParseTarget("http://:1", Endpoint::kChat).ok());
}

}  // namespace
}  // namespace sluice::bench
