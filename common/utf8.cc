#include "common/utf8.h"

namespace sluice::utf8 {
namespace {

// Number of bytes of the longest prefix of text[pos..] that starts a well-formed
// sequence (the "maximal subpart"), and the full length that lead byte announces.
struct Prefix {
  int valid;
  int expected;
};

Prefix ScanSequence(std::string_view text, size_t pos) {
  const auto b0 = static_cast<uint8_t>(text[pos]);
  if (b0 < 0x80) return {1, 1};
  int expected = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    expected = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    expected = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    expected = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {0, 1};
  }
  int valid = 1;
  for (int i = 1; i < expected; ++i) {
    if (pos + i >= text.size()) break;
    const auto b = static_cast<uint8_t>(text[pos + i]);
    if (b < lo || b > hi) break;
    lo = 0x80;
    hi = 0xBF;
    ++valid;
  }
  return {valid, expected};
}

struct ByteTables {
  std::array<char32_t, 256> to_cp{};
  std::array<std::string, 256> to_str;
  std::array<int16_t, 256 + 68> to_byte{};
  ByteTables() {
    to_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
      Append(to_cp[b], &to_str[b]);
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteTables& Tables() {
  static const ByteTables* const tables = new ByteTables();
  return *tables;
}

}  // namespace

int SequenceLength(std::string_view text, size_t pos) {
  const Prefix p = ScanSequence(text, pos);
  return p.valid == p.expected ? p.valid : 0;
}

std::optional<size_t> FindInvalid(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const int len = SequenceLength(text, pos);
    if (len == 0) return pos;
    pos += len;
  }
  return std::nullopt;
}

char32_t DecodeAt(std::string_view text, size_t pos, int len) {
  const auto b0 = static_cast<uint8_t>(text[pos]);
  if (len == 1) return b0;
  char32_t cp = b0 & (0x7F >> len);
  for (int i = 1; i < len; ++i) cp = (cp << 6) | (static_cast<uint8_t>(text[pos + i]) & 0x3F);
  return cp;
}

void Append(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string Lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    const Prefix p = ScanSequence(bytes, pos);
    if (p.valid == p.expected) {
      out.append(bytes.substr(pos, p.valid));
      pos += p.valid;
    } else {
      out.append("\xEF\xBF\xBD");
      pos += p.valid == 0 ? 1 : p.valid;
    }
  }
  return out;
}

char32_t ByteToCodePoint(uint8_t b) { return Tables().to_cp[b]; }

int CodePointToByte(char32_t cp) {
  const auto& to_byte = Tables().to_byte;
  return cp < to_byte.size() ? to_byte[cp] : -1;
}

const std::array<std::string, 256>& ByteLevelStrings() { return Tables().to_str; }

}  // namespace sluice::utf8
