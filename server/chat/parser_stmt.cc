// Statement grammar: text, {{ output }}, if/elif/else, for/else, set (plain, namespace
// attribute, tuple, block), macro, break/continue, generation.
#include <utility>

#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "server/chat/name_check.h"
#include "server/chat/parser.h"
#include "server/chat/parser_impl.h"

namespace sluice::chat {
namespace {

// "'endfor' or 'else'".
std::string Quoted(const EndTags& tags) {
  std::vector<std::string> names;
  for (std::string_view tag : tags) names.push_back(absl::StrCat("'", std::string(tag), "'"));
  return absl::StrJoin(names, " or ");
}

}  // namespace

absl::StatusOr<StmtList> ParseTemplate(std::string_view source) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(source));
  return Parser(std::move(tokens)).ParseAll();
}

absl::StatusOr<StmtList> Parser::ParseAll() {
  std::string_view found;
  SLUICE_ASSIGN_OR_RETURN(StmtList body, ParseBody({}, &found));
  SLUICE_RETURN_IF_ERROR(CheckFilterAndTestNames(body));
  return body;
}

absl::StatusOr<StmtList> Parser::ParseBody(const EndTags& end_tags, std::string_view* found) {
  Guard guard(&depth_);
  if (!guard.Enter()) return TooDeep();
  StmtList body;
  while (true) {
    const Token& t = Peek();
    switch (t.type) {
      case TokenType::kEof:
        if (end_tags.empty()) return body;
        return ErrorAt(t, absl::StrCat("unexpected end of template, expected ", Quoted(end_tags)));
      case TokenType::kText: {
        StmtPtr s = Node<Stmt>(t);
        s->kind = Stmt::Kind::kText;
        s->text = Next().value;
        body.push_back(std::move(s));
        break;
      }
      case TokenType::kVarBegin: {
        StmtPtr s = Node<Stmt>(Next());
        s->kind = Stmt::Kind::kOutput;
        SLUICE_ASSIGN_OR_RETURN(s->expr, ParseTuple(/*with_condexpr=*/true));
        if (Peek().type != TokenType::kVarEnd) return Unexpected("end of print statement");
        Next();
        body.push_back(std::move(s));
        break;
      }
      case TokenType::kBlockBegin: {
        if (Peek(1).type == TokenType::kName) {
          for (std::string_view tag : end_tags) {
            if (Peek(1).value != tag) continue;
            Next();
            *found = tag;
            Next();
            return body;
          }
        }
        const std::string& name = Peek(1).value;
        if (!end_tags.empty() && Peek(1).type == TokenType::kName &&
            (name.rfind("end", 0) == 0 || name == "elif" || name == "else")) {
          return ErrorAt(Peek(1),
                         absl::StrCat("unexpected '", name, "', expected ", Quoted(end_tags)));
        }
        const Token& begin = Next();
        SLUICE_ASSIGN_OR_RETURN(StmtPtr s, ParseStatement(begin));
        body.push_back(std::move(s));
        break;
      }
      default:
        return ErrorAt(t, absl::StrCat("unexpected ", Describe(t)));
    }
  }
}

absl::StatusOr<StmtPtr> Parser::ParseStatement(const Token& begin) {
  if (Peek().type != TokenType::kName) return Unexpected("a statement name");
  const std::string name = Peek().value;
  if (name == "if") return ParseIf(begin);
  if (name == "for") return ParseFor(begin);
  if (name == "set") return ParseSet(begin);
  if (name == "macro") return ParseMacro(begin);
  StmtPtr s = Node<Stmt>(begin);
  if (name == "break" || name == "continue") {
    if (loop_depth_ == 0) return ErrorAt(Peek(), absl::StrCat("'", name, "' outside of a loop"));
    Next();
    s->kind = name == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
    SLUICE_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }
  if (name == "generation") {
    Next();
    SLUICE_RETURN_IF_ERROR(ExpectBodyStart());
    s->kind = Stmt::Kind::kScope;
    std::string_view found;
    SLUICE_ASSIGN_OR_RETURN(s->body, ParseBody({"endgeneration"}, &found));
    SLUICE_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }
  const bool is_end = name.rfind("end", 0) == 0 || name == "elif" || name == "else";
  return ErrorAt(Peek(), is_end ? absl::StrCat("unexpected '", name, "'")
                                : absl::StrCat("unknown tag '", name, "'"));
}

absl::StatusOr<StmtPtr> Parser::ParseIf(const Token& begin) {
  StmtPtr s = Node<Stmt>(begin);
  s->kind = Stmt::Kind::kIf;
  Next();
  SLUICE_ASSIGN_OR_RETURN(ExprPtr cond, ParseTuple(/*with_condexpr=*/false));
  SLUICE_RETURN_IF_ERROR(ExpectBodyStart());
  while (true) {
    std::string_view found;
    SLUICE_ASSIGN_OR_RETURN(StmtList body, ParseBody({"elif", "else", "endif"}, &found));
    s->branches.emplace_back(std::move(cond), std::move(body));
    if (found == "elif") {
      SLUICE_ASSIGN_OR_RETURN(cond, ParseTuple(/*with_condexpr=*/false));
      SLUICE_RETURN_IF_ERROR(ExpectBodyStart());
      continue;
    }
    SLUICE_RETURN_IF_ERROR(found == "else" ? ExpectBodyStart() : ExpectBlockEnd());
    if (found == "else") {
      SLUICE_ASSIGN_OR_RETURN(s->else_body, ParseBody({"endif"}, &found));
      SLUICE_RETURN_IF_ERROR(ExpectBlockEnd());
    }
    return s;
  }
}

absl::StatusOr<std::vector<std::string>> Parser::ParseTargetNames() {
  const bool parenthesized = IsOp("(");
  if (parenthesized) Next();
  std::vector<std::string> names;
  while (true) {
    SLUICE_ASSIGN_OR_RETURN(std::string name, ExpectName());
    names.push_back(std::move(name));
    if (!IsOp(",")) break;
    Next();
  }
  if (parenthesized) SLUICE_RETURN_IF_ERROR(ExpectOp(")"));
  return names;
}

absl::StatusOr<StmtPtr> Parser::ParseFor(const Token& begin) {
  StmtPtr s = Node<Stmt>(begin);
  s->kind = Stmt::Kind::kFor;
  Next();
  SLUICE_ASSIGN_OR_RETURN(s->targets, ParseTargetNames());
  if (!IsName("in")) return Unexpected("'in'");
  Next();
  SLUICE_ASSIGN_OR_RETURN(s->expr, ParseTuple(/*with_condexpr=*/false));
  if (IsName("if")) {
    Next();
    SLUICE_ASSIGN_OR_RETURN(s->filter, ParseExpression());
  }
  if (IsName("recursive")) return ErrorAt(Peek(), "recursive loops are not supported");
  SLUICE_RETURN_IF_ERROR(ExpectBodyStart());
  std::string_view found;
  ++loop_depth_;
  absl::StatusOr<StmtList> body = ParseBody({"endfor", "else"}, &found);
  --loop_depth_;
  if (!body.ok()) return body.status();
  s->body = *std::move(body);
  SLUICE_RETURN_IF_ERROR(found == "else" ? ExpectBodyStart() : ExpectBlockEnd());
  if (found == "else") {
    SLUICE_ASSIGN_OR_RETURN(s->else_body, ParseBody({"endfor"}, &found));
    SLUICE_RETURN_IF_ERROR(ExpectBlockEnd());
  }
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseSet(const Token& begin) {
  StmtPtr s = Node<Stmt>(begin);
  Next();
  if (IsName("namespace") || IsName("loop")) {
    return ErrorAt(Peek(), absl::StrCat("cannot assign to '", Peek().value, "'"));
  }
  if (Peek().type == TokenType::kName && IsOp(".", 1)) {
    s->targets.push_back(Next().value);
    Next();
    SLUICE_ASSIGN_OR_RETURN(s->attr, ExpectName());
  } else {
    SLUICE_ASSIGN_OR_RETURN(s->targets, ParseTargetNames());
  }
  if (IsOp("=")) {
    Next();
    s->kind = Stmt::Kind::kSet;
    SLUICE_ASSIGN_OR_RETURN(s->expr, ParseTuple(/*with_condexpr=*/true));
    SLUICE_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }
  if (!s->attr.empty() || s->targets.size() != 1) return Unexpected("'='");
  if (IsOp("|")) return ErrorAt(Peek(), "filters on block set are not supported");
  SLUICE_RETURN_IF_ERROR(ExpectBodyStart());
  s->kind = Stmt::Kind::kSetBlock;
  std::string_view found;
  SLUICE_ASSIGN_OR_RETURN(s->body, ParseBody({"endset"}, &found));
  SLUICE_RETURN_IF_ERROR(ExpectBlockEnd());
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseMacro(const Token& begin) {
  StmtPtr s = Node<Stmt>(begin);
  s->kind = Stmt::Kind::kMacro;
  Next();
  SLUICE_ASSIGN_OR_RETURN(s->name, ExpectName());
  SLUICE_RETURN_IF_ERROR(ExpectOp("("));
  while (!IsOp(")")) {
    SLUICE_ASSIGN_OR_RETURN(std::string param, ExpectName());
    ExprPtr default_value;
    if (IsOp("=")) {
      Next();
      SLUICE_ASSIGN_OR_RETURN(default_value, ParseExpression());
    }
    s->params.emplace_back(std::move(param), std::move(default_value));
    if (!IsOp(",")) break;
    Next();
  }
  SLUICE_RETURN_IF_ERROR(ExpectOp(")"));
  SLUICE_RETURN_IF_ERROR(ExpectBodyStart());
  const int saved_loop_depth = loop_depth_;
  loop_depth_ = 0;
  std::string_view found;
  absl::StatusOr<StmtList> body = ParseBody({"endmacro"}, &found);
  loop_depth_ = saved_loop_depth;
  if (!body.ok()) return body.status();
  s->body = *std::move(body);
  if (IsName(s->name)) Next();
  SLUICE_RETURN_IF_ERROR(ExpectBlockEnd());
  return s;
}

}  // namespace sluice::chat
