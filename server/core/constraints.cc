#include "server/core/constraints.h"

#include "absl/strings/str_cat.h"
#include "engine/grammar/compile.h"

namespace sluice {

std::shared_ptr<const grammar::Vocabulary> GrammarVocabulary(const Tokenizer& tokenizer,
                                                             int vocab_size,
                                                             std::vector<int32_t> eos_ids) {
  std::vector<std::string> bytes(static_cast<size_t>(std::max(vocab_size, tokenizer.vocab_size())));
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) bytes[id] = tokenizer.TokenBytes(id);
  auto vocab = std::make_shared<const grammar::Vocabulary>(std::move(bytes), std::move(eos_ids));
  vocab->json_strings();  // at load (milliseconds), so that no request waits for it
  return vocab;
}

namespace {

std::string KeyOf(const ConstraintSpec& s) {
  std::string key =
      absl::StrCat(static_cast<int>(s.kind), s.strict ? "s" : "-", s.allow_space ? "w" : "-", ":");
  if (s.kind == ConstraintSpec::Kind::kChoice) {
    for (const std::string& c : s.choices) absl::StrAppend(&key, c.size(), ":", c);
  } else {
    key += s.text;
  }
  if (s.framing) {
    const grammar::JsonFraming& f = *s.framing;
    for (const std::string* part : {&f.open, &f.prefix, &f.suffix, &f.separator, &f.close}) {
      absl::StrAppend(&key, "|", part->size(), ":", *part);
    }
    absl::StrAppend(&key, "|", f.min, ",", f.max);
  }
  return key;
}

absl::StatusOr<std::shared_ptr<const grammar::Grammar>> Compile(const ConstraintSpec& s) {
  grammar::JsonOptions json;
  json.strict = s.strict;
  json.allow_space = s.allow_space;
  switch (s.kind) {
    case ConstraintSpec::Kind::kJsonSchema:
      if (s.framing) return grammar::CompileJsonSchemaFramed(s.text, *s.framing, json);
      return grammar::CompileJsonSchema(s.text, json);
    case ConstraintSpec::Kind::kJsonObject:
      return grammar::CompileJsonObject(json);
    case ConstraintSpec::Kind::kRegex:
      return grammar::CompileRegex(s.text);
    case ConstraintSpec::Kind::kChoice:
      return grammar::CompileChoice(s.choices);
    case ConstraintSpec::Kind::kGrammar:
      return grammar::CompileEbnf(s.text);
  }
  return absl::InternalError("unknown constraint kind");
}

}  // namespace

absl::StatusOr<std::shared_ptr<const OutputConstraint>> ConstraintCache::Get(
    const ConstraintSpec& spec) {
  const std::string key = KeyOf(spec);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = index_.find(key); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++hits_;
      return it->second->second;
    }
  }
  absl::StatusOr<std::shared_ptr<const OutputConstraint>> made;
  absl::StatusOr<std::shared_ptr<const grammar::Grammar>> g = Compile(spec);
  if (g.ok()) {
    auto automaton = std::make_shared<grammar::Automaton>(*g, vocab_);
    made = std::make_shared<const OutputConstraint>(
        OutputConstraint{*std::move(g), vocab_, std::move(automaton)});
  } else {
    made = g.status();
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = index_.find(key); it != index_.end()) return it->second->second;  // raced
  lru_.emplace_front(key, made);
  index_[key] = lru_.begin();
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return made;
}

size_t ConstraintCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}

int64_t ConstraintCache::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}

}  // namespace sluice
