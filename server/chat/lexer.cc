#include "server/chat/lexer.h"

#include <cctype>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/chat/text_util.h"

namespace sluice::chat {
namespace {

// jinja2 turns \r\n and \r into \n and drops one trailing newline (keep_trailing_newline
// is off).
std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f'; }
// NOTE: like Python, names may hold non-ASCII letters; any non-ASCII byte is taken as one.
bool IsNameStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool IsNameChar(char c) { return IsNameStart(c) || std::isdigit(static_cast<unsigned char>(c)); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Python's unicode-escape decoding of a string literal's body; false for a truncated
// \x, \u or \U escape.
bool Unescape(std::string_view body, std::string* decoded) {
  std::string& out = *decoded;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 == body.size()) {
      out.push_back(body[i]);
      continue;
    }
    const char c = body[++i];
    auto hex = [&](size_t digits) -> bool {
      char32_t cp = 0;
      for (size_t k = 1; k <= digits; ++k) {
        const int d = i + k < body.size() ? HexDigit(body[i + k]) : -1;
        if (d < 0) return false;
        cp = cp * 16 + static_cast<char32_t>(d);
      }
      AppendUtf8(cp, &out);
      i += digits;
      return true;
    };
    if (c >= '0' && c <= '7') {  // Up to three octal digits.
      char32_t cp = 0;
      size_t k = 0;
      for (; k < 3 && i + k < body.size() && body[i + k] >= '0' && body[i + k] <= '7'; ++k) {
        cp = cp * 8 + static_cast<char32_t>(body[i + k] - '0');
      }
      AppendUtf8(cp, &out);
      i += k - 1;
      continue;
    }
    switch (c) {
      case 'n':
        out.push_back('\n');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case '\\':
      case '\'':
      case '"':
        out.push_back(c);
        break;
      case '\n':
        break;
      case 'x':
        if (!hex(2)) return false;
        break;
      case 'u':
        if (!hex(4)) return false;
        break;
      case 'U':
        if (!hex(8)) return false;
        break;
      default:
        out.push_back('\\');
        out.push_back(c);
    }
  }
  return true;
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      size_t tag = src_.find('{', pos);
      while (tag != std::string::npos && tag + 1 < src_.size() && src_[tag + 1] != '{' &&
             src_[tag + 1] != '%' && src_[tag + 1] != '#') {
        tag = src_.find('{', tag + 1);
      }
      if (tag == std::string::npos || tag + 1 >= src_.size()) {
        Emit(TokenType::kText, src_.substr(pos), pos);
        break;
      }
      const char kind = src_[tag + 1];
      size_t inner = tag + 2;
      const char sign =
          inner < src_.size() && (src_[inner] == '-' || src_[inner] == '+') ? src_[inner++] : '\0';
      std::string text = src_.substr(pos, tag - pos);
      if (sign == '-') {
        text = PyStrip(text, nullptr, StripSide::kRight);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: drop spaces between the line start and a block or comment tag.
        const size_t line_start = text.rfind('\n') + 1;  // npos + 1 == 0.
        if ((line_start > 0 || line_starting) && line_start < text.size() &&
            PyStrip(std::string_view(text).substr(line_start), nullptr, StripSide::kRight)
                .empty()) {
          text.resize(line_start);
        }
      }
      Emit(TokenType::kText, std::move(text), pos);
      absl::StatusOr<size_t> end = kind == '#' ? SkipComment(tag, inner) : LexTag(kind, tag, inner);
      if (!end.ok()) return end.status();
      pos = *end;
      line_starting = pos > 0 && src_[pos - 1] == '\n';
    }
    Emit(TokenType::kEof, "", src_.size());
    return std::move(tokens_);
  }

 private:
  void Emit(TokenType type, std::string value, size_t offset) {
    if (type == TokenType::kText && value.empty()) return;
    const auto [line, column] = Position(offset);
    tokens_.push_back(Token{type, std::move(value), line, column});
  }

  std::pair<int, int> Position(size_t offset) const {
    size_t lo = 0;
    size_t hi = line_starts_.size();
    while (hi - lo > 1) {
      const size_t mid = (lo + hi) / 2;
      (line_starts_[mid] <= offset ? lo : hi) = mid;
    }
    return {static_cast<int>(lo) + 1, static_cast<int>(offset - line_starts_[lo]) + 1};
  }

  absl::Status Error(size_t offset, std::string_view message) const {
    const auto [line, column] = Position(offset);
    return absl::InvalidArgumentError(absl::StrCat(
        "template syntax error at line ", line, ", column ", column, ": ", std::string(message)));
  }

  // Position after a block or comment end, with trim_blocks or '-' whitespace removal.
  size_t AfterTagEnd(size_t end_pos, char sign, bool is_block) const {
    size_t pos = end_pos;
    if (sign == '-') {
      while (pos < src_.size() && IsSpace(src_[pos])) ++pos;
    } else if (sign != '+' && is_block && pos < src_.size() && src_[pos] == '\n') {
      ++pos;
    }
    return pos;
  }

  absl::StatusOr<size_t> SkipComment(size_t tag, size_t inner) const {
    const size_t close = src_.find("#}", inner);
    if (close == std::string::npos) return Error(tag, "missing end of comment tag");
    const char sign =
        close > inner && (src_[close - 1] == '-' || src_[close - 1] == '+') ? src_[close - 1] : 0;
    return AfterTagEnd(close + 2, sign, /*is_block=*/true);
  }

  absl::StatusOr<size_t> LexTag(char kind, size_t tag, size_t pos) {
    const bool is_block = kind == '%';
    Emit(is_block ? TokenType::kBlockBegin : TokenType::kVarBegin, "", tag);
    std::vector<char> closers;
    while (true) {
      while (pos < src_.size() && IsSpace(src_[pos])) ++pos;
      if (pos >= src_.size()) {
        return Error(
            tag, is_block ? "missing end of block tag '%}'" : "missing end of variable tag '}}'");
      }
      if (closers.empty()) {
        const std::string_view rest = std::string_view(src_).substr(pos);
        const std::string_view close = is_block ? "%}" : "}}";
        char sign = 0;
        size_t skip = 0;
        if (rest.substr(0, 2) == close) {
          skip = 2;
        } else if (rest.size() >= 3 && rest.substr(1, 2) == close &&
                   (rest[0] == '-' || (is_block && rest[0] == '+'))) {
          sign = rest[0];
          skip = 3;
        }
        if (skip > 0) {
          Emit(is_block ? TokenType::kBlockEnd : TokenType::kVarEnd, "", pos);
          return AfterTagEnd(pos + skip, sign, is_block);
        }
      }
      absl::Status s = LexExprToken(&pos, &closers);
      if (!s.ok()) return s;
    }
  }

  absl::Status LexExprToken(size_t* pos_ptr, std::vector<char>* closers) {
    size_t& pos = *pos_ptr;
    const size_t start = pos;
    const char c = src_[pos];
    if (IsNameStart(c)) {
      while (pos < src_.size() && IsNameChar(src_[pos])) ++pos;
      Emit(TokenType::kName, src_.substr(start, pos - start), start);
      return absl::OkStatus();
    }
    if (IsDigit(c)) return LexNumber(pos_ptr);
    if (c == '\'' || c == '"') {
      ++pos;
      while (pos < src_.size() && src_[pos] != c) pos += src_[pos] == '\\' ? 2 : 1;
      if (pos >= src_.size()) return Error(start, "unterminated string literal");
      ++pos;
      std::string value;
      if (!Unescape(std::string_view(src_).substr(start + 1, pos - start - 2), &value)) {
        return Error(start, "truncated \\x, \\u or \\U escape in string literal");
      }
      Emit(TokenType::kString, std::move(value), start);
      return absl::OkStatus();
    }
    static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", "<=", ">="};
    for (std::string_view op : kTwoChar) {
      if (std::string_view(src_).substr(pos, 2) == op) {
        pos += 2;
        Emit(TokenType::kOperator, std::string(op), start);
        return absl::OkStatus();
      }
    }
    if (std::string_view("+-*/%~<>=.,:|()[]{};").find(c) == std::string_view::npos) {
      return Error(start, absl::StrCat("unexpected character '", std::string(1, c), "'"));
    }
    if (c == '(' || c == '[' || c == '{') {
      closers->push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (closers->empty())
        return Error(start, absl::StrCat("unexpected '", std::string(1, c), "'"));
      if (closers->back() != c) {
        return Error(start, absl::StrCat("unexpected '", std::string(1, c), "', expected '",
                                         std::string(1, closers->back()), "'"));
      }
      closers->pop_back();
    }
    ++pos;
    Emit(TokenType::kOperator, std::string(1, c), start);
    return absl::OkStatus();
  }

  absl::Status LexNumber(size_t* pos_ptr) {
    size_t& pos = *pos_ptr;
    const size_t start = pos;
    auto digits = [&] {
      while (pos < src_.size() && (IsDigit(src_[pos]) || src_[pos] == '_')) ++pos;
    };
    digits();
    bool is_float = false;
    if (pos + 1 < src_.size() && src_[pos] == '.' && IsDigit(src_[pos + 1])) {
      is_float = true;
      ++pos;
      digits();
    }
    if (pos < src_.size() && (src_[pos] == 'e' || src_[pos] == 'E')) {
      size_t p = pos + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && IsDigit(src_[p])) {
        is_float = true;
        pos = p;
        digits();
      }
    }
    std::string text;
    for (size_t i = start; i < pos; ++i) {
      if (src_[i] != '_') text.push_back(src_[i]);
    }
    Emit(is_float ? TokenType::kFloat : TokenType::kInt, std::move(text), start);
    return absl::OkStatus();
  }

  const std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Lex(std::string_view source) {
  return Lexer(NormalizeNewlines(source)).Run();
}

}  // namespace sluice::chat
