// lstrip, rstrip and single_word on added tokens, as Hugging Face tokenizers applies
// them (checked against tokenizers 0.22 on the same file).
#include <algorithm>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/tokenizer.h"
#include "tests/server/tokenizer/fixture_cases.h"

namespace sluice {
namespace {

constexpr int32_t kMask = 4096;  // lstrip
constexpr int32_t kPad = 4097;   // rstrip
constexpr int32_t kWord = 4098;  // single_word "qzx"

class AddedTokenFlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nlohmann::json json = nlohmann::json::parse(
        testing::ReadFileOrEmpty(testing::TinyModelDir() + "/tokenizer.json"), nullptr, false);
    ASSERT_TRUE(json.is_object());
    auto add = [&](int32_t id, const char* content, bool single_word, bool lstrip, bool rstrip) {
      json["added_tokens"].push_back({{"id", id},
                                      {"content", content},
                                      {"single_word", single_word},
                                      {"lstrip", lstrip},
                                      {"rstrip", rstrip},
                                      {"normalized", false},
                                      {"special", id != kWord}});
    };
    add(kMask, "<mask>", false, true, false);
    add(kPad, "<pad>", false, false, true);
    add(kWord, "qzx", true, false, false);
    auto tokenizer = Tokenizer::FromJson(json.dump());
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer);
  }

  std::vector<int32_t> Encode(const std::string& text) {
    auto ids = tokenizer_->Encode(text, false);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>{};
  }

  // Concatenates id lists.
  static std::vector<int32_t> Cat(std::initializer_list<std::vector<int32_t>> parts) {
    std::vector<int32_t> out;
    for (const auto& part : parts) out.insert(out.end(), part.begin(), part.end());
    return out;
  }

  bool HasWord(const std::string& text) {
    const auto ids = Encode(text);
    return std::find(ids.begin(), ids.end(), kWord) != ids.end();
  }

  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(AddedTokenFlagsTest, LstripTakesWhitespaceBefore) {
  EXPECT_EQ(Encode("a <mask>"), Cat({Encode("a"), {kMask}}));
  EXPECT_EQ(Encode("a  \t<mask>b"), Cat({Encode("a"), {kMask}, Encode("b")}));
  EXPECT_EQ(Encode(" <mask>"), std::vector<int32_t>{kMask});
}

TEST_F(AddedTokenFlagsTest, RstripTakesWhitespaceAfter) {
  EXPECT_EQ(Encode("<pad>  b"), Cat({{kPad}, Encode("b")}));
  EXPECT_EQ(Encode("a<pad> \n b"), Cat({Encode("a"), {kPad}, Encode("b")}));
}

TEST_F(AddedTokenFlagsTest, SingleWordNeedsWordBoundaries) {
  EXPECT_EQ(Encode("x qzx y"), Cat({Encode("x "), {kWord}, Encode(" y")}));
  EXPECT_EQ(Encode("qzx qzx"), Cat({{kWord}, Encode(" "), {kWord}}));
  EXPECT_TRUE(HasWord("qzx"));
  EXPECT_TRUE(HasWord("(qzx)"));
  EXPECT_TRUE(HasWord("\xC3\xA9 qzx"));
  EXPECT_FALSE(HasWord("xqzx y"));
  EXPECT_FALSE(HasWord("qzxs"));
  EXPECT_FALSE(HasWord("qzx_"));
  EXPECT_FALSE(HasWord("\xC3\xA9qzx"));
  EXPECT_FALSE(HasWord("1qzx"));
}

TEST_F(AddedTokenFlagsTest, DecodeWritesTheContentOnly) {
  const std::vector<int32_t> a = Encode("a"), b = Encode("b");
  EXPECT_EQ(tokenizer_->Decode(Cat({a, {kMask}, b}), false), "a<mask>b");
  EXPECT_EQ(tokenizer_->Decode(Cat({a, {kPad}, b}), false), "a<pad>b");
  EXPECT_EQ(tokenizer_->Decode(Cat({a, {kPad}, b}), true), "ab");
  EXPECT_EQ(tokenizer_->Decode(Cat({a, {kWord}, b}), true), "aqzxb");
}

// A normalized added token is matched on normalized text, in its normalized form: with
// Llama-2's Prepend + Replace normalizer "ab▁cd" is found as "▁ab▁cd".
TEST(NormalizedAddedTokenTest, MatchesNormalizedForm) {
  nlohmann::json json = nlohmann::json::parse(
      testing::ReadFileOrEmpty(testing::SharedDir() + "/fixtures/tokenizers/llama2/tokenizer.json"),
      nullptr, false);
  ASSERT_TRUE(json.is_object());
  constexpr int32_t kJoined = 32000;
  json["added_tokens"].push_back({{"id", kJoined},
                                  {"content",
                                   "ab\xE2\x96\x81"
                                   "cd"},
                                  {"single_word", false},
                                  {"lstrip", false},
                                  {"rstrip", false},
                                  {"normalized", true},
                                  {"special", false}});
  auto tokenizer = Tokenizer::FromJson(json.dump());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto encode = [&](const std::string& text) { return *(*tokenizer)->Encode(text, false); };
  std::vector<int32_t> expected = encode("x");
  expected.push_back(kJoined);
  const std::vector<int32_t> y = encode("y");
  expected.insert(expected.end(), y.begin(), y.end());
  EXPECT_EQ(encode("x ab cd y"), expected);
  EXPECT_EQ(encode("ab cd"), std::vector<int32_t>{kJoined});
  const std::vector<int32_t> after_newline = encode("x\nab cd");
  EXPECT_EQ(std::count(after_newline.begin(), after_newline.end(), kJoined), 0);
}

}  // namespace
}  // namespace sluice
