// Renders a parsed template against a context of variables.
#ifndef SLUICE_SERVER_CHAT_EVALUATOR_H_
#define SLUICE_SERVER_CHAT_EVALUATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/chat/ast.h"
#include "server/chat/builtins.h"
#include "server/chat/value.h"

namespace sluice::chat {

// Counts one level of nesting for as long as it lives.
class DepthGuard {
 public:
  explicit DepthGuard(int* depth) : depth_(depth) { ++*depth_; }
  ~DepthGuard() { --*depth_; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;

 private:
  int* depth_;
};

struct EvalLimits {
  SizeLimits sizes;                         // Output bytes cap: sizes.max_string_bytes.
  int64_t max_loop_iterations = 1'000'000;  // Over all loops of one render.
  int max_depth = 512;                      // Nested evaluation, macro calls included.
  // Bytes of strings computed by expressions over one render: bounds the time a
  // template can spend building and discarding large strings.
  int64_t max_work_bytes = int64_t{256} << 20;
};

// One render. Not thread-safe; make one per Render call.
class Evaluator {
 public:
  // `globals` are the render variables; they must outlive the Evaluator.
  Evaluator(const EvalLimits& limits, const Dict& globals) : limits_(limits), globals_(globals) {}

  // Renders `body`. Errors are InvalidArgument naming the template line and column.
  absl::StatusOr<std::string> Render(const StmtList& body);

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  struct Frame {
    absl::flat_hash_map<std::string, Value> vars;
    bool is_macro = false;  // Lookups skip from here to the template's top-level frame.
  };

  absl::Status Exec(const StmtList& body, std::string* out);
  absl::Status ExecStmt(const Stmt& stmt, std::string* out);
  absl::Status ExecFor(const Stmt& stmt, std::string* out);
  absl::Status ExecSet(const Stmt& stmt, Value value);
  absl::Status Append(std::string_view text, std::string* out) const;

  absl::StatusOr<Value> Eval(const Expr& expr);
  absl::StatusOr<Value> EvalInner(const Expr& expr);
  absl::StatusOr<Value> EvalCompare(const Expr& expr);
  absl::StatusOr<Value> EvalCall(const Expr& expr);
  absl::Status EvalArgs(const Expr& expr, std::vector<Value>* args, Kwargs* kwargs);
  absl::StatusOr<Value> CallMacro(const Stmt& macro, const std::vector<Value>& args,
                                  const Kwargs& kwargs);

  Value Lookup(const std::string& name) const;
  absl::Status Bind(const std::vector<std::string>& targets, const Value& value);
  absl::Status AtPosition(const absl::Status& status, int line, int column) const;

  const EvalLimits limits_;
  const Dict& globals_;
  std::vector<Frame> frames_;
  Flow flow_ = Flow::kNormal;
  int depth_ = 0;
  int64_t num_iterations_ = 0;
  int64_t num_work_bytes_ = 0;
};

}  // namespace sluice::chat

#endif  // SLUICE_SERVER_CHAT_EVALUATOR_H_
