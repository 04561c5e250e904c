// A Hugging Face tokenizer.json tokenizer: added tokens, normalizer, pre-tokenizer, BPE
// model, post-processor and decoder, with the model directory's tokenizer_config.json.
#ifndef SLUICE_SERVER_TOKENIZER_TOKENIZER_H_
#define SLUICE_SERVER_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice {

class AddedTokens;
class BpeModel;
class Decoder;
class Normalizer;
class PreTokenizer;

// Thread safety: all const methods may be called from several threads at once.
class Tokenizer {
 public:
  // Loads dir/tokenizer.json and, when present, dir/tokenizer_config.json. NotFound if
  // tokenizer.json is missing; InvalidArgument naming the file and the component for a
  // malformed or unsupported one.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromDir(const std::string& dir);

  // Builds a tokenizer from the text of tokenizer.json and (optionally, may be empty)
  // tokenizer_config.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view tokenizer_json,
                                                             std::string_view config_json = "");

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `text`; with `add_special_tokens` the post-processor's tokens are added.
  // Added and special tokens written in the text are recognised. InvalidArgument naming
  // the byte offset if `text` is not valid UTF-8 (or is 4 GiB or more).
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;

  // Text of `ids` (unknown ids are skipped); always valid UTF-8, with U+FFFD where the
  // ids' bytes are not.
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  // One past the largest id of the model vocabulary and the added tokens.
  int vocab_size() const;
  // Id of a token as written in tokenizer.json (added tokens first).
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // Token string of `id` as written in tokenizer.json; empty for an unknown id.
  std::string IdToToken(int32_t id) const;
  // True for an added token marked special.
  bool IsSpecial(int32_t id) const;
  // The bytes token `id` adds to the text wherever it stands (raw, possibly part of a
  // UTF-8 sequence); empty for special and unknown tokens.
  std::string TokenBytes(int32_t id) const;

  // From tokenizer_config.json: the bos token's id, if it names one.
  std::optional<int32_t> bos_id() const { return bos_id_; }
  // From tokenizer_config.json: the eos token's id (empty if none).
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  // From tokenizer_config.json: add_bos_token (false when absent).
  bool add_bos_token() const { return add_bos_token_; }
  // From tokenizer_config.json (the "default" one of a list), else from
  // chat_template.jinja beside it; empty if none.
  const std::string& chat_template() const { return chat_template_; }

 private:
  Tokenizer();
  absl::Status LoadTokenizerJson(std::string_view text);
  absl::Status LoadConfigJson(std::string_view text);
  void EncodeText(std::string_view text, bool is_first, std::vector<int32_t>* ids) const;
  void EncodeNormalized(std::string_view text, bool is_first, std::vector<int32_t>* ids) const;

  std::unique_ptr<AddedTokens> added_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Decoder> decoder_;
  // The post-processor's single-sequence template: prefix + ids + suffix.
  std::vector<int32_t> special_prefix_;
  std::vector<int32_t> special_suffix_;
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
  bool add_bos_token_ = false;
  std::string chat_template_;
};

}  // namespace sluice

#endif  // SLUICE_SERVER_TOKENIZER_TOKENIZER_H_
