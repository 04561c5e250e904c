// Parity with the reference encodings: the tiny model's 30 cases and the published
// Llama-3.1, Llama-2 and Qwen3 tokenizers' 62 cases each.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "server/tokenizer/tokenizer.h"
#include "tests/server/tokenizer/fixture_cases.h"

namespace sluice {
namespace {

using testing::AllFixtures;
using testing::LoadCases;
using testing::TokenizerFixture;

std::string Show(const std::vector<int32_t>& ids) {
  std::string out;
  for (int32_t id : ids) out += std::to_string(id) + " ";
  return out;
}

class FixtureTest : public ::testing::TestWithParam<TokenizerFixture> {};

TEST_P(FixtureTest, EncodesAndDecodesLikeReference) {
  const TokenizerFixture& fixture = GetParam();
  auto tokenizer = Tokenizer::FromDir(fixture.dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const auto cases = LoadCases(fixture.cases_path);
  ASSERT_FALSE(cases.empty()) << fixture.cases_path;
  int plain = 0, special = 0, decoded = 0, num_special_cases = 0;
  for (const auto& c : cases) {
    auto ids = (*tokenizer)->Encode(c.text, /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    plain += *ids == c.ids;
    EXPECT_EQ(Show(*ids), Show(c.ids)) << fixture.name << " text: " << c.text;
    if (c.ids_with_special.has_value()) {
      ++num_special_cases;
      auto with = (*tokenizer)->Encode(c.text, /*add_special_tokens=*/true);
      ASSERT_TRUE(with.ok()) << with.status();
      special += *with == *c.ids_with_special;
      EXPECT_EQ(Show(*with), Show(*c.ids_with_special)) << fixture.name << " text: " << c.text;
    }
    const std::string text = (*tokenizer)->Decode(c.ids, /*skip_special_tokens=*/false);
    decoded += text == c.decoded;
    EXPECT_EQ(text, c.decoded) << fixture.name << " ids: " << Show(c.ids);
  }
  std::printf("%s: encode %d/%zu, with special tokens %d/%d, decode %d/%zu\n", fixture.name.c_str(),
              plain, cases.size(), special, num_special_cases, decoded, cases.size());
}

INSTANTIATE_TEST_SUITE_P(AllTokenizers, FixtureTest, ::testing::ValuesIn(AllFixtures()),
                         [](const auto& info) { return info.param.name; });

TEST(TokenizerConfigTest, TinyModelSpecialTokens) {
  auto tokenizer = Tokenizer::FromDir(testing::TinyModelDir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const Tokenizer& tok = **tokenizer;
  EXPECT_EQ(tok.vocab_size(), 4096);
  EXPECT_FALSE(tok.bos_id().has_value());
  EXPECT_EQ(tok.eos_ids(), std::vector<int32_t>{*tok.TokenToId("<|endoftext|>")});
  EXPECT_FALSE(tok.add_bos_token());
  EXPECT_NE(tok.chat_template().find("<|im_start|>"), std::string::npos);
  const int32_t im_start = *tok.TokenToId("<|im_start|>");
  EXPECT_TRUE(tok.IsSpecial(im_start));
  EXPECT_EQ(tok.IdToToken(im_start), "<|im_start|>");
  EXPECT_FALSE(tok.IsSpecial(*tok.TokenToId("x")));
  EXPECT_EQ(tok.IdToToken(-1), "");
  EXPECT_EQ(tok.IdToToken(tok.vocab_size()), "");
}

TEST(TokenizerConfigTest, PublishedSpecialTokens) {
  const std::string dir = testing::SharedDir() + "/fixtures/tokenizers/";
  auto llama3 = Tokenizer::FromDir(dir + "llama3_1");
  ASSERT_TRUE(llama3.ok()) << llama3.status();
  EXPECT_EQ((*llama3)->bos_id(), 128000);
  EXPECT_EQ((*llama3)->eos_ids(), std::vector<int32_t>{128009});
  EXPECT_EQ((*llama3)->vocab_size(), 128256);
  auto llama2 = Tokenizer::FromDir(dir + "llama2");
  ASSERT_TRUE(llama2.ok()) << llama2.status();
  EXPECT_EQ((*llama2)->bos_id(), 1);
  EXPECT_TRUE((*llama2)->add_bos_token());
  EXPECT_TRUE((*llama2)->chat_template().empty());
  auto qwen3 = Tokenizer::FromDir(dir + "qwen3");
  ASSERT_TRUE(qwen3.ok()) << qwen3.status();
  EXPECT_EQ((*qwen3)->eos_ids(), std::vector<int32_t>{*(*qwen3)->TokenToId("<|im_end|>")});
  EXPECT_FALSE((*qwen3)->chat_template().empty());
}

TEST(TokenizerConfigTest, ChatTemplateFromJinjaFile) {
  const std::string dir = ::testing::TempDir() + "/tokenizer_jinja";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokenizer.json")
      << testing::ReadFileOrEmpty(testing::TinyModelDir() + "/tokenizer.json");
  const std::string tmpl = "{% for m in messages %}{{ m['content'] }}{% endfor %}";
  std::ofstream(dir + "/chat_template.jinja") << tmpl;
  auto tokenizer = Tokenizer::FromDir(dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->chat_template(), tmpl);
  EXPECT_TRUE((*tokenizer)->eos_ids().empty());
}

}  // namespace
}  // namespace sluice
