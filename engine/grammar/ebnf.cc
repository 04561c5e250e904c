// The EBNF (GBNF) front of compile.h.
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/text_parsing.h"

namespace sluice::grammar {
namespace {

class EbnfParser {
 public:
  EbnfParser(absl::string_view text, GrammarBuilder& builder) : in_(text), b_(builder) {}

  absl::Status Parse() {
    SkipSpace(/*newlines=*/true);
    while (!in_.done()) {
      const size_t at = in_.pos();
      std::string name = Name();
      if (name.empty()) return in_.Error(at, "a rule name");
      SkipSpace(true);
      if (!in_.Consume("::=")) return in_.Error(in_.pos(), "'::=' after the rule name");
      const int rule = RuleId(name);
      if (defined_.size() <= static_cast<size_t>(rule)) defined_.resize(rule + 1, false);
      if (defined_[rule]) return in_.Error(at, absl::StrCat("one definition of '", name, "'"));
      defined_[rule] = true;
      absl::StatusOr<Expr> body = Alternatives(/*depth=*/0);
      if (!body.ok()) return body.status();
      b_.SetBody(rule, *std::move(body));
      SkipSpace(true);
    }
    for (int r = 0; r < b_.num_rules(); ++r) {
      if (static_cast<size_t>(r) >= defined_.size() || !defined_[r]) {
        return absl::InvalidArgumentError(
            absl::StrCat("rule '", names_[r], "' is used but not defined"));
      }
    }
    return absl::OkStatus();
  }

 private:
  int RuleId(const std::string& name) {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name) return static_cast<int>(i);
    }
    names_.push_back(name);
    return b_.AddRule(name);
  }

  // Spaces and comments; newlines too when `newlines` (inside groups, or between rules).
  void SkipSpace(bool newlines) {
    while (!in_.done()) {
      const char c = in_.peek();
      if (c == '#') {
        while (!in_.done() && in_.peek() != '\n') in_.next();
      } else if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
        in_.next();
      } else {
        return;
      }
    }
  }

  std::string Name() {
    std::string name;
    while (!in_.done()) {
      const char c = in_.peek();
      if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') {
        name += in_.next();
      } else {
        break;
      }
    }
    return name;
  }

  // Whether a new rule starts here (a name, then ::=), after a newline.
  bool AtRuleStart() {
    const size_t save = in_.pos();
    SkipSpace(true);
    const std::string name = Name();
    SkipSpace(true);
    const bool start = !name.empty() && in_.LookingAt("::=");
    in_.Seek(save);
    return start;
  }

  // A body runs on across lines until the next `name ::=` or the end; inside ( )
  // newlines are plain space.
  void SkipBodySpace(int depth) {
    SkipSpace(depth > 0);
    while (depth == 0 && !in_.done() && in_.peek() == '\n') {
      if (AtRuleStart()) return;
      in_.next();
      SkipSpace(false);
    }
  }

  absl::StatusOr<Expr> Alternatives(int depth) {
    std::vector<Expr> alts;
    for (;;) {
      absl::StatusOr<Expr> seq = Sequence(depth);
      if (!seq.ok()) return seq;
      alts.push_back(*std::move(seq));
      SkipBodySpace(depth);
      if (!in_.done() && in_.peek() == '|') {
        in_.next();
        continue;
      }
      return Expr::Alt(std::move(alts));
    }
  }

  absl::StatusOr<Expr> Sequence(int depth) {
    std::vector<Expr> items;
    for (;;) {
      SkipBodySpace(depth);
      if (in_.done()) break;
      const char c = in_.peek();
      if (c == '|' || c == ')' || (depth == 0 && c == '\n')) break;
      if (depth == 0 && AtRuleStart()) break;
      absl::StatusOr<Expr> term = Term(depth);
      if (!term.ok()) return term;
      absl::StatusOr<Expr> repeated = Postfix(*std::move(term));
      if (!repeated.ok()) return repeated;
      items.push_back(*std::move(repeated));
    }
    return Expr::Seq(std::move(items));
  }

  absl::StatusOr<Expr> Term(int depth) {
    const size_t at = in_.pos();
    const char c = in_.peek();
    if (c == '"' || c == '\'') {
      in_.next();
      std::string bytes;
      while (!in_.done() && in_.peek() != c) {
        absl::StatusOr<uint32_t> cp = ReadChar(in_, /*in_class=*/false);
        if (!cp.ok()) return cp.status();
        AppendUtf8(*cp, bytes);
      }
      if (!in_.Consume(std::string(1, c))) return in_.Error(at, "a closing quote");
      return Expr::Literal(bytes);
    }
    if (c == '[') return ReadClass(in_, /*json_string=*/false);
    if (c == '.') {
      in_.next();
      return CodepointClass({}, /*negate=*/true);
    }
    if (c == '(') {
      in_.next();
      absl::StatusOr<Expr> inner = Alternatives(depth + 1);
      if (!inner.ok()) return inner;
      SkipSpace(true);
      if (!in_.Consume(")")) return in_.Error(in_.pos(), "')'");
      return inner;
    }
    const std::string name = Name();
    if (name.empty()) return in_.Error(at, "a term (\"literal\", [class], name, or ( group ))");
    return Expr::Rule(RuleId(name));
  }

  absl::StatusOr<Expr> Postfix(Expr term) {
    for (;;) {
      if (in_.done()) return term;
      const char c = in_.peek();
      if (c == '*' || c == '+' || c == '?') {
        in_.next();
        term = c == '*'   ? Expr::Star(std::move(term))
               : c == '+' ? Expr::Plus(std::move(term))
                          : Expr::Optional(std::move(term));
        continue;
      }
      if (c == '{') {
        absl::StatusOr<std::pair<int, int>> bounds = ReadBounds(in_, b_.limits());
        if (!bounds.ok()) return bounds.status();
        term = Expr::Repeat(std::move(term), bounds->first, bounds->second);
        continue;
      }
      return term;
    }
  }

  TextReader in_;
  GrammarBuilder& b_;
  std::vector<std::string> names_;
  std::vector<bool> defined_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<const Grammar>> CompileEbnf(absl::string_view text,
                                                           const Limits& limits) {
  GrammarBuilder builder(limits);
  EbnfParser parser(text, builder);
  if (absl::Status s = parser.Parse(); !s.ok()) return s;
  const int root = builder.Find("root");
  if (root < 0) return absl::InvalidArgumentError("the grammar has no rule named 'root'");
  return std::move(builder).Build(root);
}

}  // namespace sluice::grammar
