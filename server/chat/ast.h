// The parsed form of a chat template. Immutable once parsed, so one tree may be rendered
// by several threads at once.
#ifndef SLUICE_SERVER_CHAT_AST_H_
#define SLUICE_SERVER_CHAT_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/chat/value.h"

namespace sluice::chat {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using StmtList = std::vector<StmtPtr>;

struct Expr {
  enum class Kind {
    kLiteral,   // literal
    kName,      // name
    kGetAttr,   // operands[0].name
    kGetItem,   // operands[0][operands[1]]
    kSlice,     // operands[0][operands[1]:operands[2]:operands[3]]; bounds may be null
    kCall,      // operands[0](args..., kwargs...)
    kFilter,    // operands[0] | name(args..., kwargs...)
    kTest,      // operands[0] is [not] name(args...); `negated` for "is not"
    kUnary,     // name is "-", "+" or "not"; operands[0]
    kBinary,    // name is + - * / // % ** ~ and or; operands[0], operands[1]
    kCompare,   // operands[0] compare_ops[i] operands[i + 1] ... (chained like Python)
    kCondExpr,  // operands[0] if operands[1] else operands[2] (else may be null)
    kList,      // [operands...]
    kTuple,     // (operands...)
    kDict,      // {operands[0]: operands[1], ...}
  };

  Kind kind = Kind::kLiteral;
  int line = 0;
  int column = 0;
  Value literal;
  std::string name;
  std::vector<std::string> compare_ops;  // ==, !=, <, <=, >, >=, in, not in
  std::vector<ExprPtr> operands;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;
};

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // branches (condition, body) in order, then else_body
    kFor,       // for targets in expr [if filter]: body, else_body
    kSet,       // set targets = expr, or set targets[0].attr = expr when attr is set
    kSetBlock,  // set targets[0] %} body {% endset
    kMacro,     // macro name(params) body
    kBreak,
    kContinue,
    kScope,  // body rendered as is ({% generation %})
  };

  Kind kind = Kind::kText;
  int line = 0;
  int column = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;
  std::vector<std::pair<ExprPtr, StmtList>> branches;
  StmtList body;
  StmtList else_body;
  std::vector<std::string> targets;
  std::string attr;
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // Default may be null.
};

}  // namespace sluice::chat

#endif  // SLUICE_SERVER_CHAT_AST_H_
