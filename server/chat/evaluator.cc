#include "server/chat/evaluator.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace sluice::chat {
namespace {

constexpr std::string_view kErrorPrefix = "chat template error at line ";

Value MakeLoop(const std::vector<Value>& items, size_t i) {
  const auto n = static_cast<int64_t>(items.size());
  const auto index = static_cast<int64_t>(i);
  auto loop = std::make_shared<Dict>();
  loop->Set("index0", Value::Int(index));
  loop->Set("index", Value::Int(index + 1));
  loop->Set("revindex0", Value::Int(n - index - 1));
  loop->Set("revindex", Value::Int(n - index));
  loop->Set("first", Value::Bool(i == 0));
  loop->Set("last", Value::Bool(index == n - 1));
  loop->Set("length", Value::Int(n));
  loop->Set("depth", Value::Int(1));
  loop->Set("depth0", Value::Int(0));
  if (i > 0) loop->Set("previtem", items[i - 1]);
  if (index + 1 < n) loop->Set("nextitem", items[i + 1]);
  return Value::MakeDict(std::move(loop));
}

}  // namespace

absl::StatusOr<std::string> Evaluator::Render(const StmtList& body) {
  frames_.clear();
  frames_.emplace_back();
  std::string out;
  SLUICE_RETURN_IF_ERROR(Exec(body, &out));
  return out;
}

absl::Status Evaluator::AtPosition(const absl::Status& status, int line, int column) const {
  if (status.ok() || std::string(status.message()).rfind(kErrorPrefix, 0) == 0) {
    return status;
  }
  return absl::InvalidArgumentError(absl::StrCat(std::string(kErrorPrefix), line, ", column ",
                                                 column, ": ", std::string(status.message())));
}

absl::Status Evaluator::Append(std::string_view text, std::string* out) const {
  if (out->size() + text.size() > limits_.sizes.max_string_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendered output exceeds ", limits_.sizes.max_string_bytes, " bytes"));
  }
  out->append(text);
  return absl::OkStatus();
}

absl::Status Evaluator::Exec(const StmtList& body, std::string* out) {
  for (const StmtPtr& stmt : body) {
    SLUICE_RETURN_IF_ERROR(ExecStmt(*stmt, out));
    if (flow_ != Flow::kNormal) break;
  }
  return absl::OkStatus();
}

absl::Status Evaluator::ExecStmt(const Stmt& stmt, std::string* out) {
  DepthGuard guard(&depth_);
  if (depth_ > limits_.max_depth) {
    return AtPosition(absl::InvalidArgumentError("template nesting or recursion too deep"),
                      stmt.line, stmt.column);
  }
  switch (stmt.kind) {
    case Stmt::Kind::kText:
      return AtPosition(Append(stmt.text, out), stmt.line, stmt.column);
    case Stmt::Kind::kOutput: {
      SLUICE_ASSIGN_OR_RETURN(Value value, Eval(*stmt.expr));
      return AtPosition(Append(value.ToString(), out), stmt.line, stmt.column);
    }
    case Stmt::Kind::kIf:
      for (const auto& [cond, body] : stmt.branches) {
        SLUICE_ASSIGN_OR_RETURN(Value test, Eval(*cond));
        if (test.Truthy()) return Exec(body, out);
      }
      return Exec(stmt.else_body, out);
    case Stmt::Kind::kFor:
      return ExecFor(stmt, out);
    case Stmt::Kind::kSet: {
      SLUICE_ASSIGN_OR_RETURN(Value value, Eval(*stmt.expr));
      return AtPosition(ExecSet(stmt, std::move(value)), stmt.line, stmt.column);
    }
    case Stmt::Kind::kSetBlock: {
      std::string captured;
      SLUICE_RETURN_IF_ERROR(Exec(stmt.body, &captured));
      frames_.back().vars[stmt.targets[0]] = Value::String(std::move(captured));
      return absl::OkStatus();
    }
    case Stmt::Kind::kMacro: {
      auto callable = std::make_shared<Callable>();
      callable->kind = Callable::Kind::kMacro;
      callable->name = stmt.name;
      callable->macro = &stmt;
      frames_.back().vars[stmt.name] = Value::MakeCallable(std::move(callable));
      return absl::OkStatus();
    }
    case Stmt::Kind::kBreak:
      flow_ = Flow::kBreak;
      return absl::OkStatus();
    case Stmt::Kind::kContinue:
      flow_ = Flow::kContinue;
      return absl::OkStatus();
    case Stmt::Kind::kScope:
      return Exec(stmt.body, out);
  }
  return absl::OkStatus();
}

absl::Status Evaluator::ExecFor(const Stmt& stmt, std::string* out) {
  SLUICE_ASSIGN_OR_RETURN(Value iterable, Eval(*stmt.expr));
  absl::StatusOr<std::vector<Value>> listed = Iterate(iterable);
  if (!listed.ok()) return AtPosition(listed.status(), stmt.expr->line, stmt.expr->column);
  std::vector<Value> items = *std::move(listed);
  if (stmt.filter != nullptr) {
    std::vector<Value> kept;
    for (Value& item : items) {
      frames_.emplace_back();
      absl::Status bound = Bind(stmt.targets, item);
      absl::StatusOr<Value> keep = bound.ok() ? Eval(*stmt.filter) : bound;
      frames_.pop_back();
      if (!keep.ok()) return AtPosition(keep.status(), stmt.line, stmt.column);
      if (keep->Truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) return Exec(stmt.else_body, out);
  for (size_t i = 0; i < items.size(); ++i) {
    if (++num_iterations_ > limits_.max_loop_iterations) {
      return AtPosition(absl::InvalidArgumentError(absl::StrCat(
                            "more than ", limits_.max_loop_iterations, " loop iterations")),
                        stmt.line, stmt.column);
    }
    frames_.emplace_back();
    absl::Status status = Bind(stmt.targets, items[i]);
    if (status.ok()) {
      frames_.back().vars["loop"] = MakeLoop(items, i);
      status = Exec(stmt.body, out);
    } else {
      status = AtPosition(status, stmt.line, stmt.column);
    }
    frames_.pop_back();
    SLUICE_RETURN_IF_ERROR(status);
    const Flow flow = std::exchange(flow_, Flow::kNormal);
    if (flow == Flow::kBreak) break;
  }
  return absl::OkStatus();
}

absl::Status Evaluator::ExecSet(const Stmt& stmt, Value value) {
  if (stmt.attr.empty()) return Bind(stmt.targets, value);
  const Value target = Lookup(stmt.targets[0]);
  if (!target.is_dict() || !target.dict().is_namespace) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot assign attribute on non-namespace object '", stmt.targets[0], "'"));
  }
  SLUICE_RETURN_IF_ERROR(CheckNamespaceAttribute(value));
  target.dict().Set(stmt.attr, std::move(value));
  return absl::OkStatus();
}

absl::Status Evaluator::Bind(const std::vector<std::string>& targets, const Value& value) {
  if (targets.size() == 1) {
    frames_.back().vars[targets[0]] = value;
    return absl::OkStatus();
  }
  if (!value.is_list()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot unpack non-sequence ", value.TypeName()));
  }
  const auto& items = value.list().items;
  if (items.size() != targets.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot unpack ", items.size(), " values into ", targets.size(), " names"));
  }
  for (size_t i = 0; i < targets.size(); ++i) frames_.back().vars[targets[i]] = items[i];
  return absl::OkStatus();
}

Value Evaluator::Lookup(const std::string& name) const {
  for (size_t i = frames_.size(); i-- > 0;) {
    const auto it = frames_[i].vars.find(name);
    if (it != frames_[i].vars.end()) return it->second;
    if (frames_[i].is_macro && i > 1) i = 1;  // Continue with the top-level frame.
  }
  if (const Value* v = globals_.Find(name); v != nullptr) return *v;
  if (IsGlobalFunction(name)) {
    auto callable = std::make_shared<Callable>();
    callable->name = name;
    return Value::MakeCallable(std::move(callable));
  }
  return Value::Undefined(name);
}

}  // namespace sluice::chat
