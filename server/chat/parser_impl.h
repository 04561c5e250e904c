// Internal to the parser: the recursive-descent Parser shared by parser_stmt.cc and
// parser_expr.cc.
#ifndef SLUICE_SERVER_CHAT_PARSER_IMPL_H_
#define SLUICE_SERVER_CHAT_PARSER_IMPL_H_

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "server/chat/ast.h"
#include "server/chat/lexer.h"

namespace sluice::chat {

constexpr int kMaxNesting = 128;

// Names that end a block; ParseBody stops at a `{% name` whose name is in this set.
using EndTags = std::vector<std::string_view>;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  // Parses the whole token stream.
  absl::StatusOr<StmtList> ParseAll();

 private:
  // Nesting accounting: Enter() on every level of recursion or chained operator;
  // depth_ is restored when the returned guard goes out of scope.
  class Guard {
   public:
    explicit Guard(int* depth) : depth_(depth) {}
    ~Guard() { *depth_ -= count_; }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    bool Enter() {
      ++count_;
      return ++*depth_ <= kMaxNesting;
    }

   private:
    int* depth_;
    int count_ = 0;
  };

  const Token& Peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool IsOp(std::string_view op, size_t ahead = 0) const {
    return Peek(ahead).type == TokenType::kOperator && Peek(ahead).value == op;
  }
  bool IsName(std::string_view name, size_t ahead = 0) const {
    return Peek(ahead).type == TokenType::kName && Peek(ahead).value == name;
  }

  absl::Status ErrorAt(const Token& t, std::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat("template syntax error at line ", t.line,
                                                   ", column ", t.column, ": ",
                                                   std::string(message)));
  }
  static std::string Describe(const Token& t) {
    switch (t.type) {
      case TokenType::kEof:
        return "end of template";
      case TokenType::kBlockEnd:
        return "end of statement block";
      case TokenType::kVarEnd:
        return "end of print statement";
      case TokenType::kString:
        return "string literal";
      default:
        return absl::StrCat("'", t.value, "'");
    }
  }
  absl::Status Unexpected(std::string_view expected) const {
    return ErrorAt(Peek(),
                   absl::StrCat("expected ", std::string(expected), ", got ", Describe(Peek())));
  }
  absl::Status ExpectOp(std::string_view op) {
    if (!IsOp(op)) return Unexpected(absl::StrCat("'", std::string(op), "'"));
    Next();
    return absl::OkStatus();
  }
  absl::Status ExpectBlockEnd() {
    if (Peek().type != TokenType::kBlockEnd) return Unexpected("end of statement block");
    Next();
    return absl::OkStatus();
  }
  // The end of a tag that opens a body, where jinja2 accepts a colon as Python does.
  absl::Status ExpectBodyStart() {
    if (IsOp(":")) Next();
    return ExpectBlockEnd();
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Peek().type != TokenType::kName) return Unexpected("a name");
    return Next().value;
  }
  absl::Status TooDeep() const { return ErrorAt(Peek(), "template nested too deeply"); }

  template <typename T>
  static std::unique_ptr<T> Node(const Token& at) {
    auto node = std::make_unique<T>();
    node->line = at.line;
    node->column = at.column;
    return node;
  }
  static ExprPtr ExprNode(Expr::Kind kind, const Token& at) {
    ExprPtr e = Node<Expr>(at);
    e->kind = kind;
    return e;
  }

  // Statements (parser_stmt.cc).
  absl::StatusOr<StmtList> ParseBody(const EndTags& end_tags, std::string_view* found);
  absl::StatusOr<StmtPtr> ParseStatement(const Token& begin);
  absl::StatusOr<StmtPtr> ParseIf(const Token& begin);
  absl::StatusOr<StmtPtr> ParseFor(const Token& begin);
  absl::StatusOr<StmtPtr> ParseSet(const Token& begin);
  absl::StatusOr<StmtPtr> ParseMacro(const Token& begin);
  absl::StatusOr<std::vector<std::string>> ParseTargetNames();

  // Expressions (parser_expr.cc), lowest precedence first, as jinja2 orders them.
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr);
  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr = true);
  absl::StatusOr<ExprPtr> ParseOr();
  absl::StatusOr<ExprPtr> ParseAnd();
  // `operand (op operand)*`, folded to the left: the shape of `or` and `and`.
  absl::StatusOr<ExprPtr> ParseLeftAssociative(const char* op,
                                               absl::StatusOr<ExprPtr> (Parser::*operand)());
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseCompare();
  absl::StatusOr<ExprPtr> ParseBinary(int level);
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node, const Token& at);
  absl::Status ParseCallArgs(Expr* call);

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace sluice::chat

#endif  // SLUICE_SERVER_CHAT_PARSER_IMPL_H_
