// Grammar sources from outside (EBNF, regex, JSON Schema, choices; the first byte picks
// which) through the compilers: a refusal is InvalidArgument or ResourceExhausted with a
// message; a grammar they build runs in the matcher, whose mask allows exactly the
// tokens AcceptToken takes, and Rollback restores the mask.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using sluice::grammar::Vocabulary;

// One token per byte, a few multi-byte tokens, and an end token.
std::shared_ptr<const Vocabulary> Vocab() {
  static auto vocab = [] {
    std::vector<std::string> bytes;
    for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
    for (const char* t : {"{\"", "\":", "true", "null", "ab", "\xc3\xa9", "12", "\", \""}) {
      bytes.emplace_back(t);
    }
    bytes.emplace_back();
    const int32_t end = static_cast<int32_t>(bytes.size()) - 1;
    return std::make_shared<const Vocabulary>(std::move(bytes), std::vector<int32_t>{end});
  }();
  return vocab;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  sluice::grammar::Limits limits;
  limits.max_nodes = 20000;
  limits.max_repeat = 64;
  sluice::grammar::JsonOptions json;
  json.strict = (mode & 4) != 0;
  absl::StatusOr<std::shared_ptr<const sluice::grammar::Grammar>> g;
  switch (mode % 4) {
    case 0:
      g = sluice::grammar::CompileEbnf(text, limits);
      break;
    case 1:
      g = sluice::grammar::CompileRegex(text, limits);
      break;
    case 2:
      g = sluice::grammar::CompileJsonSchema(text, json, limits);
      break;
    default: {
      std::vector<std::string> choices = absl::StrSplit(text, '\n');
      g = sluice::grammar::CompileChoice(choices, limits);
    }
  }
  if (!g.ok()) {
    FUZZ_CHECK(g.status().code() == absl::StatusCode::kInvalidArgument ||
               g.status().code() == absl::StatusCode::kResourceExhausted);
    FUZZ_CHECK(!g.status().message().empty());
    return 0;
  }
  auto vocab = Vocab();
  sluice::grammar::Matcher m(*g, vocab);
  std::vector<uint32_t> mask((static_cast<size_t>(vocab->size()) + 31) / 32), again(mask.size());
  uint64_t pick = 1469598103934665603ull;
  for (size_t i = 1; i < size; ++i) pick = (pick ^ data[i]) * 1099511628211ull;
  for (int step = 0; step < 12 && !m.Terminated(); ++step) {
    m.FillMask(mask.data());
    std::vector<int32_t> allowed;
    for (int32_t id = 0; id < vocab->size(); ++id) {
      const bool bit = (mask[static_cast<size_t>(id) >> 5] >> (id & 31)) & 1;
      const bool ok = m.AcceptToken(id);
      FUZZ_CHECK(bit == ok);
      if (ok) {
        m.Rollback(1);
        allowed.push_back(id);
      }
    }
    m.FillMask(again.data());
    FUZZ_CHECK(again == mask);
    if (allowed.empty()) break;
    pick = pick * 6364136223846793005ull + 1442695040888963407ull;
    FUZZ_CHECK(m.AcceptToken(allowed[(pick >> 33) % allowed.size()]));
  }
  return 0;
}
