// decode(encode(s)) == s for random Unicode strings, and Encode from several threads.
#include <utf8proc.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/tokenizer/tokenizer.h"
#include "tests/server/tokenizer/fixture_cases.h"
#include "tests/server/tokenizer/random_text.h"

namespace sluice {
namespace {

std::string Nfc(const std::string& text) {
  utf8proc_uint8_t* out = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                              static_cast<utf8proc_ssize_t>(text.size()), &out,
                              static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  std::string result = n < 0 ? text : std::string(reinterpret_cast<char*>(out), n);
  std::free(out);
  return result;
}

struct RoundTripCase {
  std::string name;
  std::string dir;
  int num_strings;
  bool nfc;                       // Compare on NFC text (the tokenizer normalizes).
  std::vector<char32_t> exclude;  // Code points the tokenizer cannot give back.
};

class RoundTripTest : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(RoundTripTest, DecodeOfEncodeIsIdentity) {
  const RoundTripCase& param = GetParam();
  auto tokenizer = Tokenizer::FromDir(param.dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  testing::RandomText random(/*seed=*/20240611);
  int num_ok = 0;
  for (int i = 0; i < param.num_strings; ++i) {
    std::string text = random.Next(/*max_parts=*/8, param.exclude);
    if (param.nfc) text = Nfc(text);
    auto ids = (*tokenizer)->Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    const std::string decoded = (*tokenizer)->Decode(*ids, /*skip_special_tokens=*/false);
    num_ok += decoded == text;
    EXPECT_EQ(decoded, text) << param.name << " string " << i;
    if (decoded != text && num_ok + 5 < i) break;
  }
  std::printf("%s: %d/%d random strings round-trip\n", param.name.c_str(), num_ok,
              param.num_strings);
  EXPECT_EQ(num_ok, param.num_strings);
}

// The tokens' own bytes (what grammars match on) spell the text: concatenated, they are
// what decode gives, byte for byte, before the decoder strips the leading space that a
// SentencePiece-style normalizer adds.
TEST_P(RoundTripTest, TokenBytesConcatenateToTheText) {
  const RoundTripCase& param = GetParam();
  auto tokenizer = Tokenizer::FromDir(param.dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  testing::RandomText random(/*seed=*/99);
  for (int i = 0; i < 2000; ++i) {
    std::string text = random.Next(/*max_parts=*/8, param.exclude);
    if (param.nfc) text = Nfc(text);
    auto ids = (*tokenizer)->Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    std::string bytes;
    for (int32_t id : *ids) bytes += (*tokenizer)->TokenBytes(id);
    // Special tokens in the text spell nothing (below).
    const std::string decoded = (*tokenizer)->Decode(*ids, /*skip_special_tokens=*/true);
    if (param.name == "llama2" && !bytes.empty() && bytes[0] == ' ') bytes.erase(0, 1);
    ASSERT_EQ(bytes, decoded) << param.name << " string " << i;
  }
  // Special tokens spell nothing a grammar could match.
  for (int32_t id = 0; id < (*tokenizer)->vocab_size(); ++id) {
    if ((*tokenizer)->IsSpecial(id)) ASSERT_EQ((*tokenizer)->TokenBytes(id), "") << id;
  }
}

std::vector<RoundTripCase> RoundTripCases() {
  const std::string dir = testing::SharedDir() + "/fixtures/tokenizers/";
  return {
      {"tiny", testing::TinyModelDir(), 10000, false, {}},
      {"llama3_1", dir + "llama3_1", 10000, false, {}},
      {"qwen3", dir + "qwen3", 10000, true, {}},
      // The Metaspace character decodes to a space.
      {"llama2", dir + "llama2", 10000, false, {U'\u2581'}},
  };
}

INSTANTIATE_TEST_SUITE_P(AllTokenizers, RoundTripTest, ::testing::ValuesIn(RoundTripCases()),
                         [](const auto& info) { return info.param.name; });

TEST(ConcurrencyTest, ThreadsEncodeLikeOneThread) {
  auto tokenizer = Tokenizer::FromDir(testing::TinyModelDir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  testing::RandomText random(/*seed=*/7);
  std::vector<std::string> texts;
  for (int i = 0; i < 400; ++i) texts.push_back(random.Next(12));
  std::vector<std::vector<int32_t>> expected;
  for (const auto& text : texts) expected.push_back(*(*tokenizer)->Encode(text, true));
  constexpr int kNumThreads = 4;
  std::vector<int> mismatches(kNumThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kNumThreads; ++t) {
    threads.emplace_back([&, t]() {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          const size_t k = (i * (t + 1) + round) % texts.size();
          auto ids = (*tokenizer)->Encode(texts[k], true);
          mismatches[t] += !ids.ok() || *ids != expected[k];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kNumThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

}  // namespace
}  // namespace sluice
