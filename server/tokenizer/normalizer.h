// Normalizers of tokenizer.json ("normalizer"): Unicode forms, Prepend, Replace,
// Sequence.
#ifndef SLUICE_SERVER_TOKENIZER_NORMALIZER_H_
#define SLUICE_SERVER_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace sluice {

// NOTE: NFC/NFD/NFKC/NFKD use utf8proc's tables (2.6: Unicode 13). Hugging Face
// tokenizers normalizes with older tables (Unicode 9), so text holding combining marks
// assigned since then can normalize, and so tokenize, differently there.
//
// Thread safety: Normalize is const and may run on several threads at once.
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites `text` in place. REQUIRES: *text is valid UTF-8.
  virtual void Normalize(std::string* text) const = 0;
};

// Builds the normalizer described by `config`; an unsupported type is InvalidArgument
// naming it. May throw nlohmann::json::exception on wrongly typed fields (the loader
// catches).
absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const nlohmann::json& config);

}  // namespace sluice

#endif  // SLUICE_SERVER_TOKENIZER_NORMALIZER_H_
