// Pattern semantics the pre-tokenizers rely on, and the UTF-8 helpers.
#include "server/tokenizer/regex.h"

#include <string>

#include "common/utf8.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

// Returns "start-end" of the first match at or after `offset`, or "none".
std::string FirstMatch(const Regex& regex, std::string_view text, size_t offset = 0) {
  Regex::Match m;
  if (!regex.Find(text, offset, &m)) return "none";
  return std::to_string(m.start) + "-" + std::to_string(m.end);
}

TEST(RegexTest, WhitespaceIsTheWhiteSpaceProperty) {
  auto space = Regex::Compile(R"(\s+)");
  ASSERT_TRUE(space.ok()) << space.status();
  EXPECT_EQ(FirstMatch(**space,
                       "a\xE1\xA0\x8E"
                       "b"),
            "none");  // U+180E is not White_Space.
  EXPECT_EQ(FirstMatch(**space,
                       "a\xE2\x80\x89\xC2\xA0"
                       "b"),
            "1-6");  // U+2009, U+00A0.
  EXPECT_EQ(FirstMatch(**space,
                       "a\xC2\x85"
                       "b"),
            "1-3");  // U+0085.
  auto not_space = Regex::Compile(R"([^\s]+|\S)");
  ASSERT_TRUE(not_space.ok()) << not_space.status();
  EXPECT_EQ(FirstMatch(**not_space, " \xE1\xA0\x8E "), "1-4");
}

TEST(RegexTest, UnicodeClassesLookaheadAndOffsets) {
  auto regex = Regex::Compile(R"(\p{L}+|\p{N}{1,3}|\s+(?!\S)|\s+)");
  ASSERT_TRUE(regex.ok()) << regex.status();
  const std::string text = "caf\xC3\xA9 12345   x";
  EXPECT_EQ(FirstMatch(**regex, text), "0-5");
  EXPECT_EQ(FirstMatch(**regex, text, 6), "6-9");
  EXPECT_EQ(FirstMatch(**regex, text, 9), "9-11");
  EXPECT_EQ(FirstMatch(**regex, text, 11), "11-13");  // Leaves one space for " x".
}

TEST(RegexTest, BadPatternIsNamed) {
  auto regex = Regex::Compile("(unclosed");
  ASSERT_FALSE(regex.ok());
  EXPECT_NE(regex.status().message().find("(unclosed"), std::string::npos);
}

TEST(Utf8Test, LossyReplacesMaximalSubparts) {
  EXPECT_EQ(utf8::Lossy("ok"), "ok");
  EXPECT_EQ(utf8::Lossy("\xF0\x9F\x9A"), "\xEF\xBF\xBD");  // One truncated char.
  EXPECT_EQ(utf8::Lossy("\xF0\x9F\x9A"
                        "a"),
            "\xEF\xBF\xBD"
            "a");
  EXPECT_EQ(utf8::Lossy("\xFF\xFE"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // Two bad bytes.
  EXPECT_EQ(utf8::Lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // Surrogate.
}

TEST(Utf8Test, ByteLevelAlphabetRoundTrips) {
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(utf8::CodePointToByte(utf8::ByteToCodePoint(static_cast<uint8_t>(b))), b);
  }
  EXPECT_EQ(utf8::ByteToCodePoint(' '), U'\u0120');   // "Ġ"
  EXPECT_EQ(utf8::ByteToCodePoint('\n'), U'\u010A');  // "Ċ"
  EXPECT_EQ(utf8::ByteToCodePoint('a'), U'a');
  EXPECT_EQ(utf8::CodePointToByte(U'\u4E00'), -1);
}

}  // namespace
}  // namespace sluice
