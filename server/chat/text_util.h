// UTF-8 and Python-compatible text helpers for the chat-template renderer.
#ifndef SLUICE_SERVER_CHAT_TEXT_UTIL_H_
#define SLUICE_SERVER_CHAT_TEXT_UTIL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::chat {

// Splits UTF-8 into code points; an invalid byte becomes one code point of its own value.
std::vector<char32_t> DecodeUtf8(std::string_view text);
void AppendUtf8(char32_t cp, std::string* out);
std::string EncodeUtf8(const std::vector<char32_t>& cps);
// Number of code points (Python's len() of a str).
size_t CodePointCount(std::string_view text);

// True for the characters Python's str.isspace() accepts.
bool IsPyWhitespace(char32_t cp);

enum class StripSide { kLeft, kRight, kBoth };
// Python's str.strip/lstrip/rstrip; `chars` null strips whitespace.
std::string PyStrip(std::string_view text, const std::string* chars, StripSide side);
// Python's str.split(sep, maxsplit); `sep` null splits on runs of whitespace.
std::vector<std::string> PySplit(std::string_view text, const std::string* sep, int64_t maxsplit);
// Python's str.replace(old, new, count); count < 0 replaces all.
std::string PyReplace(std::string_view text, std::string_view from, std::string_view to,
                      int64_t count);

std::string ToUpper(std::string_view text);
std::string ToLower(std::string_view text);
// Python's str.capitalize(): first code point upper-cased, the rest lower-cased.
std::string Capitalize(std::string_view text);
// Python's str.title(): upper-cases each letter that follows a non-letter.
std::string Title(std::string_view text);

// Python's repr() of a float ("1.0", "0.1", "1e+20", "inf", "nan").
std::string PyFloatRepr(double value);
// Python's repr() of a str, quotes included.
std::string PyStringRepr(std::string_view text);
// A JSON string literal as Python's json.dumps writes it; `ensure_ascii` escapes
// non-ASCII code points as \uXXXX (surrogate pairs above U+FFFF).
void AppendJsonString(std::string_view text, bool ensure_ascii, std::string* out);

}  // namespace sluice::chat

#endif  // SLUICE_SERVER_CHAT_TEXT_UTIL_H_
