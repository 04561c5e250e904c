// The regular-expression and choice fronts of compile.h.
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/text_parsing.h"

namespace sluice::grammar {
namespace {

class RegexParser {
 public:
  RegexParser(absl::string_view pattern, GrammarBuilder& builder, bool json_string)
      : in_(pattern), b_(builder), json_(json_string), size_(pattern.size()) {}

  absl::StatusOr<Expr> Parse() {
    in_.Consume("^");
    absl::StatusOr<Expr> e = Alternation(0);
    if (!e.ok()) return e;
    in_.Consume("$");
    if (!in_.done()) return in_.Error(in_.pos(), "the end of the pattern");
    return e;
  }

 private:
  absl::StatusOr<Expr> Alternation(int depth) {
    std::vector<Expr> alts;
    for (;;) {
      absl::StatusOr<Expr> c = Concat(depth);
      if (!c.ok()) return c;
      alts.push_back(*std::move(c));
      if (!in_.Consume("|")) return Expr::Alt(std::move(alts));
    }
  }

  absl::StatusOr<Expr> Concat(int depth) {
    std::vector<Expr> items;
    while (!in_.done()) {
      const char c = in_.peek();
      if (c == '|' || (c == ')' && depth > 0)) break;
      if (c == '$' && in_.pos() + 1 == size_) break;  // the end anchor
      absl::StatusOr<Expr> atom = Atom(depth);
      if (!atom.ok()) return atom;
      absl::StatusOr<Expr> q = Quantified(*std::move(atom));
      if (!q.ok()) return q;
      items.push_back(*std::move(q));
    }
    return Expr::Seq(std::move(items));
  }

  absl::StatusOr<Expr> Atom(int depth) {
    const size_t at = in_.pos();
    const char c = in_.peek();
    switch (c) {
      case '(': {
        in_.next();
        if (in_.Consume("?")) {
          if (in_.Consume(":")) {
          } else if (in_.Consume("<") || in_.Consume("P<")) {
            if (in_.peek() == '=' || in_.peek() == '!') {
              return Unsupported(at, "lookbehind");
            }
            while (!in_.done() && in_.peek() != '>') in_.next();
            if (!in_.Consume(">")) return in_.Error(in_.pos(), "'>' closing the group name");
          } else if (in_.peek() == '=' || in_.peek() == '!') {
            return Unsupported(at, "lookahead");
          } else {
            return in_.Error(in_.pos(), "':' or a group name after '(?'");
          }
        }
        absl::StatusOr<Expr> inner = Alternation(depth + 1);
        if (!inner.ok()) return inner;
        if (!in_.Consume(")")) return in_.Error(in_.pos(), "')'");
        return inner;
      }
      case ')':
        return in_.Error(at, "a term before ')' (unbalanced parenthesis)");
      case '[':
        return ReadClass(in_, json_);
      case '.': {
        in_.next();
        if (json_) return ReadClassFrom("[^\\n\\r]");
        return CodepointClass({{'\n', '\n'}, {'\r', '\r'}}, /*negate=*/true);
      }
      case '*':
      case '+':
      case '?':
      case '{':
        return in_.Error(at, "a term before the quantifier");
      case '^':
      case '$':
        return Unsupported(at, "anchors inside the pattern ('^' and '$' only at its ends)");
      case '\\': {
        const char e = in_.peek(1);
        if (e >= '1' && e <= '9') return Unsupported(at, "backreferences");
        if (e == 'b' || e == 'B') return Unsupported(at, "word boundaries");
        std::vector<std::pair<uint32_t, uint32_t>> ranges;
        bool negate = false;
        if (ShorthandClass(e, ranges, &negate)) {
          in_.next();
          in_.next();
          if (json_) {
            const std::string lower(1, absl::ascii_tolower(static_cast<unsigned char>(e)));
            return ReadClassFrom(absl::StrCat(negate ? "[^\\" : "[\\", lower, "]"));
          }
          return CodepointClass(std::move(ranges), negate);
        }
        break;
      }
      default:
        break;
    }
    absl::StatusOr<uint32_t> cp = ReadChar(in_, /*in_class=*/false);
    if (!cp.ok()) return cp.status();
    return Literal(*cp);
  }

  // A class written out, read by the class reader (so JSON strings exclude the same).
  absl::StatusOr<Expr> ReadClassFrom(const std::string& cls) {
    TextReader r(cls);
    return ReadClass(r, json_);
  }

  Expr Literal(uint32_t cp) const {
    std::string s;
    if (json_ && (cp == '"' || cp == '\\')) {
      s = absl::StrCat("\\", std::string(1, static_cast<char>(cp)));
    } else if (json_ && cp < 0x20) {
      s = cp == '\n'   ? "\\n"
          : cp == '\t' ? "\\t"
          : cp == '\r' ? "\\r"
                       : absl::StrFormat("\\u%04x", cp);
    } else {
      AppendUtf8(cp, s);
    }
    return Expr::Literal(s);
  }

  absl::StatusOr<Expr> Quantified(Expr atom) {
    for (;;) {
      if (in_.done()) return atom;
      const char c = in_.peek();
      int lo = 0, hi = -1;
      if (c == '*') {
        in_.next();
      } else if (c == '+') {
        in_.next();
        lo = 1;
      } else if (c == '?') {
        in_.next();
        hi = 1;
      } else if (c == '{' && (in_.peek(1) >= '0' && in_.peek(1) <= '9')) {
        absl::StatusOr<std::pair<int, int>> bounds = ReadBounds(in_, b_.limits());
        if (!bounds.ok()) return bounds.status();
        lo = bounds->first;
        hi = bounds->second;
      } else {
        return atom;
      }
      in_.Consume("?");  // lazy: the same language
      atom = Run(Expr::Repeat(std::move(atom), lo, hi));
    }
  }

  // A long repetition of one byte set becomes a rule the matcher knows (ByteRun), shared
  // by the pattern's runs of the same set and bounds.
  Expr Run(Expr repeat) {
    const Expr& item = repeat.items[0];
    if (item.kind != Expr::Kind::kBytes || (repeat.max >= 0 && repeat.max - repeat.min < 4)) {
      return repeat;
    }
    std::string name = "byte_run_";
    for (uint64_t w : item.bytes.bits) absl::StrAppend(&name, absl::Hex(w, absl::kZeroPad16));
    absl::StrAppend(&name, "_", repeat.min, "_", repeat.max);
    int rule = b_.Find(name);
    if (rule < 0) {
      rule = b_.AddRule(name);
      const ByteSet set = item.bytes;
      const int max = repeat.max;
      b_.SetBody(rule, std::move(repeat));
      b_.MarkByteRun(rule, set, max);
    }
    return Expr::Rule(rule);
  }

  absl::Status Unsupported(size_t at, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("the pattern uses ", what, " (at offset ", at,
                                                   "), which a grammar cannot express"));
  }

  TextReader in_;
  GrammarBuilder& b_;
  const bool json_;
  const size_t size_;
};

}  // namespace

absl::StatusOr<Expr> RegexExpr(absl::string_view pattern, GrammarBuilder& builder,
                               bool json_string) {
  RegexParser parser(pattern, builder, json_string);
  return parser.Parse();
}

absl::StatusOr<std::shared_ptr<const Grammar>> CompileRegex(absl::string_view pattern,
                                                            const Limits& limits) {
  GrammarBuilder builder(limits);
  const int root = builder.AddRule("root");
  absl::StatusOr<Expr> e = RegexExpr(pattern, builder);
  if (!e.ok()) return e.status();
  builder.SetBody(root, *std::move(e));
  return std::move(builder).Build(root);
}

absl::StatusOr<std::shared_ptr<const Grammar>> CompileChoice(
    const std::vector<std::string>& choices, const Limits& limits) {
  if (choices.empty()) return absl::InvalidArgumentError("the choice list is empty");
  GrammarBuilder builder(limits);
  const int root = builder.AddRule("root");
  std::vector<Expr> alts;
  for (const std::string& c : choices) alts.push_back(Expr::Literal(c));
  builder.SetBody(root, Expr::Alt(std::move(alts)));
  return std::move(builder).Build(root);
}

}  // namespace sluice::grammar
