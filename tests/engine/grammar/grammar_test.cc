// The grammar compilers and the matcher: which byte strings each front accepts, errors
// naming where, integer and number bounds checked exhaustively, and the token mask equal
// to trying every token.
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/tokenizer.h"
#include "tests/common/fixtures.h"

namespace sluice::grammar {
namespace {

// One token per byte, and an end token (256).
std::shared_ptr<const Vocabulary> ByteVocab() {
  static auto vocab = [] {
    std::vector<std::string> bytes;
    for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
    bytes.emplace_back();  // the end token spells nothing
    return std::make_shared<const Vocabulary>(std::move(bytes), std::vector<int32_t>{256});
  }();
  return vocab;
}

bool Accepts(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  Matcher m(g, ByteVocab());
  return m.AcceptBytes(text) && m.CanEnd();
}

std::shared_ptr<const Grammar> Ebnf(const std::string& text) {
  auto g = CompileEbnf(text);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *g : nullptr;
}

std::shared_ptr<const Grammar> Regex(const std::string& pattern) {
  auto g = CompileRegex(pattern);
  EXPECT_TRUE(g.ok()) << pattern << ": " << g.status();
  return g.ok() ? *g : nullptr;
}

std::shared_ptr<const Grammar> Schema(const std::string& schema, bool strict = false) {
  JsonOptions o;
  o.strict = strict;
  auto g = CompileJsonSchema(schema, o);
  EXPECT_TRUE(g.ok()) << schema << ": " << g.status();
  return g.ok() ? *g : nullptr;
}

TEST(EbnfTest, RulesAlternativesRepetitionAndClasses) {
  auto g = Ebnf(R"(
# a list of names
root ::= "[" ( name ("," name)* )? "]"
name ::= [a-zA-Z_] [a-zA-Z0-9_]{0,7}
  | "'" [^']+ "'"
)");
  ASSERT_NE(g, nullptr);
  for (const char* ok : {"[]", "[a]", "[ab_1,c]", "['x y',z]", "[abcdefgh]"}) {
    EXPECT_TRUE(Accepts(g, ok)) << ok;
  }
  for (const char* bad : {"[", "[1a]", "[abcdefghi]", "[a,]", "['']", "x"}) {
    EXPECT_FALSE(Accepts(g, bad)) << bad;
  }
}

TEST(EbnfTest, UnicodeClassesAndEscapes) {
  auto g = Ebnf("root ::= [^a-z\\n]* \"\\u00e9\\x21\" .");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Accepts(g, "ÀÉ😀\xc3\xa9!x"));
  EXPECT_TRUE(Accepts(g, "\xc3\xa9!\xe2\x82\xac"));  // "é!€": '.' is a whole character
  EXPECT_FALSE(Accepts(g, "a\xc3\xa9!x"));
  EXPECT_FALSE(Accepts(g, "\xc3\xa9!\xe2\x82"));       // a cut character
  EXPECT_FALSE(Accepts(g, "\xed\xa0\x80\xc3\xa9!x"));  // a surrogate is not UTF-8
}

TEST(EbnfTest, ErrorsNameTheLineAndColumn) {
  auto open = CompileEbnf("root ::= \"a\"\nitem ::= ( \"b\" \n");
  ASSERT_FALSE(open.ok());
  EXPECT_NE(std::string(open.status().message()).find("line 3"), std::string::npos)
      << open.status();
  auto undefined = CompileEbnf("root ::= item");
  ASSERT_FALSE(undefined.ok());
  EXPECT_NE(std::string(undefined.status().message()).find("'item'"), std::string::npos);
  auto left = CompileEbnf("root ::= root \"a\" | \"b\"");
  ASSERT_FALSE(left.ok());
  EXPECT_NE(std::string(left.status().message()).find("left-recursive"), std::string::npos);
  auto indirect = CompileEbnf("root ::= x\nx ::= y? root \"a\" | \"b\"\ny ::= \"c\"");
  ASSERT_FALSE(indirect.ok()) << "x can call root before reading a byte";
  EXPECT_FALSE(CompileEbnf("item ::= \"a\"").ok()) << "no root";
  EXPECT_FALSE(CompileEbnf("root ::= \"a\"{3000}").ok()) << "past the repetition limit";
  EXPECT_FALSE(CompileEbnf("root ::= [b-a]").ok());
}

// A right-recursive rule stacks a frame per byte: ending them all at once neither
// recurses as deep (which could overflow the stack) nor goes past kMaxDepth (which
// would make each token cost more than the last without bound).
TEST(EbnfTest, DeepRightRecursionIsBoundedAndEndsWithoutDeepCalls) {
  auto g = Ebnf("root ::= \"a\" root | \"a\"");
  ASSERT_NE(g, nullptr);
  Matcher m(g, ByteVocab());
  ASSERT_TRUE(m.AcceptBytes(std::string(Matcher::kMaxDepth - 1, 'a')));
  EXPECT_TRUE(m.CanEnd());
  EXPECT_FALSE(m.AcceptBytes(std::string(Matcher::kMaxDepth, 'a'))) << "past the bound";
  std::vector<uint32_t> mask(9);
  m.FillMask(mask.data());
  EXPECT_TRUE((mask['a' >> 5] >> ('a' & 31)) & 1);
  EXPECT_TRUE((mask[256 >> 5] >> (256 & 31)) & 1) << "the end";
}

TEST(EbnfTest, RecursionThatReadsFirstIsFine) {
  auto g = Ebnf("root ::= \"(\" root* \")\"");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Accepts(g, "(()(()))"));
  EXPECT_FALSE(Accepts(g, "(()"));
  EXPECT_FALSE(Accepts(g, "())"));
}

TEST(RegexTest, FullMatches) {
  struct Case {
    const char* pattern;
    std::vector<const char*> yes, no;
  };
  const std::vector<Case> cases = {
      {"abc", {"abc"}, {"ab", "abcd", ""}},
      {"^a|b$", {"a", "b"}, {"ab", ""}},
      {"[0-9]{3}-[0-9]{4}", {"555-1234"}, {"55-1234", "5555-1234", "555-12a4"}},
      {"\\d+(\\.\\d+)?", {"3", "3.14"}, {"3.", ".5", "x"}},
      {"(?:ab)*c?", {"", "ab", "ababc", "c"}, {"a", "abca"}},
      {"[^\\s,]+(,[^\\s,]+)*", {"a,b", "x"}, {"a, b", ",a", "a,"}},
      {"colou?r", {"color", "colour"}, {"colouur"}},
      {"a{2,}b{0,1}", {"aa", "aaab"}, {"a", "aabb"}},
      {"(?P<year>\\d{4})-(?<m>\\d\\d)", {"2024-05"}, {"24-05"}},
      {".+", {"x", "é", "a b"}, {"", "a\nb"}},
      {"\\w+@\\w+\\.com", {"me@site.com"}, {"me@site.org"}},
      {"[\\-+]?\\d", {"-1", "+2", "3"}, {"--1"}},
  };
  for (const Case& c : cases) {
    auto g = Regex(c.pattern);
    ASSERT_NE(g, nullptr);
    for (const char* y : c.yes) EXPECT_TRUE(Accepts(g, y)) << c.pattern << " on " << y;
    for (const char* n : c.no) EXPECT_FALSE(Accepts(g, n)) << c.pattern << " on " << n;
  }
}

TEST(RegexTest, WhatAGrammarCannotExpressIsRefusedNamingIt) {
  for (const auto& [pattern, word] :
       std::vector<std::pair<std::string, std::string>>{{"(a)\\1", "backreferences"},
                                                        {"a(?=b)", "lookahead"},
                                                        {"(?<!a)b", "lookbehind"},
                                                        {"\\bword\\b", "word boundaries"},
                                                        {"a^b", "anchors"},
                                                        {"(ab", "')'"},
                                                        {"ab)", "unbalanced"},
                                                        {"*a", "quantifier"},
                                                        {"[a-", "']'"}}) {
    auto g = CompileRegex(pattern);
    ASSERT_FALSE(g.ok()) << pattern;
    EXPECT_NE(std::string(g.status().message()).find(word), std::string::npos)
        << pattern << ": " << g.status();
  }
}

TEST(ChoiceTest, ExactlyOneOfTheChoices) {
  auto g = CompileChoice({"yes", "no", "maybe so"});
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(Accepts(*g, "no"));
  EXPECT_TRUE(Accepts(*g, "maybe so"));
  EXPECT_FALSE(Accepts(*g, "maybe"));
  EXPECT_FALSE(Accepts(*g, "yesno"));
  EXPECT_FALSE(CompileChoice({}).ok());
}

// Every integer in [-2000, 2000] against the bounds, exclusive and inclusive.
TEST(JsonSchemaTest, IntegerBoundsExhaustively) {
  struct Bounds {
    std::string schema;
    int64_t lo, hi;  // inclusive
  };
  const std::vector<Bounds> cases = {
      {R"({"type":"integer","minimum":-37,"maximum":1234})", -37, 1234},
      {R"({"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":100})", 1, 99},
      {R"({"type":"integer","minimum":7})", 7, 1 << 30},
      {R"({"type":"integer","maximum":-3})", -(1 << 30), -3},
      {R"({"type":"integer","minimum":-999,"maximum":-10})", -999, -10},
      {R"({"type":"integer","minimum":0,"maximum":0})", 0, 0},
      {R"({"type":"integer","minimum":1.5,"maximum":9.5})", 2, 9},
  };
  for (const Bounds& b : cases) {
    auto g = Schema(b.schema);
    ASSERT_NE(g, nullptr);
    for (int64_t v = -2000; v <= 2000; ++v) {
      ASSERT_EQ(Accepts(g, std::to_string(v)), v >= b.lo && v <= b.hi) << b.schema << " on " << v;
    }
    EXPECT_FALSE(Accepts(g, "007"));
    EXPECT_FALSE(Accepts(g, "-0"));
  }
  EXPECT_TRUE(Accepts(Schema(R"({"type":"integer"})"), "-12345678901234567890"));
}

TEST(JsonSchemaTest, NumberBoundsAreSound) {
  const std::string schema = R"({"type":"number","minimum":-2,"exclusiveMaximum":3})";
  auto g = Schema(schema);
  ASSERT_NE(g, nullptr);
  std::mt19937 rng(3);
  int accepted = 0;
  for (int i = 0; i < 4000; ++i) {
    const int whole = std::uniform_int_distribution<int>(-6, 6)(rng);
    std::string text = std::to_string(whole);
    if (rng() % 2) text += "." + std::to_string(std::uniform_int_distribution<int>(0, 999)(rng));
    if (rng() % 5 == 0 && whole == 0) text = "-" + text;
    const double v = std::stod(text);
    if (Accepts(g, text)) {
      ++accepted;
      EXPECT_TRUE(v >= -2 && v < 3) << text;
    }
  }
  EXPECT_GT(accepted, 1000);
  for (const char* ok : {"-2", "-1.5", "0", "0.25", "2.999", "-0.5"})
    EXPECT_TRUE(Accepts(g, ok)) << ok;
  for (const char* no : {"3", "3.0", "-2.5", "-3", "1e2"}) EXPECT_FALSE(Accepts(g, no)) << no;
}

TEST(JsonSchemaTest, ObjectsWithRequiredOptionalAndExtraKeys) {
  auto g = Schema(R"({"type":"object","properties":{
      "name":{"type":"string","minLength":1,"maxLength":5},
      "age":{"type":"integer","minimum":0},
      "tags":{"type":"array","items":{"enum":["a","b"]},"maxItems":2}},
    "required":["name"]})");
  ASSERT_NE(g, nullptr);
  for (const char* ok :
       {R"({"name":"bo"})", R"({"name":"bo", "age":3})", R"({"name":"x","tags":["a","b"]})",
        R"({"name":"x","age":0,"tags":[]})", R"({"name":"\u00e9\n"})"}) {
    EXPECT_TRUE(Accepts(g, ok)) << ok;
  }
  for (const char* bad : {R"({})", R"({"age":3})", R"({"name":""})", R"({"name":"toolong"})",
                          R"({"age":3,"name":"x"})", R"({"name":"x","tags":["a","b","a"]})",
                          R"({"name":"x","other":1})", R"({"name":"x",})", R"({"name":"x"}  )",
                          R"({"name":"\ud800"})"}) {
    EXPECT_FALSE(Accepts(g, bad)) << bad;
  }
  auto extra = Schema(
      R"({"properties":{"a":{"type":"integer"}},"additionalProperties":{"type":"boolean"}})");
  EXPECT_TRUE(Accepts(extra, R"({"a":1,"b":true,"c":false})"));
  EXPECT_TRUE(Accepts(extra, R"({"b":true})"));
  EXPECT_FALSE(Accepts(extra, R"({"a":1,"b":2})"));
}

TEST(JsonSchemaTest, RefsRecursionUnionsFormatsAndPatterns) {
  auto tree = Schema(R"({"$defs":{"node":{"type":"object","properties":{
      "v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},
      "required":["v"]}},"$ref":"#/$defs/node"})");
  ASSERT_NE(tree, nullptr);
  EXPECT_TRUE(Accepts(tree, R"({"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4}]}]})"));
  EXPECT_FALSE(Accepts(tree, R"({"v":1,"kids":[{}]})"));
  auto u = Schema(R"({"anyOf":[{"type":"string","format":"date"},{"type":"null"},
      {"type":"string","pattern":"^[A-Z]{2}\\d$"}]})");
  for (const char* ok : {R"("2024-02-29")", "null", R"("AB7")"}) EXPECT_TRUE(Accepts(u, ok)) << ok;
  for (const char* no : {R"("2024-13-01")", R"("AB")", R"("ab7")"})
    EXPECT_FALSE(Accepts(u, no)) << no;
  auto id = Schema(R"({"type":"string","format":"uuid"})");
  EXPECT_TRUE(Accepts(id, R"("123e4567-e89b-12d3-a456-426614174000")"));
  auto unanchored = Schema(R"({"type":"string","pattern":"ab+"})");
  EXPECT_TRUE(Accepts(unanchored, R"("xxabbby")"));
  EXPECT_FALSE(Accepts(unanchored, R"("xxay")"));
  auto quote = Schema(R"({"type":"string","pattern":"^a\"b$"})");
  EXPECT_TRUE(Accepts(quote, R"("a\"b")"));
  auto types = Schema(R"({"type":["integer","null"]})");
  EXPECT_TRUE(Accepts(types, "null"));
  EXPECT_TRUE(Accepts(types, "-4"));
  EXPECT_FALSE(Accepts(types, "4.5"));
}

TEST(JsonSchemaTest, ExtraKeysAreNeverDeclaredOnesDatesAreRealAndAnchorsStrip) {
  auto extra = Schema(R"({"properties":{"id":{"type":"integer"}},"required":["id"],
      "additionalProperties":{"type":"string"}})");
  EXPECT_FALSE(Accepts(extra, R"({"id":1, "id":"x"})"));
  EXPECT_TRUE(Accepts(extra, R"({"id":1, "ida":"x", "i":"y", "":"z"})"));
  auto date = Schema(R"({"type":"string","format":"date"})");
  for (const char* ok : {"2024-02-29", "2000-02-29", "2023-01-31", "2023-04-30", "0001-01-01",
                         "1999-12-31", "0004-02-29"}) {
    EXPECT_TRUE(Accepts(date, absl::StrCat("\"", ok, "\""))) << ok;
  }
  for (const char* no : {"2023-02-29", "1900-02-29", "2023-02-30", "2023-04-31", "0000-01-01",
                         "2023-13-01", "2023-00-10", "2023-06-00"}) {
    EXPECT_FALSE(Accepts(date, absl::StrCat("\"", no, "\""))) << no;
  }
  auto tail = Schema(R"({"type":"string","pattern":"[0-9]{3}$"})");
  EXPECT_TRUE(Accepts(tail, R"("ab123")"));
  EXPECT_FALSE(Accepts(tail, R"("123a")"));
  auto head = Schema(R"({"type":"string","pattern":"^ab"})");
  EXPECT_TRUE(Accepts(head, R"("abc")"));
  EXPECT_FALSE(Accepts(head, R"("cab")"));
}

TEST(JsonSchemaTest, StrictRefusesWhatItCannotEnforceNamingIt) {
  for (const auto& [schema, word] : std::vector<std::pair<std::string, std::string>>{
           {R"({"type":"array","uniqueItems":true})", "uniqueItems"},
           {R"({"type":"integer","multipleOf":3})", "multipleOf"},
           {R"({"type":"object","minProperties":1})", "minProperties"},
           {R"({"type":"string","format":"ipv6"})", "ipv6"},
           {R"({"type":"string","frobnicate":1})", "frobnicate"},
           {R"({"not":{"type":"string"}})", "not"}}) {
    JsonOptions strict;
    strict.strict = true;
    auto g = CompileJsonSchema(schema, strict);
    ASSERT_FALSE(g.ok()) << schema;
    EXPECT_NE(std::string(g.status().message()).find(word), std::string::npos) << g.status();
    EXPECT_TRUE(CompileJsonSchema(schema).ok()) << "relaxed without strict: " << schema;
  }
  for (const char* bad : {"{", R"({"type":"strin"})", R"({"$ref":"#/$defs/missing"})",
                          R"({"type":"string","pattern":"(a"})", R"({"minLength":-1})",
                          R"({"type":"integer","minimum":5,"maximum":1})", "false"}) {
    EXPECT_FALSE(CompileJsonSchema(bad).ok()) << bad;
  }
  EXPECT_EQ(CompileJsonSchema(R"({"type":"array","maxItems":100000})").status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(JsonObjectTest, AnyObjectAndNothingElse) {
  auto g = CompileJsonObject();
  ASSERT_TRUE(g.ok());
  for (const char* ok : {"{}", R"({"a": [1, -2.5e3, {"b": null}], "c": "\"q\""})"}) {
    EXPECT_TRUE(Accepts(*g, ok)) << ok;
  }
  for (const char* no : {"[]", "1", R"({"a":})", R"({"a" 1})", R"({ "a":1})", "{}}"}) {
    EXPECT_FALSE(Accepts(*g, no)) << no;
  }
}

// A vocabulary of multi-byte tokens, and the mask against trying each token in turn.
TEST(MatcherTest, MaskEqualsTryingEveryTokenAndRollbackRestores) {
  std::vector<std::string> tokens = {"",     "{",    "}",        "\"", "\":", "a",   "ab",
                                     "\"a",  "1",    "12",       ",",  " ",   "{\"", "true",
                                     "tr",   "ue",   "null",     "[",  "]",   "x",   "\"}",
                                     "\xc3", "\xa9", "\xc3\xa9", "-",  "0",   ".5"};
  tokens.emplace_back();  // the end token
  const int32_t end = static_cast<int32_t>(tokens.size()) - 1;
  auto vocab = std::make_shared<const Vocabulary>(tokens, std::vector<int32_t>{end});
  auto g = CompileJsonSchema(R"({"type":"object","properties":{"a":{"type":"integer"},
      "ab":{"type":"array","items":{"type":"boolean"}},"s":{"type":"string"}}})");
  ASSERT_TRUE(g.ok()) << g.status();
  std::mt19937 rng(11);
  int steps = 0;
  for (int run = 0; run < 200; ++run) {
    Matcher m(*g, vocab);
    for (int t = 0; t < 30 && !m.Terminated(); ++t) {
      std::vector<uint32_t> mask((tokens.size() + 31) / 32);
      m.FillMask(mask.data());
      std::vector<int32_t> allowed;
      for (int32_t id = 0; id < static_cast<int32_t>(tokens.size()); ++id) {
        const bool bit = (mask[id >> 5] >> (id & 31)) & 1;
        const bool ok = m.AcceptToken(id);
        if (ok) m.Rollback(1);
        ASSERT_EQ(bit, ok) << "token '" << tokens[id] << "' at step " << t;
        if (ok) allowed.push_back(id);
      }
      if (allowed.empty()) break;
      ASSERT_TRUE(m.AcceptToken(allowed[rng() % allowed.size()]));
      ++steps;
    }
  }
  EXPECT_GT(steps, 1000);
  // Rollback restores what was allowed before.
  Matcher m(*g, vocab);
  ASSERT_TRUE(m.AcceptToken(12));  // {"
  std::vector<uint32_t> before(1), after(1);
  m.FillMask(before.data());
  ASSERT_TRUE(m.AcceptToken(5));  // a
  ASSERT_TRUE(m.AcceptToken(4));  // ":
  m.Rollback(2);
  m.FillMask(after.data());
  EXPECT_EQ(before, after);
  EXPECT_FALSE(m.CanEnd());
  EXPECT_FALSE(m.AcceptToken(end));
}

// Matchers sharing one automaton agree with a matcher of its own, also when the shared
// one is so small that it keeps starting afresh (and its matchers replay their bytes).
TEST(MatcherTest, SharedAndRestartingAutomataGiveTheSameMasks) {
  auto g = CompileJsonSchema(R"({"type":"object","properties":{
      "name":{"type":"string","maxLength":6},"tags":{"type":"array","items":{"enum":["a","bc"]}}},
      "required":["name","tags"]})");
  ASSERT_TRUE(g.ok()) << g.status();
  const std::shared_ptr<const Vocabulary> vocab = ByteVocab();
  auto shared = std::make_shared<Automaton>(*g, vocab);
  Automaton::Bounds tiny;
  tiny.max_transitions = 64;
  tiny.max_frames = 16;
  tiny.mask_cache_bytes = 0;
  auto restarting = std::make_shared<Automaton>(*g, vocab, tiny);
  std::mt19937 rng(5);
  const size_t words = (static_cast<size_t>(vocab->size()) + 31) / 32;
  for (int run = 0; run < 50; ++run) {
    Matcher own(*g, vocab), a(shared), b(restarting);
    for (int t = 0; t < 40 && !own.Terminated(); ++t) {
      std::vector<uint32_t> m0(words), m1(words), m2(words);
      own.FillMask(m0.data());
      a.FillMask(m1.data());
      b.FillMask(m2.data());
      ASSERT_EQ(m0, m1) << "run " << run << " step " << t;
      ASSERT_EQ(m0, m2) << "run " << run << " step " << t;
      std::vector<int32_t> allowed;
      for (int32_t id = 0; id < vocab->size(); ++id) {
        if ((m0[static_cast<size_t>(id) >> 5] >> (id & 31)) & 1) allowed.push_back(id);
      }
      ASSERT_FALSE(allowed.empty());
      const int32_t pick = allowed[rng() % allowed.size()];
      ASSERT_TRUE(own.AcceptToken(pick));
      ASSERT_TRUE(a.AcceptToken(pick));
      ASSERT_TRUE(b.AcceptToken(pick));
      if (rng() % 7 == 0 && own.num_accepted() > 1) {
        own.Rollback(2);
        a.Rollback(2);
        b.Rollback(2);
      }
    }
  }
  EXPECT_GT(restarting->generation(), 10u) << "the tiny automaton started afresh";
  EXPECT_EQ(shared->generation(), 1u);
}

// Masks from the vocabulary's tables (inside JSON strings; byte runs skipped in a walk)
// equal those of the plain trie walk, on a real tokenizer's 128k tokens (multi-byte
// characters, escapes, quotes inside tokens) and on single bytes, for bounded, unbounded
// and minimum-length strings and for patterns and formats made of byte runs.
TEST(MatcherTest, TableMasksEqualTheWalk) {
  auto tok = Tokenizer::FromDir(testing::SharedDir() + "/fixtures/tokenizers/llama3_1");
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::vector<std::string> bytes;
  for (int32_t id = 0; id < (*tok)->vocab_size(); ++id) bytes.push_back((*tok)->TokenBytes(id));
  auto llama = std::make_shared<const Vocabulary>(std::move(bytes), (*tok)->eos_ids());
  const char* schemas[] = {
      R"({"type":"object","properties":{"a":{"type":"string","maxLength":5},
          "b":{"type":"string","minLength":3,"maxLength":9},"c":{"type":"string"},
          "d":{"type":"array","items":{"type":"string","maxLength":2},"maxItems":3}},
          "required":["a","b","c","d"]})",
      R"({"type":"array","items":{"type":"string","minLength":2},"minItems":1,"maxItems":4})",
      R"({"anyOf":[{"type":"string","maxLength":3},{"type":"integer"}]})",
      R"({"type":"object","properties":{"e":{"type":"string","format":"email"},
          "h":{"type":"string","format":"hostname"},
          "p":{"type":"string","pattern":"^[a-z]{2,9}-[0-9A-F]*x?$"}},"required":["e","h","p"]})"};
  std::mt19937 rng(17);
  size_t fast = 0, runs = 0;
  for (const auto& vocab : {llama, ByteVocab()}) {
    const size_t words = (static_cast<size_t>(vocab->size()) + 31) / 32;
    for (const char* schema : schemas) {
      auto g = CompileJsonSchema(schema);
      ASSERT_TRUE(g.ok()) << g.status();
      Automaton::Bounds uncached, walk_only;
      uncached.mask_cache_bytes = 0;  // every mask made anew
      walk_only = uncached;
      walk_only.json_string_masks = false;
      walk_only.byte_run_masks = false;
      auto table = std::make_shared<Automaton>(*g, vocab, uncached);
      auto walk = std::make_shared<Automaton>(*g, vocab, walk_only);
      for (int run = 0; run < 12; ++run) {
        Matcher a(table), b(walk);
        for (int t = 0; t < 48 && !a.Terminated(); ++t) {
          std::vector<uint32_t> m0(words), m1(words);
          a.FillMask(m0.data());
          b.FillMask(m1.data());
          ASSERT_EQ(m0, m1) << schema << " step " << t;
          std::vector<int32_t> allowed;
          for (int32_t id = 0; id < vocab->size(); ++id) {
            if ((m0[static_cast<size_t>(id) >> 5] >> (id & 31)) & 1) allowed.push_back(id);
          }
          ASSERT_FALSE(allowed.empty());
          // Mostly short tokens, so that strings reach their bounds.
          int32_t pick = allowed[rng() % allowed.size()];
          for (int k = 0; k < 4 && vocab->bytes(pick).size() > 2; ++k) {
            pick = allowed[rng() % allowed.size()];
          }
          ASSERT_TRUE(a.AcceptToken(pick));
          ASSERT_TRUE(b.AcceptToken(pick));
        }
      }
      fast += table->num_string_masks();
      runs += table->num_run_masks();
      EXPECT_EQ(walk->num_string_masks() + walk->num_run_masks(), 0u);
    }
  }
  EXPECT_GT(fast, 100u) << "string masks came from the table";
  EXPECT_GT(runs, 50u) << "walks skipped byte runs";
}

}  // namespace
}  // namespace sluice::grammar
