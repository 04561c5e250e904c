// What the gateway reads and rewrites of bodies and streams: JSON members edited in place,
// completion bodies typed in the engine's words and salted, the SSE filter's usage
// handling, the salt HMAC, and the nesting bound.
#include <string>

#include "gateway/completion_body.h"
#include "gateway/json_members.h"
#include "gateway/salt.h"
#include "gateway/sse_filter.h"
#include "gtest/gtest.h"
#include "net/json_limits.h"

namespace sluice::gateway {
namespace {

TEST(JsonMembersTest, FindsMembersWithDecodedKeysAndExactSpans) {
  const std::string text = R"( { "b" : [1, {"x": "}"}], "a\u0062c":"q\"", "n": -1.50e+3 } )";
  auto m = ObjectMembers(text);
  ASSERT_TRUE(m.has_value());
  ASSERT_EQ(m->size(), 3u);
  EXPECT_EQ((*m)[0].key, "b");
  EXPECT_EQ(text.substr((*m)[0].value_begin, (*m)[0].end - (*m)[0].value_begin),
            R"([1, {"x": "}"}])");
  EXPECT_EQ((*m)[1].key, "abc");
  EXPECT_EQ(*MemberValue(text, "abc"), R"("q\"")");
  EXPECT_EQ(*MemberValue(text, "n"), "-1.50e+3");
  EXPECT_FALSE(ObjectMembers("[1]").has_value());
  EXPECT_TRUE(ObjectMembers("{}")->empty());
}

TEST(JsonMembersTest, SetKeepsOrderAndBytesAndTheLastDuplicateWins) {
  EXPECT_EQ(SetMember(R"({"z": 1.0, "a": "\u00e9"})", "m", "true"),
            R"({"z": 1.0,"a": "\u00e9","m":true})");
  // The member a parser keeps is the last: it keeps its place, the earlier ones go.
  EXPECT_EQ(SetMember(R"({"s": 1, "k": 2, "s": 3})", "s", R"("x")"), R"({"k": 2,"s":"x"})");
  // A key spelled with escapes is the same key.
  EXPECT_EQ(SetMember(R"({"cache_s\u0061lt": "mine"})", "cache_salt", R"("gw")"),
            R"({"cache_salt":"gw"})");
  EXPECT_EQ(SetMember("{}", "a", "[]"), R"({"a":[]})");
  // A byte order mark (which the parser skips) is no reason to lose the members.
  EXPECT_EQ(SetMember("\xEF\xBB\xBF {\"p\": 1}", "s", "2"), R"({"p": 1,"s":2})");
  EXPECT_EQ(RemoveMember(R"({"usage": null, "id": "x", "usage": {}})", "usage"), R"({"id": "x"})");
}

TEST(CompletionBodyTest, WrongTypesAreRefusedInTheEnginesWords) {
  struct Case {
    std::string body, param, message;
    bool chat = false;
  } cases[] = {
      {R"({"prompt": "x", "stream": "yes"})", "stream", "'stream' must be a boolean"},
      {R"({"prompt": "x", "stream": 0})", "stream", "'stream' must be a boolean"},
      {R"({"prompt": "x", "stream": true, "stream_options": {"include_usage": 1}})",
       "stream_options.include_usage", "'include_usage' must be a boolean"},
      {R"({"prompt": "x", "stream_options": []})", "stream_options",
       "'stream_options' must be an object"},
      {R"({"prompt": "x", "n": "2"})", "n", "'n' must be an integer"},
      {R"({"prompt": "x", "max_tokens": 1.5})", "max_tokens", "'max_tokens' must be an integer"},
      {R"({"prompt": 5})", "prompt", "'prompt' must be a string, a list of strings, or token ids"},
      {R"({"prompt": ["a", 3]})", "prompt",
       "'prompt' list items must be strings or non-empty token id lists"},
      {R"({"max_tokens": 3})", "prompt", "'prompt' is required"},
      {R"({"messages": {}})", "messages", "'messages' must be a non-empty list", true},
      {R"({"messages": [{}], "max_completion_tokens": "x"})", "max_completion_tokens",
       "'max_completion_tokens' must be an integer", true},
  };
  for (const Case& c : cases) {
    const nlohmann::json j = nlohmann::json::parse(c.body);
    auto r = ReadCompletionShape(j, c.body, c.chat);
    ASSERT_TRUE(std::holds_alternative<FieldError>(r)) << c.body;
    EXPECT_EQ(std::get<FieldError>(r).param, c.param) << c.body;
    EXPECT_EQ(std::get<FieldError>(r).message, c.message) << c.body;
  }
}

TEST(CompletionBodyTest, ShapeCountsPromptsSequencesAndEstimatedTokens) {
  const std::string body =
      R"({"prompt": ["abcdefgh", [1, 2, 3], "x"], "n": 4.0, "max_tokens": 7, "stream": null,
          "stream_options": null})";
  auto r = ReadCompletionShape(nlohmann::json::parse(body), body, false);
  ASSERT_TRUE(std::holds_alternative<CompletionShape>(r));
  const CompletionShape& s = std::get<CompletionShape>(r);
  EXPECT_EQ(s.num_prompts, 3);
  EXPECT_EQ(s.n, 4);
  EXPECT_EQ(s.sequences(), 12);
  EXPECT_EQ(s.prompt_tokens, 2 + 3 + 1);  // 8 bytes / 4, 3 ids, 1 byte rounded up
  EXPECT_EQ(s.max_tokens, 7);
  EXPECT_FALSE(s.stream);
  const std::string chat = R"({"messages": [{"role": "user", "content": "hello world!"}],
                               "max_tokens": 5, "max_completion_tokens": 9})";
  auto c = ReadCompletionShape(nlohmann::json::parse(chat), chat, true);
  ASSERT_TRUE(std::holds_alternative<CompletionShape>(c));
  EXPECT_EQ(std::get<CompletionShape>(c).max_tokens, 9);  // as the engine: the later name wins
  EXPECT_GT(std::get<CompletionShape>(c).prompt_tokens, 0);
}

TEST(CompletionBodyTest, RewriteSaltsAsksForUsageAndKeepsTheRest) {
  const std::string body =
      R"({"tools": [{"parameters": {"zeta": 1, "alpha": 2}}], "cache_salt": "guess",)"
      R"( "stream": true, "stream_options": {"x": 1, "include_usage": false}, "top_p": 1.0})";
  EXPECT_EQ(RewriteCompletionBody(body, "gw-1", true),
            R"({"tools": [{"parameters": {"zeta": 1, "alpha": 2}}],"cache_salt":"gw-1",)"
            R"("stream": true,"stream_options":{"x": 1,"include_usage":true,)"
            R"("continuous_usage_stats":true},"top_p": 1.0})");
  EXPECT_EQ(RewriteCompletionBody(R"({"prompt": "p"})", "s", false),
            R"({"prompt": "p","cache_salt":"s"})");
}

TEST(SseFilterTest, GivesTheClientTheUsageItAskedForAndReadsAll) {
  // What the upstream sends when asked for usage in every chunk.
  const std::string a =
      "data: {\"choices\":[{\"text\":\"x\"}],\"usage\":{\"prompt_tokens\":5,"
      "\"completion_tokens\":1}}\n\n";
  const std::string u =
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}\n\n";
  const std::string done = "data: [DONE]\n\n";
  const std::string all = a + u + done;
  SseFilter none(false, false);
  std::string out;
  // Split at awkward places: events pass whole, once complete.
  for (size_t i = 0; i < all.size(); i += 7) out += none.Feed(all.substr(i, 7));
  out += none.Flush();
  EXPECT_EQ(out, "data: {\"choices\":[{\"text\":\"x\"}]}\n\n" + done);
  EXPECT_EQ(none.usage().total(), 12);
  EXPECT_TRUE(none.done());
  SseFilter final_only(true, false);
  EXPECT_EQ(final_only.Feed(all),
            "data: {\"choices\":[{\"text\":\"x\"}],\"usage\":null}\n\n" + u + done);
  SseFilter every(true, true);
  EXPECT_EQ(every.Feed(all), all);
  // Usage is known from the first chunk on: a stream cut after it is charged for it.
  SseFilter cut(false, false);
  cut.Feed(a);
  EXPECT_TRUE(cut.usage().seen);
  EXPECT_EQ(cut.usage().total(), 6);
  // The first event is not held back waiting for more, and nothing is done before [DONE].
  SseFilter prompt(false, false);
  EXPECT_EQ(prompt.Feed("data: {\"choices\":[]}\n\n"), "data: {\"choices\":[]}\n\n");
  EXPECT_FALSE(prompt.done());
}

TEST(SseFilterTest, ReadsUsageFromAWholeAnswer) {
  Usage u;
  EXPECT_TRUE(ReadUsage(R"({"usage": {"prompt_tokens": 3, "completion_tokens": 4}})", &u));
  EXPECT_EQ(u.total(), 7);
  Usage none;
  EXPECT_FALSE(ReadUsage(R"({"usage": null})", &none));
  EXPECT_FALSE(ReadUsage("not json", &none));
  EXPECT_FALSE(none.seen);
  Usage odd;  // wrong types count as nothing, and throw nothing
  EXPECT_TRUE(ReadUsage(R"({"usage": {"prompt_tokens": "3", "completion_tokens": null}})", &odd));
  EXPECT_EQ(odd.total(), 0);
}

TEST(SaltKeyTest, IsAnHmacOfTheTenantName) {
  // RFC 4231-style check with a known vector: HMAC-SHA256("key", "The quick brown fox...").
  SaltKey key("key");
  EXPECT_EQ(key.CacheSalt("The quick brown fox jumps over the lazy dog"),
            "gw-f7bc83f430538424b13298e6aa6fb143");
  EXPECT_NE(SaltKey("another").CacheSalt("acme"), SaltKey("key").CacheSalt("acme"));
  auto a = SaltKey::Load(""), b = SaltKey::Load("");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->CacheSalt("acme"), b->CacheSalt("acme"));  // random per process
}

TEST(SaltKeyTest, CreatesAMissingSecretFileAndRefusesAShortOne) {
  const std::string path = testing::TempDir() + "/salt-secret-test";
  std::remove(path.c_str());
  auto first = SaltKey::Load(path);
  ASSERT_TRUE(first.ok()) << first.status();
  auto again = SaltKey::Load(path);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(first->CacheSalt("acme"), again->CacheSalt("acme"));
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs("short", f);
  std::fclose(f);
  auto bad = SaltKey::Load(path);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("at least 16"), std::string::npos);
  std::remove(path.c_str());
}

TEST(JsonLimitsTest, RefusesNestingPastTheLimitWithoutRecursing) {
  EXPECT_TRUE(CheckJsonDepth(std::string(128, '[') + std::string(128, ']')).ok());
  const absl::Status deep = CheckJsonDepth(std::string(129, '[') + std::string(129, ']'));
  EXPECT_FALSE(deep.ok());
  EXPECT_NE(std::string(deep.message()).find("128"), std::string::npos);
  EXPECT_FALSE(CheckJsonDepth("{\"x\": " + std::string(80000, '[')).ok());
  // Brackets inside strings (escaped quotes too) are text.
  EXPECT_TRUE(CheckJsonDepth(R"({"s": "\"[[[[", "t": ")" + std::string(500, '{') + "\"}").ok());
}

}  // namespace
}  // namespace sluice::gateway
