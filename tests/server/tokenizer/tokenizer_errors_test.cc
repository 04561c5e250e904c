// Invalid UTF-8 input and malformed tokenizer files are clear errors.
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/tokenizer.h"
#include "tests/server/tokenizer/fixture_cases.h"

namespace sluice {
namespace {

struct Utf8Case {
  std::string text;
  size_t offset;
};

TEST(EncodeErrorsTest, InvalidUtf8NamesTheOffset) {
  auto tokenizer = Tokenizer::FromDir(testing::TinyModelDir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const Utf8Case cases[] = {
      {"\xff", 0},              // Never valid.
      {"abc\xc3", 3},           // Truncated two-byte sequence.
      {"ok \xe6\x97", 3},       // Truncated three-byte sequence.
      {"\xc0\xaf", 0},          // Overlong.
      {"xy\xed\xa0\x80", 2},    // Surrogate.
      {"\xf4\x90\x80\x80", 0},  // Past U+10FFFF.
      {"caf\xc3\xa9 \x80", 6},  // Stray continuation byte after valid text.
  };
  for (const Utf8Case& c : cases) {
    auto ids = (*tokenizer)->Encode(c.text, true);
    ASSERT_FALSE(ids.ok()) << "offset " << c.offset;
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(ids.status().message().find("byte offset " + std::to_string(c.offset)),
              std::string::npos)
        << ids.status();
  }
}

class MalformedJsonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    text_ = testing::ReadFileOrEmpty(testing::TinyModelDir() + "/tokenizer.json");
    ASSERT_FALSE(text_.empty());
    json_ = nlohmann::json::parse(text_);
  }

  // Expects FromJson of `json` to fail with InvalidArgument mentioning `needle`.
  void ExpectError(const nlohmann::json& json, const std::string& needle) {
    auto tokenizer = Tokenizer::FromJson(json.dump());
    ASSERT_FALSE(tokenizer.ok()) << needle;
    EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(tokenizer.status().message().find(needle), std::string::npos) << tokenizer.status();
  }

  std::string text_;
  nlohmann::json json_;
};

TEST_F(MalformedJsonTest, ValidFileLoads) { EXPECT_TRUE(Tokenizer::FromJson(json_.dump()).ok()); }

TEST_F(MalformedJsonTest, Truncated) {
  for (size_t length : {size_t{0}, size_t{1}, text_.size() / 2, text_.size() - 2}) {
    auto tokenizer = Tokenizer::FromJson(text_.substr(0, length));
    ASSERT_FALSE(tokenizer.ok()) << length;
    EXPECT_NE(tokenizer.status().message().find("not valid JSON"), std::string::npos)
        << tokenizer.status();
  }
}

TEST_F(MalformedJsonTest, NotAnObject) { ExpectError(nlohmann::json::array(), "not an object"); }

TEST_F(MalformedJsonTest, MissingModel) {
  json_.erase("model");
  ExpectError(json_, "no 'model'");
}

TEST_F(MalformedJsonTest, UnknownModelType) {
  json_["model"]["type"] = "WordPiece";
  ExpectError(json_, "unsupported model type 'WordPiece'");
}

TEST_F(MalformedJsonTest, WrongTypes) {
  nlohmann::json vocab_array = json_;
  vocab_array["model"]["vocab"] = nlohmann::json::array();
  ExpectError(vocab_array, "vocab must be an object");
  nlohmann::json id_string = json_;
  id_string["model"]["vocab"]["x"] = "ninety";
  ExpectError(id_string, "model: ");
  nlohmann::json merges_number = json_;
  merges_number["model"]["merges"] = 3;
  ExpectError(merges_number, "merges must be an array");
  nlohmann::json added_id = json_;
  added_id["added_tokens"][0]["id"] = "zero";
  ExpectError(added_id, "added_tokens: ");
  nlohmann::json pattern = json_;
  pattern["pre_tokenizer"]["pretokenizers"][0]["pattern"] = 7;
  ExpectError(pattern, "pre_tokenizer: ");
}

TEST_F(MalformedJsonTest, BadMergesAndRegex) {
  nlohmann::json unknown_merge = json_;
  unknown_merge["model"]["merges"][0] = nlohmann::json::array({"no-such-token", "x"});
  ExpectError(unknown_merge, "not in the vocab");
  nlohmann::json three_parts = json_;
  three_parts["model"]["merges"][0] = "a b c";
  ExpectError(three_parts, "is not 'a b'");
  nlohmann::json regex = json_;
  regex["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  ExpectError(regex, "regex '(unclosed'");
}

TEST_F(MalformedJsonTest, UnsupportedComponentsAreNamed) {
  nlohmann::json normalizer = json_;
  normalizer["normalizer"] = {{"type", "BertNormalizer"}};
  ExpectError(normalizer, "unsupported normalizer type 'BertNormalizer'");
  nlohmann::json pre = json_;
  pre["pre_tokenizer"]["pretokenizers"][1] = {{"type", "Punctuation"}};
  ExpectError(pre, "unsupported pre_tokenizer type 'Punctuation'");
  nlohmann::json decoder = json_;
  decoder["decoder"] = {{"type", "CTC"}};
  ExpectError(decoder, "unsupported decoder type 'CTC'");
  nlohmann::json post = json_;
  post["post_processor"] = {{"type", "Mystery"}};
  ExpectError(post, "unsupported post_processor type 'Mystery'");
  nlohmann::json dropout = json_;
  dropout["model"]["dropout"] = 0.1;
  ExpectError(dropout, "dropout");
}

TEST(FromDirErrorsTest, MissingDirectoryAndBadConfig) {
  auto missing = Tokenizer::FromDir("/nonexistent/model");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/model/tokenizer.json"),
            std::string::npos);
  const std::string json = testing::ReadFileOrEmpty(testing::TinyModelDir() + "/tokenizer.json");
  auto bad_config = Tokenizer::FromJson(json, "{\"add_bos_token\": \"yes\"}");
  ASSERT_FALSE(bad_config.ok());
  EXPECT_NE(bad_config.status().message().find("tokenizer_config.json"), std::string::npos)
      << bad_config.status();
}

}  // namespace
}  // namespace sluice
