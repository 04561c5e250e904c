#include "engine/grammar/text_parsing.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace sluice::grammar {

absl::Status TextReader::Error(size_t at, absl::string_view what) const {
  at = std::min(at, text_.size());
  int line = 1, column = 1;
  for (size_t i = 0; i < at; ++i) {
    if (text_[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  const std::string found =
      at < text_.size() ? absl::StrCat("'", text_.substr(at, 1), "'") : std::string("the end");
  return absl::InvalidArgumentError(absl::StrCat("expected ", what, " at line ", line, ", column ",
                                                 column, " (found ", found, ")"));
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::StatusOr<uint32_t> ReadHex(TextReader& in, int digits, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < digits; ++i) {
    if (in.done() || HexValue(in.peek()) < 0) return in.Error(at, "hex digits");
    v = v * 16 + static_cast<uint32_t>(HexValue(in.next()));
  }
  return v;
}

}  // namespace

absl::StatusOr<uint32_t> ReadChar(TextReader& in, bool in_class) {
  (void)in_class;
  const size_t at = in.pos();
  if (in.done()) return in.Error(at, "a character");
  const unsigned char c = static_cast<unsigned char>(in.next());
  if (c == '\\') {
    if (in.done()) return in.Error(at, "an escaped character");
    const char e = in.next();
    switch (e) {
      case 'n':
        return uint32_t{'\n'};
      case 't':
        return uint32_t{'\t'};
      case 'r':
        return uint32_t{'\r'};
      case 'f':
        return uint32_t{'\f'};
      case 'v':
        return uint32_t{'\v'};
      case '0':
        return uint32_t{0};
      case 'x':
        return ReadHex(in, 2, at);
      case 'u': {
        if (in.Consume("{")) {
          uint32_t v = 0;
          int n = 0;
          while (!in.done() && HexValue(in.peek()) >= 0 && n < 6) {
            v = v * 16 + static_cast<uint32_t>(HexValue(in.next()));
            ++n;
          }
          if (n == 0 || !in.Consume("}") || v > 0x10FFFF) return in.Error(at, "\\u{hex}");
          return v;
        }
        return ReadHex(in, 4, at);
      }
      default:
        if (absl::ascii_isalnum(static_cast<unsigned char>(e))) {
          return in.Error(at,
                          absl::StrCat("a known escape (\\", std::string(1, e), " is not one)"));
        }
        return static_cast<uint32_t>(static_cast<unsigned char>(e));
    }
  }
  if (c < 0x80) return uint32_t{c};
  // A UTF-8 sequence of the source itself.
  const int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
  if (n == 0) return in.Error(at, "valid UTF-8");
  uint32_t cp = c & (0x7F >> n);
  for (int i = 1; i < n; ++i) {
    if (in.done() || (static_cast<unsigned char>(in.peek()) & 0xC0) != 0x80) {
      return in.Error(at, "valid UTF-8");
    }
    cp = (cp << 6) | (static_cast<unsigned char>(in.next()) & 0x3F);
  }
  return cp;
}

bool ShorthandClass(char c, std::vector<std::pair<uint32_t, uint32_t>>& ranges, bool* negate) {
  *negate = absl::ascii_isupper(static_cast<unsigned char>(c));
  switch (absl::ascii_tolower(static_cast<unsigned char>(c))) {
    case 'd':
      ranges.emplace_back('0', '9');
      return true;
    case 'w':
      ranges.emplace_back('0', '9');
      ranges.emplace_back('A', 'Z');
      ranges.emplace_back('a', 'z');
      ranges.emplace_back('_', '_');
      return true;
    case 's':
      ranges.emplace_back('\t', '\r');
      ranges.emplace_back(' ', ' ');
      return true;
    default:
      return false;
  }
}

namespace {

// What a JSON string may hold unescaped, as ranges to intersect a class with.
void KeepJsonSafe(std::vector<std::pair<uint32_t, uint32_t>>& ranges) {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  for (auto [lo, hi] : ranges) {
    lo = std::max<uint32_t>(lo, 0x20);
    for (uint32_t bad : {uint32_t{'"'}, uint32_t{'\\'}}) {
      if (lo <= bad && bad <= hi) {
        if (lo < bad) out.emplace_back(lo, bad - 1);
        lo = bad + 1;
      }
    }
    if (lo <= hi) out.emplace_back(lo, hi);
  }
  ranges = std::move(out);
}

std::vector<std::pair<uint32_t, uint32_t>> Invert(std::vector<std::pair<uint32_t, uint32_t>> r) {
  std::sort(r.begin(), r.end());
  std::vector<std::pair<uint32_t, uint32_t>> out;
  uint32_t next = 0;
  for (auto [lo, hi] : r) {
    if (lo > next) out.emplace_back(next, lo - 1);
    next = std::max(next, hi + 1);
  }
  if (next <= 0x10FFFF) out.emplace_back(next, 0x10FFFF);
  return out;
}

}  // namespace

absl::StatusOr<Expr> ReadClass(TextReader& in, bool json_string) {
  const size_t at = in.pos();
  if (!in.Consume("[")) return in.Error(at, "'['");
  const bool negate = in.Consume("^");
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  bool first = true;
  while (!in.done() && (in.peek() != ']' || first)) {
    first = false;
    if (in.peek() == '\\') {
      std::vector<std::pair<uint32_t, uint32_t>> shorthand;
      bool neg = false;
      if (ShorthandClass(in.peek(1), shorthand, &neg)) {
        in.next();
        in.next();
        if (neg) shorthand = Invert(std::move(shorthand));
        ranges.insert(ranges.end(), shorthand.begin(), shorthand.end());
        continue;
      }
    }
    absl::StatusOr<uint32_t> lo = ReadChar(in, /*in_class=*/true);
    if (!lo.ok()) return lo.status();
    uint32_t hi = *lo;
    if (in.peek() == '-' && in.peek(1) != ']' && in.peek(1) != '\0') {
      in.next();
      absl::StatusOr<uint32_t> end = ReadChar(in, /*in_class=*/true);
      if (!end.ok()) return end.status();
      if (*end < *lo) return in.Error(at, "a range whose end is not below its start");
      hi = *end;
    }
    ranges.emplace_back(*lo, hi);
  }
  if (!in.Consume("]")) return in.Error(in.pos(), "']' closing the class");
  if (negate) ranges = Invert(std::move(ranges));
  if (json_string) KeepJsonSafe(ranges);
  return CodepointClass(std::move(ranges), /*negate=*/false);
}

absl::StatusOr<std::pair<int, int>> ReadBounds(TextReader& in, const Limits& limits) {
  const size_t at = in.pos();
  if (!in.Consume("{")) return in.Error(at, "'{'");
  auto number = [&](int* out) {
    int64_t v = 0;
    bool any = false;
    while (!in.done() && absl::ascii_isdigit(static_cast<unsigned char>(in.peek()))) {
      v = v * 10 + (in.next() - '0');
      any = true;
      if (v > limits.max_repeat) v = limits.max_repeat + 1;
    }
    *out = static_cast<int>(v);
    return any;
  };
  int lo = 0, hi = -1;
  if (!number(&lo)) return in.Error(in.pos(), "a count in {m,n}");
  if (in.Consume(",")) {
    if (!number(&hi)) hi = -1;
  } else {
    hi = lo;
  }
  if (!in.Consume("}")) return in.Error(in.pos(), "'}' closing {m,n}");
  if (hi >= 0 && hi < lo) return in.Error(at, "{m,n} with m <= n");
  if (lo > limits.max_repeat || hi > limits.max_repeat) {
    return absl::InvalidArgumentError(absl::StrCat("a repetition bound past the limit of ",
                                                   limits.max_repeat, " (at offset ", at, ")"));
  }
  return std::make_pair(lo, hi);
}

}  // namespace sluice::grammar
