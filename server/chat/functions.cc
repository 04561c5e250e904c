// Tests (value is name), bound methods of strings and dicts, and global functions.
#include <algorithm>
#include <ctime>
#include <iterator>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/chat/builtins.h"
#include "server/chat/text_util.h"

namespace sluice::chat {
namespace {

using Args = std::vector<Value>;

absl::StatusOr<Value> NeedString(std::string_view what, const Value& v) {
  if (!v.is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what), "() argument must be str, not ", v.TypeName()));
  }
  return v;
}

// startswith / endswith accept a string or a tuple of strings.
absl::StatusOr<bool> AffixMatch(std::string_view what, const std::string& s, const Value& affix,
                                bool prefix) {
  std::vector<Value> options;
  if (affix.is_list()) {
    options = affix.list().items;
  } else {
    options.push_back(affix);
  }
  for (const Value& option : options) {
    SLUICE_RETURN_IF_ERROR(NeedString(what, option).status());
    const std::string& a = option.str();
    if (a.size() > s.size()) continue;
    if (prefix ? s.compare(0, a.size(), a) == 0
               : s.compare(s.size() - a.size(), a.size(), a) == 0) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<Value> StringMethod(const std::string& s, std::string_view name, const Args& args,
                                   const Kwargs& kwargs, const SizeLimits& limits) {
  auto bind = [&](std::vector<std::string_view> names) {
    return BindArgs(name, names, args, kwargs);
  };
  if (name == "startswith" || name == "endswith") {
    SLUICE_ASSIGN_OR_RETURN(Args a, bind({"affix"}));
    SLUICE_ASSIGN_OR_RETURN(bool match, AffixMatch(name, s, a[0], name == "startswith"));
    return Value::Bool(match);
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    SLUICE_ASSIGN_OR_RETURN(Args a, bind({"chars"}));
    const bool given = !a[0].is_undefined() && !a[0].is_none();
    if (given) SLUICE_RETURN_IF_ERROR(NeedString(name, a[0]).status());
    const StripSide side = name == "strip"    ? StripSide::kBoth
                           : name == "lstrip" ? StripSide::kLeft
                                              : StripSide::kRight;
    return Value::String(PyStrip(s, given ? &a[0].str() : nullptr, side));
  }
  if (name == "split") {
    SLUICE_ASSIGN_OR_RETURN(Args a, bind({"sep", "maxsplit"}));
    const bool given = !a[0].is_undefined() && !a[0].is_none();
    if (given) SLUICE_RETURN_IF_ERROR(NeedString(name, a[0]).status());
    if (given && a[0].str().empty()) return absl::InvalidArgumentError("empty separator");
    const int64_t maxsplit = a[1].is_integral() ? a[1].int_value() : -1;
    std::vector<Value> parts;
    for (std::string& p : PySplit(s, given ? &a[0].str() : nullptr, maxsplit)) {
      parts.push_back(Value::String(std::move(p)));
    }
    return Value::MakeList(std::move(parts));
  }
  if (name == "replace") {
    SLUICE_ASSIGN_OR_RETURN(Args a, bind({"old", "new", "count"}));
    SLUICE_RETURN_IF_ERROR(NeedString(name, a[0]).status());
    SLUICE_RETURN_IF_ERROR(NeedString(name, a[1]).status());
    std::string out =
        PyReplace(s, a[0].str(), a[1].str(), a[2].is_integral() ? a[2].int_value() : -1);
    if (out.size() > limits.max_string_bytes) {
      return absl::InvalidArgumentError("string exceeds the size limit");
    }
    return Value::String(std::move(out));
  }
  if (name == "find" || name == "count") {
    SLUICE_ASSIGN_OR_RETURN(Args a, bind({"sub"}));
    SLUICE_RETURN_IF_ERROR(NeedString(name, a[0]).status());
    const std::string& sub = a[0].str();
    if (name == "find") {
      const size_t pos = s.find(sub);
      if (pos == std::string::npos) return Value::Int(-1);
      return Value::Int(static_cast<int64_t>(CodePointCount(std::string_view(s).substr(0, pos))));
    }
    if (sub.empty()) return Value::Int(static_cast<int64_t>(CodePointCount(s)) + 1);
    int64_t n = 0;
    for (size_t pos = s.find(sub); pos != std::string::npos; pos = s.find(sub, pos + sub.size())) {
      ++n;
    }
    return Value::Int(n);
  }
  if (name == "join") {
    SLUICE_ASSIGN_OR_RETURN(Args a, bind({"iterable"}));
    SLUICE_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(a[0]));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      SLUICE_RETURN_IF_ERROR(NeedString(name, items[i]).status());
      if (i > 0) out += s;
      out += items[i].str();
      if (out.size() > limits.max_string_bytes) {
        return absl::InvalidArgumentError("string exceeds the size limit");
      }
    }
    return Value::String(std::move(out));
  }
  SLUICE_RETURN_IF_ERROR(bind({}).status());
  if (name == "upper") return Value::String(ToUpper(s));
  if (name == "lower") return Value::String(ToLower(s));
  if (name == "title") return Value::String(Title(s));
  if (name == "capitalize") return Value::String(Capitalize(s));
  if (name == "splitlines") {
    std::vector<Value> lines;
    size_t start = 0;
    while (start < s.size()) {
      size_t end = s.find_first_of("\r\n", start);
      if (end == std::string::npos) end = s.size();
      lines.push_back(Value::String(s.substr(start, end - start)));
      start = end + (s.compare(end, 2, "\r\n") == 0 ? 2 : 1);
    }
    return Value::MakeList(std::move(lines));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'str' object has no method '", std::string(name), "'"));
}

absl::StatusOr<Value> DictMethod(const Dict& d, std::string_view name, const Args& args,
                                 const Kwargs& kwargs) {
  if (name == "get") {
    SLUICE_ASSIGN_OR_RETURN(Args a, BindArgs(name, {"key", "default"}, args, kwargs));
    const Value* v = a[0].is_string() ? d.Find(a[0].str()) : nullptr;
    if (v != nullptr) return *v;
    return a[1].is_undefined() ? Value::None() : a[1];
  }
  SLUICE_RETURN_IF_ERROR(BindArgs(name, {}, args, kwargs).status());
  std::vector<Value> out;
  for (const auto& [k, v] : d.items) {
    if (name == "items") {
      out.push_back(Value::MakeList({Value::String(k), v}, /*is_tuple=*/true));
    } else {
      out.push_back(name == "keys" ? Value::String(k) : v);
    }
  }
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> Range(const Args& args, const SizeLimits& limits) {
  if (args.empty() || args.size() > 3)
    return absl::InvalidArgumentError("range() takes 1 to 3 arguments");
  for (const Value& a : args) {
    if (!a.is_integral()) return absl::InvalidArgumentError("range() arguments must be integers");
  }
  const int64_t start = args.size() == 1 ? 0 : args[0].int_value();
  const int64_t stop = args.size() == 1 ? args[0].int_value() : args[1].int_value();
  const int64_t step = args.size() == 3 ? args[2].int_value() : 1;
  if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  const double count = std::max(0.0, std::ceil((static_cast<double>(stop) - start) / step));
  if (count > static_cast<double>(limits.max_list_items)) {
    return absl::InvalidArgumentError("range() exceeds the size limit");
  }
  std::vector<Value> items;
  for (int64_t i = 0; i < static_cast<int64_t>(count); ++i)
    items.push_back(Value::Int(start + i * step));
  return Value::MakeList(std::move(items));
}

constexpr std::string_view kUnaryTests[] = {
    "defined",  "undefined", "none",    "string", "mapping", "iterable",
    "sequence", "number",    "integer", "float",  "boolean", "true",
    "false",    "callable",  "lower",   "upper",  "odd",     "even"};
constexpr std::string_view kBinaryTests[] = {
    "divisibleby", "eq", "equalto", "==",          "ne", "!=", "sameas", "in", "lt",
    "lessthan",    "<",  "gt",      "greaterthan", ">",  "le", "<=",     "ge", ">="};

absl::StatusOr<bool> UnaryTest(std::string_view name, const Value& value) {
  using T = Value::Type;
  const T t = value.type();
  if (name == "defined") return t != T::kUndefined;
  if (name == "undefined") return t == T::kUndefined;
  if (name == "none") return t == T::kNone;
  if (name == "string") return t == T::kString;
  if (name == "mapping") return t == T::kDict;
  if (name == "iterable") {
    return t == T::kList || t == T::kDict || t == T::kString || t == T::kUndefined;
  }
  if (name == "sequence") return t == T::kList || t == T::kDict || t == T::kString;
  if (name == "number") return value.is_number();
  if (name == "integer") return t == T::kInt;
  if (name == "float") return t == T::kFloat;
  if (name == "boolean") return t == T::kBool;
  if (name == "true") return t == T::kBool && value.bool_value();
  if (name == "false") return t == T::kBool && !value.bool_value();
  if (name == "callable") return t == T::kCallable;
  if (name == "lower") return value.is_string() && ToLower(value.str()) == value.str();
  if (name == "upper") return value.is_string() && ToUpper(value.str()) == value.str();
  if (!value.is_integral()) {  // odd, even
    return absl::InvalidArgumentError(
        absl::StrCat("test '", std::string(name), "' needs an integer"));
  }
  return (value.int_value() % 2 != 0) == (name == "odd");
}

}  // namespace

bool IsKnownTest(std::string_view name) {
  return std::find(std::begin(kUnaryTests), std::end(kUnaryTests), name) != std::end(kUnaryTests) ||
         std::find(std::begin(kBinaryTests), std::end(kBinaryTests), name) !=
             std::end(kBinaryTests);
}

absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& value, const Args& args) {
  if (std::find(std::begin(kUnaryTests), std::end(kUnaryTests), name) != std::end(kUnaryTests)) {
    if (!args.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("test '", std::string(name), "' takes no arguments"));
    }
    return UnaryTest(name, value);
  }
  if (!IsKnownTest(name)) {
    return absl::InvalidArgumentError(absl::StrCat("no test named '", std::string(name), "'"));
  }
  if (args.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("test '", std::string(name), "' takes one argument"));
  }
  const Value& other = args[0];
  if (name == "divisibleby") {
    if (!value.is_integral() || !other.is_integral() || other.int_value() == 0) {
      return absl::InvalidArgumentError("divisibleby needs integers and a non-zero divisor");
    }
    return value.int_value() % other.int_value() == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return Equal(value, other);
  if (name == "ne" || name == "!=") return !Equal(value, other);
  if (name == "sameas") return value.type() == other.type() && Equal(value, other);
  if (name == "in") return Contains(other, value);
  if (name == "lt" || name == "lessthan" || name == "<") return Less(value, other);
  if (name == "gt" || name == "greaterthan" || name == ">") return Less(other, value);
  if (name == "le" || name == "<=") {
    SLUICE_ASSIGN_OR_RETURN(bool greater, Less(other, value));
    return !greater;
  }
  SLUICE_ASSIGN_OR_RETURN(bool less, Less(value, other));  // ge, >=
  return !less;
}

absl::StatusOr<Value> CallMethod(const Value& receiver, std::string_view name, const Args& args,
                                 const Kwargs& kwargs, const SizeLimits& limits) {
  if (receiver.is_string()) return StringMethod(receiver.str(), name, args, kwargs, limits);
  if (receiver.is_dict()) return DictMethod(receiver.dict(), name, args, kwargs);
  return absl::InvalidArgumentError(
      absl::StrCat("'", receiver.TypeName(), "' object has no method '", std::string(name), "'"));
}

bool IsGlobalFunction(std::string_view name) {
  return name == "range" || name == "namespace" || name == "dict" || name == "raise_exception" ||
         name == "strftime_now";
}

absl::StatusOr<Value> CallGlobal(std::string_view name, const Args& args, const Kwargs& kwargs,
                                 const SizeLimits& limits) {
  if (name == "range") {
    if (!kwargs.empty()) return absl::InvalidArgumentError("range() takes no keyword arguments");
    return Range(args, limits);
  }
  if (name == "namespace" || name == "dict") {
    auto dict = std::make_shared<Dict>();
    dict->is_namespace = name == "namespace";
    if (args.size() > 1 || (args.size() == 1 && !args[0].is_dict())) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(name), "() takes an optional mapping"));
    }
    if (args.size() == 1) {
      for (const auto& [k, v] : args[0].dict().items) {
        if (dict->is_namespace) SLUICE_RETURN_IF_ERROR(CheckNamespaceAttribute(v));
        dict->Set(k, v);
      }
    }
    for (const auto& [k, v] : kwargs) {
      if (dict->is_namespace) SLUICE_RETURN_IF_ERROR(CheckNamespaceAttribute(v));
      dict->Set(k, v);
    }
    return Value::MakeDict(std::move(dict));
  }
  if (name == "raise_exception") {
    SLUICE_ASSIGN_OR_RETURN(Args a, BindArgs(name, {"message"}, args, kwargs));
    return absl::InvalidArgumentError(a[0].ToString());
  }
  if (name == "strftime_now") {
    SLUICE_ASSIGN_OR_RETURN(Args a, BindArgs(name, {"format"}, args, kwargs));
    SLUICE_RETURN_IF_ERROR(NeedString(name, a[0]).status());
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buf[256];
    const size_t n = std::strftime(buf, sizeof(buf), a[0].str().c_str(), &local);
    return Value::String(std::string(buf, n));
  }
  return absl::InvalidArgumentError(absl::StrCat("'", std::string(name), "' is undefined"));
}

}  // namespace sluice::chat
