// Text through the tiny model's tokenizer: invalid UTF-8 is an error, valid text encodes
// to ids in the vocabulary and decodes back to itself; arbitrary ids decode without
// fault. SLUICE_FUZZ_TOKENIZER (default: the embedded model's tokenizer.json) picks the
// tokenizer.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "server/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

const sluice::Tokenizer& Get() {
  static std::unique_ptr<sluice::Tokenizer> tok = [] {
    const char* dir = std::getenv("SLUICE_FUZZ_TOKENIZER_DIR");
    auto t = sluice::Tokenizer::FromDir(dir != nullptr ? dir : SLUICE_DEFAULT_MODEL_DIR);
    FUZZ_CHECK(t.ok());
    return std::move(*t);
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const sluice::Tokenizer& tok = Get();
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (bool special : {false, true}) {
    auto ids = tok.Encode(text, special);
    if (!ids.ok()) {
      FUZZ_CHECK(ids.status().message().find("UTF-8") != std::string::npos);
      continue;
    }
    for (int32_t id : *ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
    if (!special) FUZZ_CHECK(tok.Decode(*ids, /*skip_special_tokens=*/false) == text);
  }
  // The same bytes as token ids, in and out of the vocabulary.
  std::vector<int32_t> ids(size / 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int32_t>(data[4 * i] | data[4 * i + 1] << 8 | data[4 * i + 2] << 16 |
                                  static_cast<uint32_t>(data[4 * i + 3]) << 24);
  }
  for (bool skip : {false, true}) {
    const std::string decoded = tok.Decode(ids, skip);
    FUZZ_CHECK(tok.Encode(decoded, false).ok());  // always valid UTF-8
  }
  return 0;
}
