// Structured outputs at the front: what a request asks its output to match (a JSON
// Schema, any JSON object, a regex, a choice, an EBNF grammar), compiled once per
// distinct spec into the engine's OutputConstraint and kept in a bounded LRU cache, so
// that clients sending the same schema pay the compile once.
// Thread safety: ConstraintCache is safe from any thread; compiles run outside its lock.
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/api.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"
#include "server/tokenizer/tokenizer.h"

namespace sluice {

struct ConstraintSpec {
  enum class Kind { kJsonSchema, kJsonObject, kRegex, kChoice, kGrammar };
  Kind kind = Kind::kJsonObject;
  std::string text;                  // the schema (JSON text), regex or grammar
  std::vector<std::string> choices;  // kChoice
  bool strict = false;               // JSON Schema: refuse what cannot be enforced
  bool allow_space = true;           // JSON: one optional space after ':' and ','
  std::string field;                 // the request field it came from, for errors
  // kJsonSchema: values framed as tool calls (engine/grammar/compile.h); none when unset.
  std::optional<grammar::JsonFraming> framing;
};

// The vocabulary's token bytes for grammars: `vocab_size` ids (the engine's, which may
// pad past the tokenizer's), ending with `eos_ids`.
std::shared_ptr<const grammar::Vocabulary> GrammarVocabulary(const Tokenizer& tokenizer,
                                                             int vocab_size,
                                                             std::vector<int32_t> eos_ids);

class ConstraintCache {
 public:
  ConstraintCache(std::shared_ptr<const grammar::Vocabulary> vocab, size_t capacity = 256)
      : vocab_(std::move(vocab)), capacity_(capacity) {}

  // The compiled constraint, or the compiler's error (InvalidArgument naming where, or
  // ResourceExhausted past the size bounds). Errors are cached too.
  absl::StatusOr<std::shared_ptr<const OutputConstraint>> Get(const ConstraintSpec& spec);

  size_t size() const;
  int64_t hits() const;

 private:
  using Entry = std::pair<std::string, absl::StatusOr<std::shared_ptr<const OutputConstraint>>>;
  std::shared_ptr<const grammar::Vocabulary> vocab_;
  const size_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recent first
  absl::flat_hash_map<std::string, std::list<Entry>::iterator> index_;
  int64_t hits_ = 0;
};

}  // namespace sluice
