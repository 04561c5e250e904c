#include "gateway/json_members.h"

#include "nlohmann/json.hpp"

namespace sluice::gateway {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t SkipSpace(std::string_view t, size_t i) {
  while (i < t.size() && IsSpace(t[i])) ++i;
  return i;
}

// One past the string that opens at t[i] (a quote).
size_t SkipString(std::string_view t, size_t i) {
  for (++i; i < t.size(); ++i) {
    if (t[i] == '\\') {
      ++i;
    } else if (t[i] == '"') {
      return i + 1;
    }
  }
  return t.size();
}

// One past the value that starts at t[i]. Containers are skipped by counting brackets
// outside strings: a loop, not a recursion, whatever the nesting.
size_t SkipValue(std::string_view t, size_t i) {
  if (i >= t.size()) return i;
  if (t[i] == '"') return SkipString(t, i);
  if (t[i] == '{' || t[i] == '[') {
    size_t depth = 0;
    while (i < t.size()) {
      const char c = t[i];
      if (c == '"') {
        i = SkipString(t, i);
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
      ++i;
    }
    return i;
  }
  while (i < t.size() && t[i] != ',' && t[i] != '}' && t[i] != ']' && !IsSpace(t[i])) ++i;
  return i;
}

std::string DecodeKey(std::string_view quoted) {
  if (quoted.find('\\') == std::string_view::npos) {
    return std::string(quoted.substr(1, quoted.size() - 2));
  }
  const nlohmann::json k = nlohmann::json::parse(quoted, nullptr, /*allow_exceptions=*/false);
  return k.is_string() ? k.get<std::string>() : std::string(quoted);
}

// The object rebuilt from `members` of `text`, each member's bytes as they were.
std::string Join(std::string_view text, const std::vector<MemberSpan>& members,
                 const std::vector<std::string>& replacement) {
  std::string out = "{";
  for (size_t m = 0; m < members.size(); ++m) {
    if (out.size() > 1) out += ',';
    if (!replacement[m].empty()) {
      out += replacement[m];
    } else {
      out.append(text.substr(members[m].begin, members[m].end - members[m].begin));
    }
  }
  out += '}';
  return out;
}

}  // namespace

std::optional<std::vector<MemberSpan>> ObjectMembers(std::string_view t) {
  // A UTF-8 byte order mark, which JSON parsers skip, is skipped here too.
  size_t i = SkipSpace(t, t.starts_with("\xEF\xBB\xBF") ? 3 : 0);
  if (i >= t.size() || t[i] != '{') return std::nullopt;
  std::vector<MemberSpan> members;
  i = SkipSpace(t, i + 1);
  while (i < t.size() && t[i] == '"') {
    MemberSpan m;
    m.begin = i;
    const size_t key_end = SkipString(t, i);
    m.key = DecodeKey(t.substr(i, key_end - i));
    i = SkipSpace(t, key_end);
    if (i < t.size() && t[i] == ':') ++i;
    m.value_begin = SkipSpace(t, i);
    m.end = SkipValue(t, m.value_begin);
    members.push_back(std::move(m));
    i = SkipSpace(t, members.back().end);
    if (i < t.size() && t[i] == ',') i = SkipSpace(t, i + 1);
  }
  return members;
}

std::optional<std::string_view> MemberValue(std::string_view object, std::string_view key) {
  const auto members = ObjectMembers(object);
  if (!members) return std::nullopt;
  for (auto m = members->rbegin(); m != members->rend(); ++m) {
    if (m->key == key) return object.substr(m->value_begin, m->end - m->value_begin);
  }
  return std::nullopt;
}

std::string SetMember(std::string_view object, std::string_view key, std::string_view value_json) {
  std::vector<MemberSpan> members = ObjectMembers(object).value_or(std::vector<MemberSpan>{});
  int last = -1;
  for (size_t m = 0; m < members.size(); ++m) {
    if (members[m].key == key) last = static_cast<int>(m);
  }
  const std::string member =
      nlohmann::json(std::string(key)).dump() + ":" + std::string(value_json);
  std::vector<MemberSpan> kept;
  std::vector<std::string> replacement;
  for (size_t m = 0; m < members.size(); ++m) {
    if (members[m].key == key && static_cast<int>(m) != last) continue;
    kept.push_back(members[m]);
    replacement.push_back(static_cast<int>(m) == last ? member : "");
  }
  if (last < 0) {
    kept.push_back(MemberSpan{});
    replacement.push_back(member);
  }
  return Join(object, kept, replacement);
}

std::string RemoveMember(std::string_view object, std::string_view key) {
  std::vector<MemberSpan> kept;
  for (MemberSpan& m : ObjectMembers(object).value_or(std::vector<MemberSpan>{})) {
    if (m.key != key) kept.push_back(std::move(m));
  }
  return Join(object, kept, std::vector<std::string>(kept.size()));
}

}  // namespace sluice::gateway
