// A seeded generator of random Unicode text for round-trip tests.
#ifndef SLUICE_TESTS_ENGINE_TOKENIZER_RANDOM_TEXT_H_
#define SLUICE_TESTS_ENGINE_TOKENIZER_RANDOM_TEXT_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/utf8.h"

namespace sluice::testing {

// Strings mixing ASCII, code, CJK, emoji (with ZWJ sequences), combining marks,
// whitespace runs, other scripts and arbitrary code points (no surrogates).
class RandomText {
 public:
  explicit RandomText(uint32_t seed) : rng_(seed) {}

  // A string of up to `max_parts` random parts. Code points in `exclude` are skipped.
  std::string Next(int max_parts, const std::vector<char32_t>& exclude = {}) {
    std::string out;
    const int parts = Uniform(1, max_parts);
    for (int i = 0; i < parts; ++i) {
      switch (Uniform(0, 8)) {
        case 0:
          AppendRange(&out, 0x20, 0x7E, Uniform(1, 12), exclude);
          break;
        case 1:
          out += kCode[Uniform(0, kNumCode - 1)];
          break;
        case 2:
          AppendRange(&out, 0x4E00, 0x9FFF, Uniform(1, 6), exclude);
          break;
        case 3:
          AppendEmoji(&out);
          break;
        case 4:
          AppendRange(&out, 'a', 'z', 1, exclude);
          AppendRange(&out, 0x300, 0x36F, Uniform(1, 3), exclude);
          break;
        case 5:
          AppendWhitespace(&out);
          break;
        case 6: {
          const char32_t base = kScripts[Uniform(0, 5)];
          AppendRange(&out, base, base + 0x5F, Uniform(1, 8), exclude);
          break;
        }
        case 7:
          AppendRange(&out, 0x80, 0xFFFF, Uniform(1, 4), exclude);
          break;
        default:
          AppendRange(&out, 0x10000, 0x10FFFF, Uniform(1, 2), exclude);
          break;
      }
    }
    return out;
  }

 private:
  static constexpr const char* kCode[] = {
      "def ", "return ", "self.",   "(x, y)",       " == ", "{}", "[i]",      "    ", "\n",
      "# ",   "\"\"\"",  "import ", "<|im_start|>", "0x1F", "->", "**kwargs", "'s",   "\r\n"};
  static constexpr int kNumCode = sizeof(kCode) / sizeof(kCode[0]);
  static constexpr char32_t kScripts[] = {0x0410, 0x0391, 0x0627, 0x0905, 0x3041, 0xAC00};

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  void AppendRange(std::string* out, char32_t lo, char32_t hi, int count,
                   const std::vector<char32_t>& exclude) {
    for (int i = 0; i < count; ++i) {
      const auto cp = static_cast<char32_t>(Uniform(static_cast<int>(lo), static_cast<int>(hi)));
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      bool excluded = false;
      for (char32_t e : exclude) excluded = excluded || e == cp;
      if (!excluded) utf8::Append(cp, out);
    }
  }

  void AppendEmoji(std::string* out) {
    utf8::Append(static_cast<char32_t>(Uniform(0x1F300, 0x1FAFF)), out);
    if (Uniform(0, 2) == 0) {
      utf8::Append(0x200D, out);
      utf8::Append(static_cast<char32_t>(Uniform(0x1F300, 0x1F64F)), out);
    }
  }

  void AppendWhitespace(std::string* out) {
    static constexpr char32_t kSpaces[] = {' ', '\t', '\n', '\r', 0xA0, 0x3000, 0x2009};
    const int count = Uniform(1, 9);
    for (int i = 0; i < count; ++i) utf8::Append(kSpaces[Uniform(0, 6)], out);
  }

  std::mt19937 rng_;
};

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_ENGINE_TOKENIZER_RANDOM_TEXT_H_
