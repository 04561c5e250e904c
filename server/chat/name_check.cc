#include "server/chat/name_check.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/chat/builtins.h"

namespace sluice::chat {
namespace {

// `soft`: inside an if statement or inline if of the current frame (jinja2's soft frame);
// loop bodies, loop filters, block sets and macros start a new frame.
absl::Status CheckExpr(const Expr* expr, bool soft) {
  if (expr == nullptr) return absl::OkStatus();
  const bool is_filter = expr->kind == Expr::Kind::kFilter;
  if (!soft && (is_filter || expr->kind == Expr::Kind::kTest) &&
      !(is_filter ? IsKnownFilter(expr->name) : IsKnownTest(expr->name))) {
    return absl::InvalidArgumentError(
        absl::StrCat("template syntax error at line ", expr->line, ", column ", expr->column,
                     ": no ", is_filter ? "filter" : "test", " named '", expr->name, "'"));
  }
  const bool inner_soft = soft || expr->kind == Expr::Kind::kCondExpr;
  for (const ExprPtr& e : expr->operands) SLUICE_RETURN_IF_ERROR(CheckExpr(e.get(), inner_soft));
  for (const ExprPtr& e : expr->args) SLUICE_RETURN_IF_ERROR(CheckExpr(e.get(), inner_soft));
  for (const auto& [name, e] : expr->kwargs) {
    SLUICE_RETURN_IF_ERROR(CheckExpr(e.get(), inner_soft));
  }
  return absl::OkStatus();
}

absl::Status CheckBody(const StmtList& body, bool soft) {
  for (const StmtPtr& stmt : body) {
    switch (stmt->kind) {
      case Stmt::Kind::kIf:
        for (const auto& [cond, branch] : stmt->branches) {
          SLUICE_RETURN_IF_ERROR(CheckExpr(cond.get(), true));
          SLUICE_RETURN_IF_ERROR(CheckBody(branch, true));
        }
        SLUICE_RETURN_IF_ERROR(CheckBody(stmt->else_body, true));
        break;
      case Stmt::Kind::kFor:
        SLUICE_RETURN_IF_ERROR(CheckExpr(stmt->expr.get(), soft));
        SLUICE_RETURN_IF_ERROR(CheckExpr(stmt->filter.get(), false));
        SLUICE_RETURN_IF_ERROR(CheckBody(stmt->body, false));
        SLUICE_RETURN_IF_ERROR(CheckBody(stmt->else_body, soft));
        break;
      case Stmt::Kind::kMacro:
        for (const auto& [name, fallback] : stmt->params) {
          SLUICE_RETURN_IF_ERROR(CheckExpr(fallback.get(), false));
        }
        SLUICE_RETURN_IF_ERROR(CheckBody(stmt->body, false));
        break;
      case Stmt::Kind::kSetBlock:
        SLUICE_RETURN_IF_ERROR(CheckBody(stmt->body, false));
        break;
      case Stmt::Kind::kScope:
        SLUICE_RETURN_IF_ERROR(CheckBody(stmt->body, soft));
        break;
      default:
        SLUICE_RETURN_IF_ERROR(CheckExpr(stmt->expr.get(), soft));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckFilterAndTestNames(const StmtList& body) { return CheckBody(body, false); }

}  // namespace sluice::chat
