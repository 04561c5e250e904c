// Expression grammar, with jinja2's precedence: condexpr < or < and < not < compare <
// + - < ~ < * / // % < ** < unary < primary with postfix . [] () and | filters, is tests.
#include <cerrno>
#include <cstdlib>
#include <utility>

#include "common/status_macros.h"
#include "server/chat/parser_impl.h"

namespace sluice::chat {

absl::StatusOr<ExprPtr> Parser::ParseTuple(bool with_condexpr) {
  const Token& at = Peek();
  auto parse_item = [&]() { return with_condexpr ? ParseExpression() : ParseOr(); };
  SLUICE_ASSIGN_OR_RETURN(ExprPtr first, parse_item());
  if (!IsOp(",")) return first;
  ExprPtr tuple = ExprNode(Expr::Kind::kTuple, at);
  tuple->operands.push_back(std::move(first));
  while (IsOp(",")) {
    Next();
    const TokenType t = Peek().type;
    if (t == TokenType::kVarEnd || t == TokenType::kBlockEnd || t == TokenType::kEof || IsOp(")") ||
        IsName("if") || IsName("recursive")) {
      break;
    }
    SLUICE_ASSIGN_OR_RETURN(ExprPtr item, parse_item());
    tuple->operands.push_back(std::move(item));
  }
  return tuple;
}

absl::StatusOr<ExprPtr> Parser::ParseExpression(bool with_condexpr) {
  SLUICE_ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
  if (!with_condexpr) return expr;
  Guard guard(&depth_);
  while (IsName("if")) {
    if (!guard.Enter()) return TooDeep();
    ExprPtr cond_expr = ExprNode(Expr::Kind::kCondExpr, Next());
    SLUICE_ASSIGN_OR_RETURN(ExprPtr cond, ParseOr());
    ExprPtr otherwise;
    if (IsName("else")) {
      Next();
      SLUICE_ASSIGN_OR_RETURN(otherwise, ParseExpression());
    }
    cond_expr->operands.push_back(std::move(expr));
    cond_expr->operands.push_back(std::move(cond));
    cond_expr->operands.push_back(std::move(otherwise));
    expr = std::move(cond_expr);
  }
  return expr;
}

absl::StatusOr<ExprPtr> Parser::ParseOr() { return ParseLeftAssociative("or", &Parser::ParseAnd); }

absl::StatusOr<ExprPtr> Parser::ParseAnd() {
  return ParseLeftAssociative("and", &Parser::ParseNot);
}

absl::StatusOr<ExprPtr> Parser::ParseLeftAssociative(const char* op,
                                                     absl::StatusOr<ExprPtr> (Parser::*operand)()) {
  SLUICE_ASSIGN_OR_RETURN(ExprPtr left, (this->*operand)());
  Guard guard(&depth_);
  while (IsName(op)) {
    if (!guard.Enter()) return TooDeep();
    ExprPtr node = ExprNode(Expr::Kind::kBinary, Next());
    node->name = op;
    SLUICE_ASSIGN_OR_RETURN(ExprPtr right, (this->*operand)());
    node->operands.push_back(std::move(left));
    node->operands.push_back(std::move(right));
    left = std::move(node);
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseNot() {
  if (!IsName("not")) return ParseCompare();
  Guard guard(&depth_);
  if (!guard.Enter()) return TooDeep();
  ExprPtr node = ExprNode(Expr::Kind::kUnary, Next());
  node->name = "not";
  SLUICE_ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
  node->operands.push_back(std::move(operand));
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseCompare() {
  const Token& at = Peek();
  SLUICE_ASSIGN_OR_RETURN(ExprPtr first, ParseBinary(0));
  ExprPtr node;
  while (true) {
    std::string op;
    if (Peek().type == TokenType::kOperator &&
        (Peek().value == "==" || Peek().value == "!=" || Peek().value == "<" ||
         Peek().value == "<=" || Peek().value == ">" || Peek().value == ">=")) {
      op = Next().value;
    } else if (IsName("in")) {
      Next();
      op = "in";
    } else if (IsName("not") && IsName("in", 1)) {
      Next();
      Next();
      op = "not in";
    } else {
      break;
    }
    if (node == nullptr) {
      node = ExprNode(Expr::Kind::kCompare, at);
      node->operands.push_back(std::move(first));
    }
    node->compare_ops.push_back(std::move(op));
    SLUICE_ASSIGN_OR_RETURN(ExprPtr operand, ParseBinary(0));
    node->operands.push_back(std::move(operand));
  }
  return node != nullptr ? std::move(node) : std::move(first);
}

absl::StatusOr<ExprPtr> Parser::ParseBinary(int level) {
  static const std::vector<std::vector<std::string_view>> kLevels = {
      {"+", "-"}, {"~"}, {"*", "/", "//", "%"}, {"**"}};
  if (level == static_cast<int>(kLevels.size())) return ParseUnary(/*with_filter=*/true);
  SLUICE_ASSIGN_OR_RETURN(ExprPtr left, ParseBinary(level + 1));
  Guard guard(&depth_);
  while (Peek().type == TokenType::kOperator) {
    const auto& ops = kLevels[level];
    if (std::find(ops.begin(), ops.end(), Peek().value) == ops.end()) break;
    if (!guard.Enter()) return TooDeep();
    ExprPtr node = ExprNode(Expr::Kind::kBinary, Peek());
    node->name = Next().value;
    SLUICE_ASSIGN_OR_RETURN(ExprPtr right, ParseBinary(level + 1));
    node->operands.push_back(std::move(left));
    node->operands.push_back(std::move(right));
    left = std::move(node);
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseUnary(bool with_filter) {
  Guard guard(&depth_);
  if (!guard.Enter()) return TooDeep();
  ExprPtr node;
  if (IsOp("-") || IsOp("+")) {
    node = ExprNode(Expr::Kind::kUnary, Peek());
    node->name = Next().value;
    SLUICE_ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(/*with_filter=*/false));
    node->operands.push_back(std::move(operand));
  } else {
    SLUICE_ASSIGN_OR_RETURN(node, ParsePrimary());
  }
  SLUICE_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
  if (with_filter) return ParseFilterExpr(std::move(node));
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParsePrimary() {
  const Token& t = Peek();
  ExprPtr node = ExprNode(Expr::Kind::kLiteral, t);
  switch (t.type) {
    case TokenType::kName:
      Next();
      if (t.value == "true" || t.value == "True") {
        node->literal = Value::Bool(true);
      } else if (t.value == "false" || t.value == "False") {
        node->literal = Value::Bool(false);
      } else if (t.value == "none" || t.value == "None") {
        node->literal = Value::None();
      } else {
        node->kind = Expr::Kind::kName;
        node->name = t.value;
      }
      return node;
    case TokenType::kString: {
      std::string text;
      while (Peek().type == TokenType::kString) text += Next().value;
      node->literal = Value::String(std::move(text));
      return node;
    }
    case TokenType::kInt: {
      errno = 0;
      const long long v = std::strtoll(t.value.c_str(), nullptr, 10);
      if (errno == ERANGE) return ErrorAt(t, "integer literal out of range");
      Next();
      node->literal = Value::Int(v);
      return node;
    }
    case TokenType::kFloat:
      Next();
      node->literal = Value::Float(std::strtod(t.value.c_str(), nullptr));
      return node;
    case TokenType::kOperator:
      break;
    default:
      return Unexpected("an expression");
  }
  if (IsOp("(")) {
    Next();
    if (IsOp(")")) {
      Next();
      node->kind = Expr::Kind::kTuple;
      return node;
    }
    SLUICE_ASSIGN_OR_RETURN(node, ParseTuple(/*with_condexpr=*/true));
    SLUICE_RETURN_IF_ERROR(ExpectOp(")"));
    return node;
  }
  const bool is_list = IsOp("[");
  if (!is_list && !IsOp("{")) return Unexpected("an expression");
  Next();
  node->kind = is_list ? Expr::Kind::kList : Expr::Kind::kDict;
  const std::string_view close = is_list ? "]" : "}";
  while (!IsOp(close)) {
    SLUICE_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
    node->operands.push_back(std::move(item));
    if (!is_list) {
      SLUICE_RETURN_IF_ERROR(ExpectOp(":"));
      SLUICE_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      node->operands.push_back(std::move(value));
    }
    if (!IsOp(",")) break;
    Next();
  }
  SLUICE_RETURN_IF_ERROR(ExpectOp(close));
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParsePostfix(ExprPtr node) {
  Guard guard(&depth_);
  while (IsOp(".") || IsOp("[") || IsOp("(")) {
    if (!guard.Enter()) return TooDeep();
    const Token& at = Peek();
    if (IsOp("(")) {
      ExprPtr call = ExprNode(Expr::Kind::kCall, at);
      call->operands.push_back(std::move(node));
      SLUICE_RETURN_IF_ERROR(ParseCallArgs(call.get()));
      node = std::move(call);
    } else if (IsOp("[")) {
      Next();
      SLUICE_ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node), at));
    } else {
      Next();
      ExprPtr access = ExprNode(Expr::Kind::kGetAttr, at);
      access->operands.push_back(std::move(node));
      if (Peek().type == TokenType::kInt) {
        access->kind = Expr::Kind::kGetItem;
        ExprPtr index = ExprNode(Expr::Kind::kLiteral, Peek());
        index->literal = Value::Int(std::strtoll(Next().value.c_str(), nullptr, 10));
        access->operands.push_back(std::move(index));
      } else {
        SLUICE_ASSIGN_OR_RETURN(access->name, ExpectName());
      }
      node = std::move(access);
    }
  }
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseSubscript(ExprPtr node, const Token& at) {
  if (IsOp("]")) {  // x[] looks up the empty tuple: always undefined.
    Next();
    ExprPtr item = ExprNode(Expr::Kind::kGetItem, at);
    item->operands.push_back(std::move(node));
    item->operands.push_back(ExprNode(Expr::Kind::kTuple, at));
    return item;
  }
  ExprPtr start;
  if (!IsOp(":")) {
    SLUICE_ASSIGN_OR_RETURN(start, ParseExpression());
  }
  if (!IsOp(":")) {
    SLUICE_RETURN_IF_ERROR(ExpectOp("]"));
    ExprPtr item = ExprNode(Expr::Kind::kGetItem, at);
    item->operands.push_back(std::move(node));
    item->operands.push_back(std::move(start));
    return item;
  }
  ExprPtr slice = ExprNode(Expr::Kind::kSlice, at);
  slice->operands.push_back(std::move(node));
  slice->operands.push_back(std::move(start));
  for (int part = 0; part < 2 && IsOp(":"); ++part) {
    Next();
    ExprPtr bound;
    if (!IsOp("]") && !IsOp(":")) {
      SLUICE_ASSIGN_OR_RETURN(bound, ParseExpression());
    }
    slice->operands.push_back(std::move(bound));
  }
  slice->operands.resize(4);
  SLUICE_RETURN_IF_ERROR(ExpectOp("]"));
  return slice;
}

absl::Status Parser::ParseCallArgs(Expr* call) {
  SLUICE_RETURN_IF_ERROR(ExpectOp("("));
  while (!IsOp(")")) {
    if (Peek().type == TokenType::kName && IsOp("=", 1)) {
      std::string name = Next().value;
      Next();
      SLUICE_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      call->kwargs.emplace_back(std::move(name), std::move(value));
    } else {
      if (!call->kwargs.empty()) {
        return ErrorAt(Peek(), "positional argument after keyword argument");
      }
      SLUICE_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      call->args.push_back(std::move(value));
    }
    if (!IsOp(",")) break;
    Next();
  }
  return ExpectOp(")");
}

absl::StatusOr<ExprPtr> Parser::ParseFilterExpr(ExprPtr node) {
  Guard guard(&depth_);
  while (IsOp("|") || IsName("is") || IsOp("(")) {
    if (!guard.Enter()) return TooDeep();
    const Token& at = Peek();
    if (IsOp("(")) {
      ExprPtr call = ExprNode(Expr::Kind::kCall, at);
      call->operands.push_back(std::move(node));
      SLUICE_RETURN_IF_ERROR(ParseCallArgs(call.get()));
      node = std::move(call);
      continue;
    }
    const bool is_test = IsName("is");
    Next();
    ExprPtr applied = ExprNode(is_test ? Expr::Kind::kTest : Expr::Kind::kFilter, at);
    if (is_test && IsName("not")) {
      Next();
      applied->negated = true;
    }
    SLUICE_ASSIGN_OR_RETURN(applied->name, ExpectName());
    while (IsOp(".")) {  // Dotted names parse; no such filter or test exists.
      Next();
      SLUICE_ASSIGN_OR_RETURN(std::string part, ExpectName());
      applied->name += "." + part;
    }
    applied->operands.push_back(std::move(node));
    if (IsOp("(")) {
      SLUICE_RETURN_IF_ERROR(ParseCallArgs(applied.get()));
    } else if (is_test && IsName("is")) {
      return ErrorAt(Peek(), "cannot chain tests with 'is'");
    } else if (is_test && !IsName("else") && !IsName("or") && !IsName("and") &&
               (Peek().type == TokenType::kName || Peek().type == TokenType::kString ||
                Peek().type == TokenType::kInt || Peek().type == TokenType::kFloat || IsOp("[") ||
                IsOp("{"))) {
      SLUICE_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
      SLUICE_ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
      applied->args.push_back(std::move(arg));
    }
    node = std::move(applied);
  }
  return node;
}

}  // namespace sluice::chat
