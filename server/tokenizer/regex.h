// A compiled PCRE2 pattern (UTF + UCP, JIT when available) shared by threads.
#ifndef SLUICE_SERVER_TOKENIZER_REGEX_H_
#define SLUICE_SERVER_TOKENIZER_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace sluice {

// Patterns are read as Hugging Face tokenizers reads them (Oniguruma, Unicode): \s is
// the White_Space property (tab to CR, U+0085 and the Z categories), where PCRE2 would
// also take U+180E. NOTE: property classes follow PCRE2's Unicode tables (10.42:
// Unicode 14), so characters assigned since (e.g. CJK Extension H) are not \p{L} here
// as they are in tokenizers' Oniguruma; text holding them may pre-tokenize differently.
//
// Thread safety: Find may be called from several threads at once; each thread keeps
// its own match data and JIT stack.
class Regex {
 public:
  struct Match {
    size_t start;
    size_t end;
  };

  // Compiles `pattern`; InvalidArgument names the pattern and PCRE2's message.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Finds the first match in subject[offset..]; false when there is none.
  // REQUIRES: subject is valid UTF-8 and offset is on a character boundary.
  bool Find(std::string_view subject, size_t offset, Match* match) const;

 private:
  explicit Regex(void* code, bool jit) : code_(code), jit_(jit) {}
  void* code_;  // pcre2_code_8*
  bool jit_;
};

}  // namespace sluice

#endif  // SLUICE_SERVER_TOKENIZER_REGEX_H_
