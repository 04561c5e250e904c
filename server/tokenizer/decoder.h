// Decoders of tokenizer.json ("decoder"): ByteLevel, Metaspace, Replace, ByteFallback,
// Fuse, Strip and Sequence of them, with Hugging Face's chain semantics.
#ifndef SLUICE_SERVER_TOKENIZER_DECODER_H_
#define SLUICE_SERVER_TOKENIZER_DECODER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace sluice {

// Thread safety: DecodeChain is const and may run on several threads at once.
class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites the token strings in place; the decoded text is their concatenation.
  // The output strings are valid UTF-8.
  virtual void DecodeChain(std::vector<std::string>* tokens) const = 0;
  // One token's own bytes, what it adds wherever it stands: the byte mapping and
  // replacements, without what depends on its place (stripping the first space) and
  // without replacing bytes that are not UTF-8 on their own. Grammars match on these.
  virtual void TokenBytes(std::string* token) const = 0;
};

// Builds the decoder described by `config`; an unsupported type is InvalidArgument
// naming it. May throw nlohmann::json::exception (the loader catches).
absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const nlohmann::json& config);

}  // namespace sluice

#endif  // SLUICE_SERVER_TOKENIZER_DECODER_H_
