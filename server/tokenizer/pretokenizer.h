// Pre-tokenizers of tokenizer.json ("pre_tokenizer"): Split, ByteLevel, Metaspace,
// Digits, WhitespaceSplit and Sequence of them.
#ifndef SLUICE_SERVER_TOKENIZER_PRETOKENIZER_H_
#define SLUICE_SERVER_TOKENIZER_PRETOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace sluice {

// A normalized text and the pieces it is cut into; pieces cover parts of `text` in order.
struct PieceBuffer {
  struct Span {
    uint32_t start;
    uint32_t end;
  };
  std::string text;
  std::vector<Span> spans;

  std::string_view piece(const Span& s) const {
    return std::string_view(text).substr(s.start, s.end - s.start);
  }
};

// Thread safety: PreTokenize is const and may run on several threads at once.
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Cuts each span of `buffer` further (and may rewrite its text). `is_first_segment`
  // is true for the text before any added token of the input.
  virtual void PreTokenize(PieceBuffer* buffer, bool is_first_segment) const = 0;
  // True when this stage maps text to the byte-level alphabet (the BPE model then
  // works on raw bytes).
  virtual bool is_byte_level() const { return false; }
};

// Builds the pre-tokenizer described by `config`; an unsupported type is
// InvalidArgument naming it. May throw nlohmann::json::exception (the loader catches).
absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const nlohmann::json& config);

}  // namespace sluice

#endif  // SLUICE_SERVER_TOKENIZER_PRETOKENIZER_H_
