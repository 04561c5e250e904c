// Splits a template into text and tag tokens, applying jinja2's whitespace control as
// transformers configures it (trim_blocks, lstrip_blocks, no trailing newline kept).
#ifndef SLUICE_SERVER_CHAT_LEXER_H_
#define SLUICE_SERVER_CHAT_LEXER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::chat {

enum class TokenType {
  kText,        // Literal output; value is the text after whitespace control.
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,        // Identifier or keyword.
  kString,      // String literal; value is unescaped.
  kInt,         // Integer literal; value is the digits.
  kFloat,       // Float literal; value is the literal text.
  kOperator,    // Punctuation: + - * / // ** % ~ == != < <= > >= = . , : | ( ) [ ] { }
  kEof,
};

struct Token {
  TokenType type;
  std::string value;
  int line;    // 1-based.
  int column;  // 1-based, in bytes.
};

// Tokenizes `source`. Errors (unterminated tags, strings or comments, unbalanced
// brackets, unexpected characters) are InvalidArgument naming line and column. The last
// token is kEof.
absl::StatusOr<std::vector<Token>> Lex(std::string_view source);

}  // namespace sluice::chat

#endif  // SLUICE_SERVER_CHAT_LEXER_H_
