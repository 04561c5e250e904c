// Edits of a JSON object's text that keep everything else as it was: the members' order,
// their bytes (numbers, escapes, spacing inside values) and any member the edit does not
// name. The gateway rewrites request bodies and stream chunks this way, so that what the
// engine (and a chat template) sees is what the client sent, but for the edit.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::gateway {

// One top-level member: its key (escapes decoded) and where it lies in the text.
struct MemberSpan {
  std::string key;
  size_t begin = 0;        // the key's opening quote
  size_t value_begin = 0;  // the value's first byte
  size_t end = 0;          // one past the value's last byte
};

// The top-level members of `text`, in order, duplicates included; nullopt when `text` is
// not an object. A leading byte order mark is skipped, as parsers skip it (the edits
// below drop it). REQUIRES: `text` is valid JSON (the caller parsed it).
std::optional<std::vector<MemberSpan>> ObjectMembers(std::string_view text);

// The value of the member named `key` that a parser keeps (the last one), if any.
// REQUIRES: as ObjectMembers.
std::optional<std::string_view> MemberValue(std::string_view object, std::string_view key);

// `object` with the member `key` set to `value_json`: the last such member keeps its place
// with the new value, earlier duplicates go, and a member that was absent is appended.
// REQUIRES: `object` is a valid JSON object's text and `value_json` a valid JSON value.
std::string SetMember(std::string_view object, std::string_view key, std::string_view value_json);

// `object` without any member named `key`. REQUIRES: as SetMember.
std::string RemoveMember(std::string_view object, std::string_view key);

}  // namespace sluice::gateway
