// Bounds on JSON from clients, checked on the raw text before it is parsed: a document
// nested deeper than the limit is refused before anything (a parser, a serialiser, a
// template renderer) can recurse on it. The engine and the gateway use the same limit.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace sluice {

inline constexpr int kMaxJsonDepth = 128;

// OK when no array or object in `text` is nested deeper than `max_depth` levels (the
// outermost value is level 1); otherwise InvalidArgument naming the limit. It reads
// strings (and their escapes) only to skip them and validates nothing else: a malformed
// document passes here and is refused by the parser. Linear in the text, no recursion.
absl::Status CheckJsonDepth(std::string_view text, int max_depth = kMaxJsonDepth);

}  // namespace sluice
