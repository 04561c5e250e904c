// absl::Status propagation helpers used across engine/ and server/.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define SLUICE_RETURN_IF_ERROR(expr)       \
  do {                                     \
    ::absl::Status _sluice_s = (expr);     \
    if (!_sluice_s.ok()) return _sluice_s; \
  } while (0)

#define SLUICE_CONCAT_INNER(a, b) a##b
#define SLUICE_CONCAT(a, b) SLUICE_CONCAT_INNER(a, b)

// Evaluates `rexpr` (an absl::StatusOr<T>); returns its status on error, else moves the
// value into `lhs` (which may be a declaration such as `auto x`).
#define SLUICE_ASSIGN_OR_RETURN(lhs, rexpr) \
  SLUICE_ASSIGN_OR_RETURN_IMPL(SLUICE_CONCAT(_sluice_or_, __LINE__), lhs, rexpr)
#define SLUICE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                 \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(*tmp)
