// Expression evaluation and calls (globals, bound methods, macros).
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/chat/evaluator.h"

namespace sluice::chat {
namespace {

absl::StatusOr<Value> Negate(const Value& v, bool negate) {
  if (v.is_integral()) {
    if (negate && v.int_value() == INT64_MIN) return absl::InvalidArgumentError("integer overflow");
    return Value::Int(negate ? -v.int_value() : v.int_value());
  }
  if (v.is_number()) return Value::Float(negate ? -v.AsDouble() : v.AsDouble());
  if (v.is_undefined())
    return absl::InvalidArgumentError(absl::StrCat("'", v.str(), "' is undefined"));
  return absl::InvalidArgumentError(
      absl::StrCat("bad operand type for unary ", negate ? "-" : "+", ": '", v.TypeName(), "'"));
}

absl::StatusOr<bool> CompareOnce(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return Equal(a, b);
  if (op == "!=") return !Equal(a, b);
  if (op == "<") return Less(a, b);
  if (op == ">") return Less(b, a);
  if (op == "in" || op == "not in") {
    SLUICE_ASSIGN_OR_RETURN(bool found, Contains(b, a));
    return found == (op == "in");
  }
  SLUICE_ASSIGN_OR_RETURN(bool strictly, op == "<=" ? Less(b, a) : Less(a, b));
  return !strictly;
}

}  // namespace

absl::StatusOr<Value> Evaluator::Eval(const Expr& expr) {
  DepthGuard guard(&depth_);
  absl::StatusOr<Value> result =
      depth_ > limits_.max_depth
          ? absl::InvalidArgumentError("template nesting or recursion too deep")
          : EvalInner(expr);
  if (!result.ok()) return AtPosition(result.status(), expr.line, expr.column);
  if (result->is_string() && expr.kind != Expr::Kind::kLiteral) {
    num_work_bytes_ += static_cast<int64_t>(result->str().size());
    if (num_work_bytes_ > limits_.max_work_bytes) {
      return AtPosition(
          absl::InvalidArgumentError(absl::StrCat("template built more than ",
                                                  limits_.max_work_bytes, " bytes of strings")),
          expr.line, expr.column);
    }
  }
  return result;
}

absl::StatusOr<Value> Evaluator::EvalInner(const Expr& expr) {
  switch (expr.kind) {
    case Expr::Kind::kLiteral:
      return expr.literal;
    case Expr::Kind::kName:
      return Lookup(expr.name);
    case Expr::Kind::kGetAttr: {
      SLUICE_ASSIGN_OR_RETURN(Value obj, Eval(*expr.operands[0]));
      return GetAttribute(obj, expr.name);
    }
    case Expr::Kind::kGetItem: {
      SLUICE_ASSIGN_OR_RETURN(Value obj, Eval(*expr.operands[0]));
      SLUICE_ASSIGN_OR_RETURN(Value key, Eval(*expr.operands[1]));
      return GetItem(obj, key);
    }
    case Expr::Kind::kSlice: {
      SLUICE_ASSIGN_OR_RETURN(Value obj, Eval(*expr.operands[0]));
      Value bounds[3];
      for (int i = 0; i < 3; ++i) {
        if (expr.operands[i + 1] == nullptr) continue;
        SLUICE_ASSIGN_OR_RETURN(bounds[i], Eval(*expr.operands[i + 1]));
      }
      auto bound = [&](int i) { return expr.operands[i + 1] != nullptr ? &bounds[i] : nullptr; };
      return Slice(obj, bound(0), bound(1), bound(2));
    }
    case Expr::Kind::kCall:
      return EvalCall(expr);
    case Expr::Kind::kFilter:
    case Expr::Kind::kTest: {
      SLUICE_ASSIGN_OR_RETURN(Value input, Eval(*expr.operands[0]));
      std::vector<Value> args;
      Kwargs kwargs;
      SLUICE_RETURN_IF_ERROR(EvalArgs(expr, &args, &kwargs));
      if (expr.kind == Expr::Kind::kFilter) {
        return ApplyFilter(expr.name, input, args, kwargs, limits_.sizes);
      }
      if (!kwargs.empty()) return absl::InvalidArgumentError("tests take no keyword arguments");
      SLUICE_ASSIGN_OR_RETURN(bool passed, ApplyTest(expr.name, input, args));
      return Value::Bool(passed != expr.negated);
    }
    case Expr::Kind::kUnary: {
      SLUICE_ASSIGN_OR_RETURN(Value v, Eval(*expr.operands[0]));
      if (expr.name == "not") return Value::Bool(!v.Truthy());
      return Negate(v, expr.name == "-");
    }
    case Expr::Kind::kBinary: {
      SLUICE_ASSIGN_OR_RETURN(Value a, Eval(*expr.operands[0]));
      if (expr.name == "and" && !a.Truthy()) return a;
      if (expr.name == "or" && a.Truthy()) return a;
      SLUICE_ASSIGN_OR_RETURN(Value b, Eval(*expr.operands[1]));
      if (expr.name == "and" || expr.name == "or") return b;
      return BinaryOp(expr.name, a, b, limits_.sizes);
    }
    case Expr::Kind::kCompare:
      return EvalCompare(expr);
    case Expr::Kind::kCondExpr: {
      SLUICE_ASSIGN_OR_RETURN(Value cond, Eval(*expr.operands[1]));
      if (cond.Truthy()) return Eval(*expr.operands[0]);
      if (expr.operands[2] != nullptr) return Eval(*expr.operands[2]);
      return Value::Undefined();
    }
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      std::vector<Value> items;
      for (const ExprPtr& e : expr.operands) {
        SLUICE_ASSIGN_OR_RETURN(Value v, Eval(*e));
        items.push_back(std::move(v));
      }
      return Value::MakeList(std::move(items), expr.kind == Expr::Kind::kTuple);
    }
    case Expr::Kind::kDict: {
      auto dict = std::make_shared<Dict>();
      for (size_t i = 0; i + 1 < expr.operands.size(); i += 2) {
        SLUICE_ASSIGN_OR_RETURN(Value key, Eval(*expr.operands[i]));
        SLUICE_ASSIGN_OR_RETURN(Value value, Eval(*expr.operands[i + 1]));
        if (!key.is_string()) return absl::InvalidArgumentError("dict keys must be strings");
        dict->Set(key.str(), std::move(value));
      }
      return Value::MakeDict(std::move(dict));
    }
  }
  return absl::InternalError("unknown expression kind");
}

absl::StatusOr<Value> Evaluator::EvalCompare(const Expr& expr) {
  SLUICE_ASSIGN_OR_RETURN(Value left, Eval(*expr.operands[0]));
  for (size_t i = 0; i < expr.compare_ops.size(); ++i) {
    SLUICE_ASSIGN_OR_RETURN(Value right, Eval(*expr.operands[i + 1]));
    SLUICE_ASSIGN_OR_RETURN(bool holds, CompareOnce(expr.compare_ops[i], left, right));
    if (!holds) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

absl::Status Evaluator::EvalArgs(const Expr& expr, std::vector<Value>* args, Kwargs* kwargs) {
  for (const ExprPtr& e : expr.args) {
    SLUICE_ASSIGN_OR_RETURN(Value v, Eval(*e));
    args->push_back(std::move(v));
  }
  for (const auto& [name, e] : expr.kwargs) {
    SLUICE_ASSIGN_OR_RETURN(Value v, Eval(*e));
    kwargs->emplace_back(name, std::move(v));
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> Evaluator::EvalCall(const Expr& expr) {
  SLUICE_ASSIGN_OR_RETURN(Value callee, Eval(*expr.operands[0]));
  std::vector<Value> args;
  Kwargs kwargs;
  SLUICE_RETURN_IF_ERROR(EvalArgs(expr, &args, &kwargs));
  if (callee.is_undefined()) {
    return absl::InvalidArgumentError(absl::StrCat("'", callee.str(), "' is undefined"));
  }
  if (!callee.is_callable()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", callee.TypeName(), "' object is not callable"));
  }
  const Callable& c = callee.callable();
  switch (c.kind) {
    case Callable::Kind::kGlobal:
      return CallGlobal(c.name, args, kwargs, limits_.sizes);
    case Callable::Kind::kMethod:
      return CallMethod(c.receiver, c.name, args, kwargs, limits_.sizes);
    case Callable::Kind::kMacro:
      return CallMacro(*c.macro, args, kwargs);
  }
  return absl::InternalError("unknown callable kind");
}

absl::StatusOr<Value> Evaluator::CallMacro(const Stmt& macro, const std::vector<Value>& args,
                                           const Kwargs& kwargs) {
  std::vector<std::string_view> names;
  for (const auto& [name, unused] : macro.params) names.push_back(name);
  SLUICE_ASSIGN_OR_RETURN(std::vector<Value> bound, BindArgs(macro.name, names, args, kwargs));
  frames_.emplace_back();
  frames_.back().is_macro = true;
  absl::Status status;
  for (size_t i = 0; i < bound.size() && status.ok(); ++i) {
    if (bound[i].is_undefined() && macro.params[i].second != nullptr) {
      absl::StatusOr<Value> fallback = Eval(*macro.params[i].second);
      if (!fallback.ok()) {
        status = fallback.status();
        break;
      }
      bound[i] = *std::move(fallback);
    }
    frames_.back().vars[macro.params[i].first] = std::move(bound[i]);
  }
  std::string out;
  if (status.ok()) status = Exec(macro.body, &out);
  frames_.pop_back();
  flow_ = Flow::kNormal;
  SLUICE_RETURN_IF_ERROR(status);
  return Value::String(std::move(out));
}

}  // namespace sluice::chat
