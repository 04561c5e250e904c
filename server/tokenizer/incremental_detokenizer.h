// Streaming detokenization: text deltas for token ids as they are generated.
#ifndef SLUICE_SERVER_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
#define SLUICE_SERVER_TOKENIZER_INCREMENTAL_DETOKENIZER_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "server/tokenizer/tokenizer.h"

namespace sluice {

// Turns a growing id sequence into text deltas whose concatenation, after Finish(), is
// tokenizer.Decode(all ids, skip_special_tokens).
//
// Each delta is valid UTF-8. Text whose decoding still ends in U+FFFD (bytes of a
// character not yet complete) is held back until a later id completes it or Finish()
// flushes it. A U+FFFD followed by more text is final (those bytes can no longer form a
// character) and is emitted as Decode gives it. Decoders that depend on the position of a token
// (SentencePiece's leading space strip) see the same window for the text already emitted and the
// new text, so the delta agrees with the full decode.
//
// Thread safety: not thread-safe; one instance per stream. REQUIRES: `tokenizer`
// outlives this object.
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens);

  // Appends `ids` and returns the text they complete (possibly empty).
  std::string Add(std::span<const int32_t> ids);
  // Appends one id and returns the text it completes (possibly empty).
  std::string Add(int32_t id) { return Add(std::span<const int32_t>(&id, 1)); }
  // Returns the text still held back, with U+FFFD for incomplete bytes; call once at
  // the end of the stream.
  std::string Finish();

  // All ids added so far.
  const std::vector<int32_t>& ids() const { return ids_; }

 private:
  // Text of ids_[prefix_offset_, end) minus the text of ids_[prefix_offset_, read_offset_).
  std::string Delta(size_t end, std::string* window_text) const;

  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;
  // ids_[prefix_offset_, read_offset_) is already emitted text, kept as context; ids from
  // read_offset_ on are not emitted yet.
  size_t prefix_offset_ = 0;
  size_t read_offset_ = 0;
};

}  // namespace sluice

#endif  // SLUICE_SERVER_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
