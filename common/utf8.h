// UTF-8 helpers: validation, sequence lengths, code points. Shared by the tokenizer,
// the chat templates and the fronts.
#ifndef SLUICE_COMMON_UTF8_H_
#define SLUICE_COMMON_UTF8_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace sluice::utf8 {

// Returns the byte offset of the first byte that is not part of a well-formed UTF-8
// sequence (Unicode Table 3-7), or nullopt when all of `text` is well formed.
std::optional<size_t> FindInvalid(std::string_view text);

// Length in bytes of the well-formed sequence starting at text[pos], or 0 if the
// bytes there are not a complete well-formed sequence.
int SequenceLength(std::string_view text, size_t pos);

// Decodes the sequence at text[pos]. REQUIRES: SequenceLength(text, pos) > 0.
char32_t DecodeAt(std::string_view text, size_t pos, int len);

// Appends the UTF-8 encoding of `cp` to `out`.
void Append(char32_t cp, std::string* out);

// Returns `bytes` with each maximal ill-formed subpart replaced by U+FFFD, the
// substitution Rust's String::from_utf8_lossy makes.
std::string Lossy(std::string_view bytes);

// The GPT-2 byte-level alphabet: byte b is written as the code point ByteToCodePoint(b).
char32_t ByteToCodePoint(uint8_t b);

// Inverse of ByteToCodePoint, or -1 for a code point outside the alphabet.
int CodePointToByte(char32_t cp);

// Table of the UTF-8 strings of the 256 byte-level characters.
const std::array<std::string, 256>& ByteLevelStrings();

// The same bytes as an absl::string_view, which this abseil build keeps distinct from
// std::string_view; hash-map lookups by view need it.
inline absl::string_view View(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace sluice::utf8

#endif  // SLUICE_COMMON_UTF8_H_
