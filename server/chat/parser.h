// Parses chat-template tokens into statements.
#ifndef SLUICE_SERVER_CHAT_PARSER_H_
#define SLUICE_SERVER_CHAT_PARSER_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "server/chat/ast.h"

namespace sluice::chat {

// Parses a whole template. Syntax errors are InvalidArgument naming line and column.
// Constructs or expressions nested deeper than 128 levels are refused.
absl::StatusOr<StmtList> ParseTemplate(std::string_view source);

}  // namespace sluice::chat

#endif  // SLUICE_SERVER_CHAT_PARSER_H_
