// Parse-time check of filter and test names, as jinja2's compiler makes it.
#ifndef SLUICE_SERVER_CHAT_NAME_CHECK_H_
#define SLUICE_SERVER_CHAT_NAME_CHECK_H_

#include "absl/status/status.h"
#include "server/chat/ast.h"

namespace sluice::chat {

// InvalidArgument naming line and column for the first unknown filter or test, except
// inside an if statement or an inline if, where jinja2 defers the error to the moment
// the filter or test runs (so that templates may guard optional ones).
absl::Status CheckFilterAndTestNames(const StmtList& body);

}  // namespace sluice::chat

#endif  // SLUICE_SERVER_CHAT_NAME_CHECK_H_
