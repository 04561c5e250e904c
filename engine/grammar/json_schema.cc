// The JSON fronts of compile.h: any JSON object, and JSON Schema (draft 2020-12 and the
// older drafts' spellings people still send: definitions, items as a list).
#include <cmath>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/text_parsing.h"
#include "nlohmann/json.hpp"

namespace sluice::grammar {
namespace {

// Ordered: properties are written in the order the schema declares them.
using json = nlohmann::ordered_json;

// Keywords that describe and never constrain.
const absl::flat_hash_set<std::string>& Annotations() {
  static const auto* k = new absl::flat_hash_set<std::string>{
      "title",    "description", "examples", "default",      "$schema", "$id",
      "$comment", "deprecated",  "readOnly", "writeOnly",    "$defs",   "definitions",
      "$anchor",  "name",        "strict",   "discriminator"};
  return *k;
}

// A non-negative decimal range [lo, hi] of numerals of one length, as digits.
Expr SameLength(const std::string& lo, const std::string& hi) {
  if (lo.empty()) return Expr::Empty();
  if (lo[0] == hi[0]) {
    return Expr::Seq(
        {Expr::Byte(static_cast<uint8_t>(lo[0])), SameLength(lo.substr(1), hi.substr(1))});
  }
  const size_t rest = lo.size() - 1;
  ByteSet digit;
  digit.AddRange('0', '9');
  std::vector<Expr> alts;
  alts.push_back(Expr::Seq(
      {Expr::Byte(static_cast<uint8_t>(lo[0])), SameLength(lo.substr(1), std::string(rest, '9'))}));
  if (lo[0] + 1 <= hi[0] - 1) {
    ByteSet mid;
    mid.AddRange(lo[0] + 1, hi[0] - 1);
    alts.push_back(
        Expr::Seq({Expr::Bytes(mid), Expr::Repeat(Expr::Bytes(digit), static_cast<int>(rest),
                                                  static_cast<int>(rest))}));
  }
  alts.push_back(Expr::Seq(
      {Expr::Byte(static_cast<uint8_t>(hi[0])), SameLength(std::string(rest, '0'), hi.substr(1))}));
  return Expr::Alt(std::move(alts));
}

// Non-negative integers in [lo, hi] (hi < 0: no upper bound), no leading zeros.
Expr NaturalRange(uint64_t lo, int64_t hi) {
  ByteSet digit, nonzero;
  digit.AddRange('0', '9');
  nonzero.AddRange('1', '9');
  std::vector<Expr> alts;
  const std::string a = std::to_string(lo);
  const size_t max_len = hi < 0 ? a.size() : std::to_string(hi).size();
  for (size_t len = a.size(); len <= max_len; ++len) {
    const std::string from = len == a.size() ? a : "1" + std::string(len - 1, '0');
    const std::string to = (hi >= 0 && len == max_len) ? std::to_string(hi) : std::string(len, '9');
    if (len == 1 && from == "0") {
      alts.push_back(from == to ? Expr::Literal("0") : SameLength(from, to));
    } else {
      alts.push_back(SameLength(from, to));
    }
  }
  if (hi < 0) {  // and every longer numeral
    alts.push_back(Expr::Seq(
        {Expr::Bytes(nonzero), Expr::Repeat(Expr::Bytes(digit), static_cast<int>(a.size()), -1)}));
  }
  return Expr::Alt(std::move(alts));
}

class SchemaCompiler {
 public:
  SchemaCompiler(const json& root, const JsonOptions& options, GrammarBuilder& b)
      : root_(root), options_(options), b_(b) {}

  absl::StatusOr<Expr> Compile(const json& s, const std::string& path) {
    if (++depth_ > 200) return Invalid(path, "nests more than 200 levels");
    absl::StatusOr<Expr> e = CompileInner(s, path);
    --depth_;
    return e;
  }

  Expr Ws() const { return options_.allow_space ? Expr::Optional(Expr::Byte(' ')) : Expr::Empty(); }

  Expr AnyValue() {
    if (any_value_ < 0) {
      any_value_ = b_.AddRule("json_value");
      const int object = b_.AddRule("json_object"), array = b_.AddRule("json_array");
      const int pair = b_.AddRule("json_pair");
      b_.SetBody(pair, Expr::Seq({String(), Ws(), Expr::Byte(':'), Ws(), Expr::Rule(any_value_)}));
      b_.SetBody(object, Braced('{', Expr::Rule(pair), '}'));
      b_.SetBody(array, Braced('[', Expr::Rule(any_value_), ']'));
      b_.SetBody(any_value_,
                 Expr::Alt({Expr::Rule(object), Expr::Rule(array), String(), Number(),
                            Expr::Literal("true"), Expr::Literal("false"), Expr::Literal("null")}));
    }
    return Expr::Rule(any_value_);
  }

  Expr AnyObject() {
    AnyValue();
    return Expr::Rule(b_.Find("json_object"));
  }

 private:
  // open (item ("," ws item)*)? close
  Expr Braced(char open, Expr item, char close) const {
    return Expr::Seq(
        {Expr::Byte(static_cast<uint8_t>(open)),
         Expr::Optional(Expr::Seq({item, Expr::Star(Expr::Seq({Expr::Byte(','), Ws(), item}))})),
         Expr::Byte(static_cast<uint8_t>(close))});
  }

  // One character of a JSON string: unescaped, or an escape (no lone surrogates).
  Expr Char() {
    if (char_rule_ < 0 && b_.Find("json_char") >= 0) {  // another schema of this grammar's
      char_rule_ = b_.Find("json_char");
      escape_tail_ = b_.Find("json_escape");
    }
    if (char_rule_ < 0) {
      char_rule_ = b_.AddRule("json_char");
      ByteSet esc;
      for (char c : std::string("\"\\/bfnrt")) esc.Add(static_cast<uint8_t>(c));
      ByteSet hex, hex_low, d0_7;
      hex.AddRange('0', '9');
      hex.AddRange('a', 'f');
      hex.AddRange('A', 'F');
      hex_low.AddRange('0', '9');
      hex_low.AddRange('a', 'c');
      hex_low.AddRange('A', 'C');
      hex_low.AddRange('e', 'f');
      hex_low.AddRange('E', 'F');
      d0_7.AddRange('0', '7');
      ByteSet d;
      d.Add('d');
      d.Add('D');
      Expr h = Expr::Bytes(hex);
      Expr u = Expr::Seq(
          {Expr::Byte('u'), Expr::Alt({Expr::Seq({Expr::Bytes(hex_low), h, h, h}),
                                       Expr::Seq({Expr::Bytes(d), Expr::Bytes(d0_7), h, h})})});
      escape_tail_ = b_.AddRule("json_escape");
      b_.SetBody(escape_tail_, Expr::Alt({Expr::Bytes(esc), u}));
      b_.SetBody(char_rule_,
                 Expr::Alt({CodepointClass({{0, 0x1F}, {'"', '"'}, {'\\', '\\'}}, /*negate=*/true),
                            Expr::Seq({Expr::Byte('\\'), Expr::Rule(escape_tail_)})}));
      b_.MarkJsonChar(char_rule_);
    }
    return Expr::Rule(char_rule_);
  }

  // What follows a backslash in a JSON string.
  Expr EscapeTail() {
    Char();
    return Expr::Rule(escape_tail_);
  }

  // A JSON string whose characters (written unescaped) spell none of `keys`: a trie of
  // the keys, left at any other character; ending on a key's last node is refused.
  // NOTE: a key spelled with escapes ("\u0069d" for "id") is not recognised as one.
  Expr KeyOtherThan(const std::vector<std::string>& keys) {
    struct Node {
      std::vector<std::pair<uint32_t, int>> kids;
      bool terminal = false;
    };
    std::vector<Node> trie(1);
    for (const std::string& k : keys) {
      int n = 0;
      for (size_t i = 0; i < k.size();) {
        const unsigned char c = static_cast<unsigned char>(k[i]);
        const int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        uint32_t cp = len == 1 ? c : (c & (0x7F >> len));
        for (int j = 1; j < len && i + j < k.size(); ++j) cp = (cp << 6) | (k[i + j] & 0x3F);
        i += static_cast<size_t>(len);
        int next = -1;
        for (const auto& [kc, kn] : trie[static_cast<size_t>(n)].kids) {
          if (kc == cp) next = kn;
        }
        if (next < 0) {
          next = static_cast<int>(trie.size());
          trie[static_cast<size_t>(n)].kids.emplace_back(cp, next);
          trie.emplace_back();
        }
        n = next;
      }
      trie[static_cast<size_t>(n)].terminal = true;
    }
    const Expr rest = Expr::Seq({Expr::Star(Char()), Expr::Byte('"')});
    std::vector<int> rules(trie.size());
    for (size_t n = 0; n < trie.size(); ++n) rules[n] = b_.AddRule(absl::StrCat("key_other_", n));
    for (size_t n = 0; n < trie.size(); ++n) {
      std::vector<Expr> alts;
      if (!trie[n].terminal) alts.push_back(Expr::Byte('"'));
      std::vector<std::pair<uint32_t, uint32_t>> taken = {{0, 0x1F}, {'"', '"'}, {'\\', '\\'}};
      for (const auto& [cp, kid] : trie[n].kids) {
        taken.emplace_back(cp, cp);
        std::string bytes;
        AppendUtf8(cp, bytes);
        alts.push_back(
            Expr::Seq({Expr::Literal(bytes), Expr::Rule(rules[static_cast<size_t>(kid)])}));
      }
      // Any other character, or an escape, leaves the keys behind.
      alts.push_back(Expr::Seq({CodepointClass(taken, /*negate=*/true), rest}));
      alts.push_back(Expr::Seq({Expr::Byte('\\'), EscapeTail(), rest}));
      b_.SetBody(rules[n], Expr::Alt(std::move(alts)));
    }
    return Expr::Seq({Expr::Byte('"'), Expr::Rule(rules[0])});
  }

  // A JSON string of min to max characters: the opening quote, then a body rule (shared by
  // strings of the same bounds) that the matcher knows as one (StringBody).
  Expr String(int min = 0, int max = -1) {
    auto [it, inserted] = string_bodies_.try_emplace(std::make_pair(min, max), -1);
    if (inserted) {
      const Expr ch = Char();
      const std::string name = absl::StrCat("json_string_", min, "_", max);
      it->second = b_.Find(name);
      if (it->second >= 0) return Expr::Seq({Expr::Byte('"'), Expr::Rule(it->second)});
      it->second = b_.AddRule(name);
      b_.SetBody(it->second, Expr::Seq({Expr::Repeat(ch, min, max), Expr::Byte('"')}));
      b_.MarkStringBody(it->second, max);
    }
    return Expr::Seq({Expr::Byte('"'), Expr::Rule(it->second)});
  }

  static Expr Digits(int min) {
    ByteSet digit;
    digit.AddRange('0', '9');
    return Expr::Repeat(Expr::Bytes(digit), min, -1);
  }

  Expr Number() {
    if (number_rule_ < 0) {
      number_rule_ = b_.AddRule("json_number");
      ByteSet e, sign;
      e.Add('e');
      e.Add('E');
      sign.Add('+');
      sign.Add('-');
      b_.SetBody(number_rule_,
                 Expr::Seq({Expr::Optional(Expr::Byte('-')), NaturalRange(0, -1),
                            Expr::Optional(Expr::Seq({Expr::Byte('.'), Digits(1)})),
                            Expr::Optional(Expr::Seq(
                                {Expr::Bytes(e), Expr::Optional(Expr::Bytes(sign)), Digits(1)}))}));
    }
    return Expr::Rule(number_rule_);
  }

  static absl::Status Invalid(const std::string& path, const std::string& message) {
    return absl::InvalidArgumentError(
        absl::StrCat("schema at ", path.empty() ? "#" : path, ": ", message));
  }

  // A keyword this compiler cannot enforce: refused under strict, else relaxed.
  absl::Status Unenforced(const std::string& path, const std::string& keyword) const {
    if (!options_.strict) return absl::OkStatus();
    return Invalid(
        path, absl::StrCat("'", keyword, "' is not supported under strict structured outputs"));
  }

  absl::StatusOr<Expr> Ref(const std::string& ref, const std::string& path) {
    if (auto it = refs_.find(ref); it != refs_.end()) return Expr::Rule(it->second);
    if (!ref.starts_with("#")) {
      return Invalid(path, absl::StrCat("'$ref' ", ref, " is not local (only #/... refs resolve)"));
    }
    const std::string pointer = ref.substr(1);
    const json* target = &root_;
    if (!pointer.empty()) {
      try {
        target = &root_.at(json::json_pointer(pointer));
      } catch (const std::exception&) {
        return Invalid(path, absl::StrCat("'$ref' ", ref, " points at nothing"));
      }
    }
    const int rule = b_.AddRule(ref);
    refs_[ref] = rule;  // before the body: a recursive schema refers to this rule
    absl::StatusOr<Expr> body = Compile(*target, ref);
    if (!body.ok()) return body;
    b_.SetBody(rule, *std::move(body));
    return Expr::Rule(rule);
  }

  absl::StatusOr<Expr> CompileInner(const json& s, const std::string& path) {
    if (s.is_boolean()) {
      if (s.get<bool>()) return AnyValue();
      return Invalid(path, "the schema false admits no value");
    }
    if (!s.is_object()) return Invalid(path, "a schema must be an object or a boolean");
    for (const auto& [key, value] : s.items()) {
      if (!Known(key)) {
        if (options_.strict) return Invalid(path, absl::StrCat("unknown keyword '", key, "'"));
      }
    }
    for (const char* k : {"not", "if", "then", "else", "dependentRequired", "dependentSchemas",
                          "unevaluatedProperties", "unevaluatedItems", "contentEncoding",
                          "contentMediaType", "propertyNames"}) {
      if (s.contains(k)) {
        if (absl::Status st = Unenforced(path, k); !st.ok()) return st;
      }
    }
    if (s.contains("$ref")) {
      if (!s["$ref"].is_string()) return Invalid(path, "'$ref' must be a string");
      return Ref(s["$ref"].get<std::string>(), path);
    }
    if (s.contains("const")) return Expr::Literal(s["const"].dump());
    if (s.contains("enum")) {
      if (!s["enum"].is_array() || s["enum"].empty())
        return Invalid(path, "'enum' must be a non-empty list");
      std::vector<Expr> alts;
      for (const json& v : s["enum"]) alts.push_back(Expr::Literal(v.dump()));
      return Expr::Alt(std::move(alts));
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (!s.contains(key)) continue;
      if (!s[key].is_array() || s[key].empty())
        return Invalid(path, absl::StrCat("'", key, "' must be a non-empty list"));
      // oneOf's exclusivity is not enforced: its branches are alternatives.
      if (std::string(key) == "oneOf") {
        if (absl::Status st = Unenforced(path, "oneOf"); !st.ok()) return st;
      }
      std::vector<Expr> alts;
      for (size_t i = 0; i < s[key].size(); ++i) {
        json branch = s[key][i];
        // Sibling keywords (a shared type, properties) apply to every branch.
        if (branch.is_object()) {
          for (const auto& [k, v] : s.items()) {
            if (k != key && !Annotations().contains(k) && !branch.contains(k)) branch[k] = v;
          }
        }
        absl::StatusOr<Expr> e = Compile(branch, absl::StrCat(path, "/", key, "/", i));
        if (!e.ok()) return e;
        alts.push_back(*std::move(e));
      }
      return Expr::Alt(std::move(alts));
    }
    if (s.contains("allOf")) {
      if (!s["allOf"].is_array() || s["allOf"].empty())
        return Invalid(path, "'allOf' must be a non-empty list");
      json merged = s;
      merged.erase("allOf");
      for (const json& part : s["allOf"]) {
        json p = part;
        if (p.is_object() && p.contains("$ref") && p.size() == 1) {
          // Merge what the reference holds.
          const std::string ref = p["$ref"].get<std::string>();
          try {
            p = root_.at(json::json_pointer(ref.substr(1)));
          } catch (const std::exception&) {
            return Invalid(path, absl::StrCat("'$ref' ", ref, " points at nothing"));
          }
        }
        if (!p.is_object()) return Invalid(path, "'allOf' holds a schema that is not an object");
        for (const auto& [k, v] : p.items()) {
          if (k == "properties" && merged.contains("properties")) {
            merged["properties"].update(v);
          } else if (k == "required" && merged.contains("required")) {
            for (const json& r : v) merged["required"].push_back(r);
          } else if (!merged.contains(k)) {
            merged[k] = v;
          } else if (merged[k] != v && !Annotations().contains(k)) {
            return Invalid(path, absl::StrCat("'allOf' parts disagree on '", k, "'"));
          }
        }
      }
      return Compile(merged, path + "/allOf");
    }
    std::vector<std::string> types;
    if (s.contains("type")) {
      if (s["type"].is_string()) {
        types.push_back(s["type"].get<std::string>());
      } else if (s["type"].is_array()) {
        for (const json& t : s["type"]) {
          if (!t.is_string()) return Invalid(path, "'type' must hold strings");
          types.push_back(t.get<std::string>());
        }
      } else {
        return Invalid(path, "'type' must be a string or a list of strings");
      }
    } else if (s.contains("properties") || s.contains("required") ||
               s.contains("additionalProperties")) {
      types.push_back("object");
    } else if (s.contains("items") || s.contains("prefixItems") || s.contains("minItems") ||
               s.contains("maxItems")) {
      types.push_back("array");
    } else if (s.contains("pattern") || s.contains("format") || s.contains("minLength") ||
               s.contains("maxLength")) {
      types.push_back("string");
    } else if (s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") ||
               s.contains("exclusiveMaximum")) {
      types.push_back("number");
    } else {
      return AnyValue();
    }
    if (s.contains("nullable") && !s["nullable"].is_boolean()) {
      return Invalid(path, "'nullable' must be a boolean");
    }
    if (s.contains("nullable") && s["nullable"] == true) types.push_back("null");
    std::vector<Expr> alts;
    for (const std::string& t : types) {
      absl::StatusOr<Expr> e = Typed(s, t, path);
      if (!e.ok()) return e;
      alts.push_back(*std::move(e));
    }
    return Expr::Alt(std::move(alts));
  }

  static bool Known(const std::string& key) {
    static const auto* k = new absl::flat_hash_set<std::string>{"type",
                                                                "enum",
                                                                "const",
                                                                "anyOf",
                                                                "oneOf",
                                                                "allOf",
                                                                "$ref",
                                                                "properties",
                                                                "required",
                                                                "additionalProperties",
                                                                "items",
                                                                "prefixItems",
                                                                "minItems",
                                                                "maxItems",
                                                                "uniqueItems",
                                                                "minLength",
                                                                "maxLength",
                                                                "pattern",
                                                                "format",
                                                                "minimum",
                                                                "maximum",
                                                                "exclusiveMinimum",
                                                                "exclusiveMaximum",
                                                                "multipleOf",
                                                                "nullable",
                                                                "minProperties",
                                                                "maxProperties",
                                                                "patternProperties",
                                                                "propertyNames",
                                                                "contains",
                                                                "not",
                                                                "if",
                                                                "then",
                                                                "else",
                                                                "dependentRequired",
                                                                "dependentSchemas",
                                                                "unevaluatedProperties",
                                                                "unevaluatedItems",
                                                                "contentEncoding",
                                                                "contentMediaType"};
    return k->contains(key) || Annotations().contains(key);
  }

  absl::StatusOr<Expr> Typed(const json& s, const std::string& type, const std::string& path) {
    if (type == "null") return Expr::Literal("null");
    if (type == "boolean") return Expr::Alt({Expr::Literal("true"), Expr::Literal("false")});
    if (type == "string") return StringSchema(s, path);
    if (type == "integer") return IntegerSchema(s, path);
    if (type == "number") return NumberSchema(s, path);
    if (type == "object") return ObjectSchema(s, path);
    if (type == "array") return ArraySchema(s, path);
    return Invalid(path, absl::StrCat("unknown type '", type, "'"));
  }

  absl::StatusOr<int> Count(const json& s, const char* key, const std::string& path, int fallback) {
    if (!s.contains(key)) return fallback;
    if (!s[key].is_number_integer() || s[key].get<int64_t>() < 0) {
      return Invalid(path, absl::StrCat("'", key, "' must be a non-negative integer"));
    }
    const int64_t v = s[key].get<int64_t>();
    if (v > b_.limits().max_repeat) {
      return absl::ResourceExhaustedError(absl::StrCat("schema at ", path, ": '", key, "' of ", v,
                                                       " is past the limit of ",
                                                       b_.limits().max_repeat));
    }
    return static_cast<int>(v);
  }

  absl::StatusOr<Expr> StringSchema(const json& s, const std::string& path) {
    absl::StatusOr<int> min = Count(s, "minLength", path, 0);
    if (!min.ok()) return min.status();
    absl::StatusOr<int> max = Count(s, "maxLength", path, -1);
    if (!max.ok()) return max.status();
    if (*max >= 0 && *max < *min) return Invalid(path, "'maxLength' is below 'minLength'");
    std::string pattern;
    if (s.contains("format")) {
      if (!s["format"].is_string()) return Invalid(path, "'format' must be a string");
      pattern = FormatPattern(s["format"].get<std::string>());
      if (pattern.empty()) {
        if (absl::Status st = Unenforced(path, "format: " + s["format"].get<std::string>());
            !st.ok())
          return st;
      }
    }
    if (s.contains("pattern")) {
      if (!s["pattern"].is_string()) return Invalid(path, "'pattern' must be a string");
      if (!pattern.empty()) {
        if (absl::Status st = Unenforced(path, "pattern with format"); !st.ok()) return st;
      }
      std::string p = s["pattern"].get<std::string>();
      // A JSON Schema pattern matches anywhere in the string unless anchored: strip the
      // anchors it has, and let anything stand where it has none.
      const bool at_start = p.starts_with("^");
      if (at_start) p.erase(0, 1);
      const bool at_end = p.ends_with("$") && !p.ends_with("\\$");
      if (at_end) p.pop_back();
      pattern = absl::StrCat(at_start ? "" : ".*", "(?:", p, ")", at_end ? "" : ".*");
    }
    if (!pattern.empty()) {
      if (*min > 0 || *max >= 0) {
        if (absl::Status st = Unenforced(path, "minLength/maxLength with a pattern or format");
            !st.ok())
          return st;
      }
      absl::StatusOr<Expr> body = RegexExpr(pattern, b_, /*json_string=*/true);
      if (!body.ok()) return Invalid(path, absl::StrCat("'pattern': ", body.status().message()));
      return Expr::Seq({Expr::Byte('"'), *std::move(body), Expr::Byte('"')});
    }
    return String(*min, *max);
  }

  static std::string FormatPattern(const std::string& format) {
    // Calendar days only: 29 February in leap years, 31 in the long months; years from 1.
    static const std::string kYear = "([1-9]\\d{3}|0[1-9]\\d\\d|00[1-9]\\d|000[1-9])";
    static const std::string kLeap =
        "(\\d\\d(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)";
    static const std::string kDate =
        absl::StrCat("(", kYear, "-((0[1-9]|1[0-2])-(0[1-9]|1\\d|2[0-8])|(0[13-9]|1[0-2])-(29|30)|",
                     "(0[13578]|1[02])-31)|", kLeap, "-02-29)");
    static const std::string kTime =
        "([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(\\.\\d{1,6})?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d)";
    if (format == "date") return kDate;
    if (format == "time") return kTime;
    if (format == "date-time") return kDate + "T" + kTime;
    if (format == "uuid") {
      return "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
    }
    if (format == "email") {
      return "[a-zA-Z0-9._%+-]{1,64}@[a-zA-Z0-9-]{1,63}(\\.[a-zA-Z0-9-]{1,63})*\\.[a-zA-Z]{2,24}";
    }
    if (format == "ipv4") {
      return "((25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
    }
    if (format == "hostname")
      return "[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-"
             "Z0-9])?)*";
    if (format == "uri") return "[a-zA-Z][a-zA-Z0-9+.-]*:[^\\s]{1,2000}";
    return "";
  }

  // An inclusive bound from minimum/exclusiveMinimum (or the maximum pair), rounded
  // into the integers; nullopt when absent. `up`: the lower bound.
  absl::StatusOr<std::optional<double>> Bound(const json& s, bool lower, const std::string& path) {
    const char* incl = lower ? "minimum" : "maximum";
    const char* excl = lower ? "exclusiveMinimum" : "exclusiveMaximum";
    std::optional<double> out;
    if (s.contains(incl)) {
      if (!s[incl].is_number()) return Invalid(path, absl::StrCat("'", incl, "' must be a number"));
      out = s[incl].get<double>();
    }
    if (s.contains(excl)) {
      if (!s[excl].is_number()) return Invalid(path, absl::StrCat("'", excl, "' must be a number"));
      out = s[excl].get<double>();
      exclusive_ = true;
    }
    return out;
  }

  absl::StatusOr<Expr> IntegerSchema(const json& s, const std::string& path) {
    if (s.contains("multipleOf")) {
      if (absl::Status st = Unenforced(path, "multipleOf"); !st.ok()) return st;
    }
    exclusive_ = false;
    absl::StatusOr<std::optional<double>> lo = Bound(s, true, path);
    if (!lo.ok()) return lo.status();
    const bool lo_excl = exclusive_ && s.contains("exclusiveMinimum");
    absl::StatusOr<std::optional<double>> hi = Bound(s, false, path);
    if (!hi.ok()) return hi.status();
    const bool hi_excl = s.contains("exclusiveMaximum");
    constexpr double kMax = 9e15;
    std::optional<int64_t> a, z;
    if (*lo) {
      double v = lo_excl ? std::floor(**lo) + 1 : std::ceil(**lo);
      if (std::abs(v) > kMax) return Invalid(path, "a bound past 9e15");
      a = static_cast<int64_t>(v);
    }
    if (*hi) {
      double v = hi_excl ? std::ceil(**hi) - 1 : std::floor(**hi);
      if (std::abs(v) > kMax) return Invalid(path, "a bound past 9e15");
      z = static_cast<int64_t>(v);
    }
    if (a && z && *a > *z) return Invalid(path, "no integer lies between the bounds");
    return IntegerRange(a, z);
  }

  // Integers in [a, z], either side open when absent.
  static Expr IntegerRange(std::optional<int64_t> a, std::optional<int64_t> z) {
    std::vector<Expr> alts;
    // The non-negative part [max(a, 0), z].
    if (!z || *z >= 0) {
      const uint64_t from = a && *a > 0 ? static_cast<uint64_t>(*a) : 0;
      alts.push_back(NaturalRange(from, z ? *z : -1));
    }
    // The negative part [a, min(z, -1)] as "-" and [max(-z, 1), -a].
    if (!a || *a < 0) {
      const uint64_t from = z && *z < 0 ? static_cast<uint64_t>(-*z) : 1;
      alts.push_back(Expr::Seq({Expr::Byte('-'), NaturalRange(from, a ? -*a : -1)}));
    }
    return Expr::Alt(std::move(alts));
  }

  absl::StatusOr<Expr> NumberSchema(const json& s, const std::string& path) {
    if (s.contains("multipleOf")) {
      if (absl::Status st = Unenforced(path, "multipleOf"); !st.ok()) return st;
    }
    const bool bounded = s.contains("minimum") || s.contains("maximum") ||
                         s.contains("exclusiveMinimum") || s.contains("exclusiveMaximum");
    if (!bounded) return Number();
    exclusive_ = false;
    absl::StatusOr<std::optional<double>> lo = Bound(s, true, path);
    if (!lo.ok()) return lo.status();
    absl::StatusOr<std::optional<double>> hi = Bound(s, false, path);
    if (!hi.ok()) return hi.status();
    const bool lo_excl = s.contains("exclusiveMinimum"), hi_excl = s.contains("exclusiveMaximum");
    auto integral = [](const std::optional<double>& v) {
      return !v || (std::floor(*v) == *v && std::abs(*v) < 9e15);
    };
    if (!integral(*lo) || !integral(*hi)) {
      if (absl::Status st = Unenforced(path, "a non-integer number bound"); !st.ok()) return st;
      return Number();
    }
    // Integer bounds L and H. A number is written as an optional '-', an integer part k
    // and an optional fraction with a non-zero digit (no exponent): k alone is the
    // value k, k.f lies strictly between k and k + 1 (or -k - 1 and -k). Each form is
    // kept where every value it can spell lies inside the bounds.
    std::optional<int64_t> L, H;
    if (*lo) L = static_cast<int64_t>(**lo);
    if (*hi) H = static_cast<int64_t>(**hi);
    ByteSet nonzero;
    nonzero.AddRange('1', '9');
    const Expr frac = Expr::Seq({Expr::Byte('.'), Digits(0), Expr::Bytes(nonzero)});
    std::vector<Expr> alts;
    // k in [from, to] (to absent: no bound), k >= 0.
    auto naturals = [&](int64_t from, std::optional<int64_t> to, bool with_frac, bool negative) {
      from = std::max<int64_t>(from, 0);
      if (to && *to < from) return;
      Expr e = NaturalRange(static_cast<uint64_t>(from), to ? *to : -1);
      if (with_frac) e = Expr::Seq({std::move(e), frac});
      if (negative) e = Expr::Seq({Expr::Byte('-'), std::move(e)});
      alts.push_back(std::move(e));
    };
    auto opt = [](std::optional<int64_t> v, int64_t d) {
      return v ? std::optional<int64_t>(*v + d) : std::nullopt;
    };
    // v = k >= 0.
    naturals(L ? (lo_excl ? *L + 1 : *L) : 0, H ? opt(H, hi_excl ? -1 : 0) : std::nullopt, false,
             false);
    // v in (k, k + 1): k >= L and k + 1 <= H.
    naturals(L ? *L : 0, opt(H, -1), true, false);
    // v = -k, k >= 1: -k >= L and -k <= H.
    naturals(H ? std::max<int64_t>(1, hi_excl ? -*H + 1 : -*H) : 1,
             L ? std::optional<int64_t>(lo_excl ? -*L - 1 : -*L) : std::nullopt, false, true);
    // v in (-k - 1, -k): -k - 1 >= L and -k <= H.
    naturals(H ? -*H : 0, L ? std::optional<int64_t>(-*L - 1) : std::nullopt, true, true);
    if (alts.empty()) return Invalid(path, "no number lies between the bounds");
    return Expr::Alt(std::move(alts));
  }

  absl::StatusOr<Expr> ObjectSchema(const json& s, const std::string& path) {
    for (const char* k : {"minProperties", "maxProperties", "patternProperties"}) {
      if (s.contains(k)) {
        if (absl::Status st = Unenforced(path, k); !st.ok()) return st;
      }
    }
    const json props = s.value("properties", json::object());
    if (!props.is_object()) return Invalid(path, "'properties' must be an object");
    absl::flat_hash_set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) return Invalid(path, "'required' must be a list");
      for (const json& r : s["required"]) {
        if (!r.is_string()) return Invalid(path, "'required' must hold strings");
        if (!props.contains(r.get<std::string>())) {
          // A required key with no schema: any value.
          if (absl::Status st = Unenforced(
                  path, "required key '" + r.get<std::string>() + "' without a property schema");
              !st.ok())
            return st;
        }
        required.insert(r.get<std::string>());
      }
    }
    std::vector<Expr> items;
    std::vector<bool> needed;
    for (const auto& [key, sub] : props.items()) {
      absl::StatusOr<Expr> value = Compile(sub, absl::StrCat(path, "/properties/", key));
      if (!value.ok()) return value;
      items.push_back(Expr::Seq(
          {Expr::Literal(json(key).dump()), Ws(), Expr::Byte(':'), Ws(), *std::move(value)}));
      needed.push_back(required.contains(key));
    }
    for (const std::string& r : required) {
      if (!props.contains(r)) {
        items.push_back(
            Expr::Seq({Expr::Literal(json(r).dump()), Ws(), Expr::Byte(':'), Ws(), AnyValue()}));
        needed.push_back(true);
      }
    }
    // additionalProperties: absent or false admits none (as strict structured outputs
    // do); true or a schema admits more keys after the declared ones.
    std::optional<Expr> extra;
    if (s.contains("additionalProperties")) {
      const json& ap = s["additionalProperties"];
      if (!(ap.is_boolean() && !ap.get<bool>())) {
        absl::StatusOr<Expr> value = Compile(ap, path + "/additionalProperties");
        if (!value.ok()) return value;
        // An extra key is never a declared one (a parser would keep the last of the two).
        std::vector<std::string> declared;
        for (const auto& [key, unused] : props.items()) declared.push_back(key);
        for (const std::string& r : required) declared.push_back(r);
        extra = Expr::Seq({KeyOtherThan(declared), Ws(), Expr::Byte(':'), Ws(), *std::move(value)});
      }
    }
    // Keys in declared order, optional ones skippable: after[i] is the rest from key i
    // once something has been written, first[i] the rest when nothing has yet.
    const size_t n = items.size();
    const Expr sep = Expr::Seq({Expr::Byte(','), Ws()});
    std::vector<Expr> after(n + 1), first(n + 1);
    after[n] = extra ? Expr::Star(Expr::Seq({sep, *extra})) : Expr::Empty();
    first[n] = extra ? Expr::Optional(Expr::Seq({*extra, Expr::Star(Expr::Seq({sep, *extra}))}))
                     : Expr::Empty();
    // Rules keep the expansion linear: each suffix is written once.
    std::vector<int> after_rule(n + 1), first_rule(n + 1);
    for (size_t i = n + 1; i-- > 0;) {
      after_rule[i] = b_.AddRule(absl::StrCat(path, "/after", i));
      first_rule[i] = b_.AddRule(absl::StrCat(path, "/first", i));
      if (i == n) {
        b_.SetBody(after_rule[i], std::move(after[n]));
        b_.SetBody(first_rule[i], std::move(first[n]));
        continue;
      }
      Expr with = Expr::Seq({sep, items[i], Expr::Rule(after_rule[i + 1])});
      Expr lead = Expr::Seq({items[i], Expr::Rule(after_rule[i + 1])});
      if (needed[i]) {
        b_.SetBody(after_rule[i], std::move(with));
        b_.SetBody(first_rule[i], std::move(lead));
      } else {
        b_.SetBody(after_rule[i], Expr::Alt({std::move(with), Expr::Rule(after_rule[i + 1])}));
        b_.SetBody(first_rule[i], Expr::Alt({std::move(lead), Expr::Rule(first_rule[i + 1])}));
      }
    }
    return Expr::Seq({Expr::Byte('{'), Expr::Rule(first_rule[0]), Expr::Byte('}')});
  }

  absl::StatusOr<Expr> ArraySchema(const json& s, const std::string& path) {
    if (s.contains("uniqueItems") && s["uniqueItems"] == true) {
      if (absl::Status st = Unenforced(path, "uniqueItems"); !st.ok()) return st;
    }
    if (s.contains("contains")) {
      if (absl::Status st = Unenforced(path, "contains"); !st.ok()) return st;
    }
    absl::StatusOr<int> min = Count(s, "minItems", path, 0);
    if (!min.ok()) return min.status();
    absl::StatusOr<int> max = Count(s, "maxItems", path, -1);
    if (!max.ok()) return max.status();
    if (*max >= 0 && *max < *min) return Invalid(path, "'maxItems' is below 'minItems'");
    std::vector<Expr> prefix;
    const json* tuple = s.contains("prefixItems")                        ? &s["prefixItems"]
                        : (s.contains("items") && s["items"].is_array()) ? &s["items"]
                                                                         : nullptr;
    if (tuple != nullptr) {
      for (size_t i = 0; i < tuple->size(); ++i) {
        absl::StatusOr<Expr> e = Compile((*tuple)[i], absl::StrCat(path, "/prefixItems/", i));
        if (!e.ok()) return e;
        prefix.push_back(*std::move(e));
      }
    }
    std::optional<Expr> rest;
    if (s.contains("items") && !s["items"].is_array()) {
      if (!(s["items"].is_boolean() && !s["items"].get<bool>())) {
        absl::StatusOr<Expr> e = Compile(s["items"], path + "/items");
        if (!e.ok()) return e;
        rest = *std::move(e);
      }
    } else if (tuple == nullptr) {
      rest = AnyValue();
    } else if (s.contains("additionalItems") || s.contains("items")) {
      // draft-4 tuples with items as a list: no more items (relaxed below if allowed)
    }
    // The tuple's items come first; shorter arrays are allowed down to minItems.
    const Expr sep = Expr::Seq({Expr::Byte(','), Ws()});
    const int k = static_cast<int>(prefix.size());
    if (*max >= 0 && *max < k) prefix.resize(static_cast<size_t>(*max));
    // Build: items[0..k) each optional after minItems, then rest repeated.
    std::vector<Expr> alts;
    // count = number of items; body(count) = item0 sep item1 ...
    const int rest_min = std::max(0, *min - k);
    const int rest_max = *max < 0 ? -1 : std::max(0, *max - k);
    Expr tail = Expr::Empty();
    if (rest && rest_max != 0) {
      tail = Expr::Repeat(Expr::Seq({sep, *rest}), rest_min, rest_max);
    } else if (rest_min > 0) {
      return Invalid(path, "'minItems' asks for more items than the schema admits");
    }
    if (k == 0) {
      if (!rest || rest_max == 0) {
        if (*min > 0) return Invalid(path, "'minItems' asks for items the schema does not admit");
        return Expr::Literal("[]");
      }
      const int first_min = *min > 0 ? 1 : 0;
      Expr body = Expr::Seq({*rest, Expr::Repeat(Expr::Seq({sep, *rest}), std::max(0, *min - 1),
                                                 *max < 0 ? -1 : std::max(0, *max - 1))});
      if (first_min) return Expr::Seq({Expr::Byte('['), std::move(body), Expr::Byte(']')});
      return Expr::Seq({Expr::Byte('['), Expr::Optional(std::move(body)), Expr::Byte(']')});
    }
    // With a tuple: [p0, p1, ..., p(j-1)] for j from minItems (capped at k) to k, then
    // the rest only when all k are there.
    const int shortest = std::min(*min, k);
    for (int j = shortest; j <= k; ++j) {
      std::vector<Expr> seq = {Expr::Byte('[')};
      for (int i = 0; i < j; ++i) {
        if (i > 0) seq.push_back(sep);
        seq.push_back(prefix[static_cast<size_t>(i)]);
      }
      if (j == k) seq.push_back(tail);
      seq.push_back(Expr::Byte(']'));
      alts.push_back(Expr::Seq(std::move(seq)));
    }
    return Expr::Alt(std::move(alts));
  }

  const json& root_;
  const JsonOptions& options_;
  GrammarBuilder& b_;
  absl::flat_hash_map<std::string, int> refs_;
  int any_value_ = -1, char_rule_ = -1, number_rule_ = -1, escape_tail_ = -1;
  absl::flat_hash_map<std::pair<int, int>, int> string_bodies_;  // (min, max) -> body rule
  int depth_ = 0;
  bool exclusive_ = false;
};

}  // namespace

absl::StatusOr<std::shared_ptr<const Grammar>> CompileJsonObject(const JsonOptions& options,
                                                                 const Limits& limits) {
  GrammarBuilder builder(limits);
  const json empty = json::object();
  SchemaCompiler c(empty, options, builder);
  const int root = builder.AddRule("root");
  builder.SetBody(root, c.AnyObject());
  return std::move(builder).Build(root);
}

absl::StatusOr<std::shared_ptr<const Grammar>> CompileJsonSchema(absl::string_view schema,
                                                                 const JsonOptions& options,
                                                                 const Limits& limits) {
  const json parsed = json::parse(schema, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return absl::InvalidArgumentError("the schema is not valid JSON");
  GrammarBuilder builder(limits);
  SchemaCompiler c(parsed, options, builder);
  const int root = builder.AddRule("root");
  absl::StatusOr<Expr> body = c.Compile(parsed, "");
  if (!body.ok()) return body.status();
  builder.SetBody(root, *std::move(body));
  return std::move(builder).Build(root);
}

absl::StatusOr<std::shared_ptr<const Grammar>> CompileJsonSchemaFramed(absl::string_view schema,
                                                                       const JsonFraming& framing,
                                                                       const JsonOptions& options,
                                                                       const Limits& limits) {
  const json parsed = json::parse(schema, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return absl::InvalidArgumentError("the schema is not valid JSON");
  if (framing.min < 1 || (framing.max >= 0 && framing.max < framing.min)) {
    return absl::InvalidArgumentError("the framing needs 1 <= min <= max");
  }
  GrammarBuilder builder(limits);
  SchemaCompiler c(parsed, options, builder);
  const int root = builder.AddRule("root");
  const int item = builder.AddRule("item");
  absl::StatusOr<Expr> value = c.Compile(parsed, "");
  if (!value.ok()) return value.status();
  builder.SetBody(item, Expr::Seq({Expr::Literal(framing.prefix), *std::move(value),
                                   Expr::Literal(framing.suffix)}));
  const int more_min = framing.min - 1, more_max = framing.max < 0 ? -1 : framing.max - 1;
  builder.SetBody(
      root, Expr::Seq({Expr::Literal(framing.open), Expr::Rule(item),
                       Expr::Repeat(Expr::Seq({Expr::Literal(framing.separator), Expr::Rule(item)}),
                                    more_min, more_max),
                       Expr::Literal(framing.close)}));
  return std::move(builder).Build(root);
}

}  // namespace sluice::grammar
