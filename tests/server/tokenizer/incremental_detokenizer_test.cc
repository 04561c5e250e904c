// Streaming deltas concatenate to the full decode and are each valid UTF-8.
#include "server/tokenizer/incremental_detokenizer.h"

#include <memory>
#include <string>
#include <vector>

#include "common/utf8.h"
#include "gtest/gtest.h"
#include "server/tokenizer/tokenizer.h"
#include "tests/server/tokenizer/fixture_cases.h"
#include "tests/server/tokenizer/random_text.h"

namespace sluice {
namespace {

using testing::TokenizerFixture;

// Streams `ids` in chunks of `chunk` ids; returns the concatenated deltas and counts
// deltas that are not valid UTF-8.
std::string Stream(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, size_t chunk,
                   bool skip_special, int* num_invalid) {
  IncrementalDetokenizer detokenizer(tokenizer, skip_special);
  std::string text;
  for (size_t i = 0; i < ids.size(); i += chunk) {
    const size_t n = std::min(chunk, ids.size() - i);
    const std::string delta = detokenizer.Add(std::span<const int32_t>(ids).subspan(i, n));
    *num_invalid += utf8::FindInvalid(delta).has_value();
    text += delta;
  }
  const std::string rest = detokenizer.Finish();
  *num_invalid += utf8::FindInvalid(rest).has_value();
  return text + rest;
}

class IncrementalTest : public ::testing::TestWithParam<TokenizerFixture> {};

TEST_P(IncrementalTest, DeltasConcatenateToDecode) {
  auto tokenizer = Tokenizer::FromDir(GetParam().dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const auto cases = testing::LoadCases(GetParam().cases_path);
  ASSERT_FALSE(cases.empty());
  int num_checked = 0;
  for (const auto& c : cases) {
    for (const auto* ids : {&c.ids, c.ids_with_special ? &*c.ids_with_special : &c.ids}) {
      for (bool skip : {false, true}) {
        const std::string expected = (*tokenizer)->Decode(*ids, skip);
        for (size_t chunk : {1, 3}) {
          int num_invalid = 0;
          EXPECT_EQ(Stream(**tokenizer, *ids, chunk, skip, &num_invalid), expected)
              << GetParam().name << " text: " << c.text << " chunk " << chunk;
          EXPECT_EQ(num_invalid, 0) << c.text;
          ++num_checked;
        }
      }
    }
  }
  EXPECT_EQ(num_checked, static_cast<int>(cases.size()) * 8);
}

INSTANTIATE_TEST_SUITE_P(AllTokenizers, IncrementalTest,
                         ::testing::ValuesIn(testing::AllFixtures()),
                         [](const auto& info) { return info.param.name; });

TEST(IncrementalDetokenizerTest, HoldsBackPartialCharacters) {
  auto tokenizer = Tokenizer::FromDir(testing::TinyModelDir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  // The tiny vocabulary spells this emoji with several byte tokens.
  const std::string text = "go \xF0\x9F\x9A\x80!";
  const auto ids = (*tokenizer)->Encode(text, false);
  ASSERT_TRUE(ids.ok());
  ASSERT_GT(ids->size(), 3u);
  IncrementalDetokenizer detokenizer(**tokenizer, false);
  std::string streamed;
  for (int32_t id : *ids) {
    const std::string delta = detokenizer.Add(id);
    EXPECT_EQ(delta.find("\xEF\xBF\xBD"), std::string::npos);
    streamed += delta;
  }
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(detokenizer.Finish(), "");
}

TEST(IncrementalDetokenizerTest, FinishFlushesIncompleteBytes) {
  auto tokenizer = Tokenizer::FromDir(testing::TinyModelDir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const auto ids = (*tokenizer)->Encode("\xF0\x9F\x9A\x80", false);
  ASSERT_TRUE(ids.ok());
  ASSERT_GT(ids->size(), 1u);
  IncrementalDetokenizer detokenizer(**tokenizer, false);
  EXPECT_EQ(detokenizer.Add((*ids)[0]), "");
  EXPECT_EQ(detokenizer.Finish(), (*tokenizer)->Decode(std::span(ids->data(), 1), false));
  EXPECT_EQ(detokenizer.Finish(), "");
}

TEST(IncrementalDetokenizerTest, RandomTextStreamsLikeDecode) {
  const std::string shared = testing::SharedDir() + "/fixtures/tokenizers/";
  for (const std::string& dir : {testing::TinyModelDir(), shared + "llama2"}) {
    auto tokenizer = Tokenizer::FromDir(dir);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    testing::RandomText random(/*seed=*/99);
    for (int i = 0; i < 500; ++i) {
      const auto ids = (*tokenizer)->Encode(random.Next(8), true);
      ASSERT_TRUE(ids.ok());
      int num_invalid = 0;
      EXPECT_EQ(Stream(**tokenizer, *ids, 1, false, &num_invalid),
                (*tokenizer)->Decode(*ids, false))
          << dir << " string " << i;
      EXPECT_EQ(num_invalid, 0);
    }
  }
}

}  // namespace
}  // namespace sluice
