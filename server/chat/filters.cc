// Filters (value | name) and tests (value is name), as jinja2 and transformers define them.
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "server/chat/builtins.h"
#include "server/chat/text_util.h"

namespace sluice::chat {
namespace {

using Args = std::vector<Value>;
using FilterFn = absl::StatusOr<Value> (*)(const Value& in, const Args& a, const SizeLimits&);

absl::Status Error(std::string_view filter, std::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat("filter '", std::string(filter), "': ", std::string(message)));
}

bool Given(const Value& v) { return !v.is_undefined() && !v.is_none(); }

absl::StatusOr<int64_t> IntArg(std::string_view filter, const Value& v, int64_t fallback) {
  if (!Given(v)) return fallback;
  if (!v.is_integral()) return Error(filter, "expected an integer argument");
  return v.int_value();
}

// jinja2's attribute argument of filters: a dotted path of keys and list indices.
absl::StatusOr<Value> LookupPath(const Value& item, const std::string& path) {
  Value v = item;
  for (const std::string& part : std::vector<std::string>(absl::StrSplit(path, '.'))) {
    const bool is_index = !part.empty() && std::all_of(part.begin(), part.end(),
                                                       [](char c) { return c >= '0' && c <= '9'; });
    const Value key =
        is_index ? Value::Int(std::strtoll(part.c_str(), nullptr, 10)) : Value::String(part);
    SLUICE_ASSIGN_OR_RETURN(v, GetItem(v, key));
  }
  return v;
}

absl::StatusOr<Value> CheckedString(std::string s, const SizeLimits& limits) {
  if (s.size() > limits.max_string_bytes) {
    return absl::InvalidArgumentError("string exceeds the size limit");
  }
  return Value::String(std::move(s));
}

absl::StatusOr<Value> Trim(const Value& in, const Args& a, const SizeLimits&) {
  const std::string chars = a[0].ToString();
  return Value::String(PyStrip(in.ToString(), Given(a[0]) ? &chars : nullptr, StripSide::kBoth));
}

absl::StatusOr<Value> ToJsonFilter(const Value& in, const Args& a, const SizeLimits& limits) {
  JsonOptions options;
  options.ensure_ascii = a[0].Truthy();
  SLUICE_ASSIGN_OR_RETURN(options.indent, IntArg("tojson", a[1], -1));
  if (Given(a[2])) return Error("tojson", "custom separators are not supported");
  options.sort_keys = a[3].Truthy();
  SLUICE_ASSIGN_OR_RETURN(std::string json, ToJson(in, options));
  return CheckedString(std::move(json), limits);
}

absl::StatusOr<Value> Length(const Value& in, const Args&, const SizeLimits&) {
  switch (in.type()) {
    case Value::Type::kUndefined:
      return Value::Int(0);
    case Value::Type::kString:
      return Value::Int(static_cast<int64_t>(CodePointCount(in.str())));
    case Value::Type::kList:
      return Value::Int(static_cast<int64_t>(in.list().items.size()));
    case Value::Type::kDict:
      return Value::Int(static_cast<int64_t>(in.dict().items.size()));
    default:
      return Error("length", absl::StrCat("object of type '", in.TypeName(), "' has no len()"));
  }
}

absl::StatusOr<Value> Upper(const Value& in, const Args&, const SizeLimits&) {
  return Value::String(ToUpper(in.ToString()));
}
absl::StatusOr<Value> Lower(const Value& in, const Args&, const SizeLimits&) {
  return Value::String(ToLower(in.ToString()));
}
absl::StatusOr<Value> CapitalizeFilter(const Value& in, const Args&, const SizeLimits&) {
  return Value::String(Capitalize(in.ToString()));
}

// jinja2's title: a letter is upper-cased after '-', '(', '{', '[', '<' or whitespace.
absl::StatusOr<Value> TitleFilter(const Value& in, const Args&, const SizeLimits&) {
  std::vector<char32_t> cps = DecodeUtf8(in.ToString());
  bool word_start = true;
  for (char32_t& cp : cps) {
    const bool separator =
        IsPyWhitespace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
    const std::string one = EncodeUtf8({cp});
    if (!separator) cp = DecodeUtf8(word_start ? ToUpper(one) : ToLower(one))[0];
    word_start = separator;
  }
  return Value::String(EncodeUtf8(cps));
}

absl::StatusOr<Value> Default(const Value& in, const Args& a, const SizeLimits&) {
  const bool use_default = a[1].Truthy() ? !in.Truthy() : in.is_undefined();
  if (!use_default) return in;
  return a[0].is_undefined() ? Value::String("") : a[0];
}

absl::StatusOr<Value> First(const Value& in, const Args&, const SizeLimits&) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
  return items.empty() ? Value::Undefined("first") : items.front();
}

absl::StatusOr<Value> Last(const Value& in, const Args&, const SizeLimits&) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
  return items.empty() ? Value::Undefined("last") : items.back();
}

absl::StatusOr<Value> Join(const Value& in, const Args& a, const SizeLimits& limits) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
  const std::string sep = a[0].ToString();
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep;
    if (Given(a[1])) {
      SLUICE_ASSIGN_OR_RETURN(Value item, LookupPath(items[i], a[1].ToString()));
      out += item.ToString();
    } else {
      out += items[i].ToString();
    }
    if (out.size() > limits.max_string_bytes) return CheckedString(std::move(out), limits);
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Replace(const Value& in, const Args& a, const SizeLimits& limits) {
  SLUICE_ASSIGN_OR_RETURN(const int64_t count, IntArg("replace", a[2], -1));
  return CheckedString(PyReplace(in.ToString(), a[0].ToString(), a[1].ToString(), count), limits);
}

absl::StatusOr<Value> Items(const Value& in, const Args&, const SizeLimits&) {
  std::vector<Value> pairs;
  if (in.is_undefined()) return Value::MakeList(std::move(pairs));
  if (!in.is_dict()) return Error("items", "expected a mapping");
  for (const auto& [k, v] : in.dict().items) {
    pairs.push_back(Value::MakeList({Value::String(k), v}, /*is_tuple=*/true));
  }
  return Value::MakeList(std::move(pairs));
}

absl::StatusOr<Value> ListFilter(const Value& in, const Args&, const SizeLimits&) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
  return Value::MakeList(std::move(items));
}

absl::StatusOr<Value> StringFilter(const Value& in, const Args&, const SizeLimits&) {
  return Value::String(in.ToString());
}

absl::StatusOr<Value> IntFilter(const Value& in, const Args& a, const SizeLimits&) {
  if (in.is_undefined()) return Error("int", "value is undefined");
  if (in.is_integral()) return Value::Int(in.int_value());
  if (in.is_number() && std::isfinite(in.AsDouble())) {
    return Value::Int(static_cast<int64_t>(std::trunc(in.AsDouble())));
  }
  if (in.is_string()) {
    const std::string s = PyStrip(in.str(), nullptr, StripSide::kBoth);
    char* end = nullptr;
    const long long i = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && *end == '\0') return Value::Int(i);
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && *end == '\0' && std::isfinite(d)) {
      return Value::Int(static_cast<int64_t>(std::trunc(d)));
    }
  }
  return a[0].is_undefined() ? Value::Int(0) : a[0];
}

absl::StatusOr<Value> FloatFilter(const Value& in, const Args& a, const SizeLimits&) {
  if (in.is_undefined()) return Error("float", "value is undefined");
  if (in.is_number()) return Value::Float(in.AsDouble());
  if (in.is_string()) {
    const std::string s = PyStrip(in.str(), nullptr, StripSide::kBoth);
    char* end = nullptr;
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && *end == '\0') return Value::Float(d);
  }
  return a[0].is_undefined() ? Value::Float(0) : a[0];
}

absl::StatusOr<Value> Round(const Value& in, const Args& a, const SizeLimits&) {
  if (!in.is_number()) return Error("round", "expected a number");
  SLUICE_ASSIGN_OR_RETURN(const int64_t precision, IntArg("round", a[0], 0));
  const std::string method = Given(a[1]) ? a[1].ToString() : "common";
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = in.AsDouble() * scale;
  double r = 0;
  if (method == "common") {
    r = std::nearbyint(x);  // NOTE: Python's round() rounds half to even.
  } else if (method == "ceil") {
    r = std::ceil(x);
  } else if (method == "floor") {
    r = std::floor(x);
  } else {
    return Error("round", "method must be 'common', 'ceil' or 'floor'");
  }
  return Value::Float(r / scale);
}

absl::StatusOr<Value> Abs(const Value& in, const Args&, const SizeLimits&) {
  if (in.is_integral()) return Value::Int(std::llabs(in.int_value()));
  if (in.is_number()) return Value::Float(std::fabs(in.AsDouble()));
  return Error("abs", "expected a number");
}

absl::StatusOr<Value> Reverse(const Value& in, const Args&, const SizeLimits&) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
  std::reverse(items.begin(), items.end());
  if (!in.is_string()) return Value::MakeList(std::move(items));
  std::string out;
  for (const Value& v : items) out += v.str();
  return Value::String(std::move(out));
}

// sort(reverse=False, case_sensitive=False, attribute=None); a stable sort.
absl::StatusOr<Value> Sort(const Value& in, const Args& a, const SizeLimits&) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
  std::vector<std::pair<Value, Value>> keyed;  // (key, item)
  for (Value& item : items) {
    Value key = item;
    if (Given(a[2])) {
      SLUICE_ASSIGN_OR_RETURN(key, LookupPath(item, a[2].ToString()));
    }
    if (key.is_string() && !a[1].Truthy()) key = Value::String(ToLower(key.str()));
    keyed.emplace_back(std::move(key), std::move(item));
  }
  absl::Status status;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    absl::StatusOr<bool> less = a[0].Truthy() ? Less(y.first, x.first) : Less(x.first, y.first);
    if (!less.ok()) status = less.status();
    return less.ok() && *less;
  });
  SLUICE_RETURN_IF_ERROR(status);
  std::vector<Value> out;
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> Safe(const Value& in, const Args&, const SizeLimits&) { return in; }

absl::StatusOr<Value> Escape(const Value& in, const Args&, const SizeLimits& limits) {
  std::string out;
  for (char c : in.ToString()) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return CheckedString(std::move(out), limits);
}

absl::StatusOr<Value> Indent(const Value& in, const Args& a, const SizeLimits& limits) {
  const std::string pad = a[0].is_string()
                              ? a[0].str()
                              : std::string(static_cast<size_t>(std::max<int64_t>(
                                                0, a[0].is_integral() ? a[0].int_value() : 4)),
                                            ' ');
  const std::string text = in.ToString();
  std::string out;
  size_t start = 0;
  for (size_t line = 0; start <= text.size(); ++line) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view content = std::string_view(text).substr(start, end - start);
    const bool blank = PyStrip(content, nullptr, StripSide::kBoth).empty();
    if ((line > 0 || a[1].Truthy()) && (!blank || a[2].Truthy())) out += pad;
    out.append(content);
    if (end == text.size()) break;
    out.push_back('\n');
    start = end + 1;
  }
  return CheckedString(std::move(out), limits);
}

struct FilterSpec {
  std::string_view name;
  std::vector<std::string_view> params;
  FilterFn fn;
};

const std::vector<FilterSpec>& Filters() {
  static const auto* const kFilters = new std::vector<FilterSpec>{
      {"trim", {"chars"}, Trim},
      {"tojson", {"ensure_ascii", "indent", "separators", "sort_keys"}, ToJsonFilter},
      {"length", {}, Length},
      {"count", {}, Length},
      {"upper", {}, Upper},
      {"lower", {}, Lower},
      {"capitalize", {}, CapitalizeFilter},
      {"title", {}, TitleFilter},
      {"default", {"default_value", "boolean"}, Default},
      {"d", {"default_value", "boolean"}, Default},
      {"first", {}, First},
      {"last", {}, Last},
      {"join", {"d", "attribute"}, Join},
      {"replace", {"old", "new", "count"}, Replace},
      {"items", {}, Items},
      {"list", {}, ListFilter},
      {"string", {}, StringFilter},
      {"int", {"default", "base"}, IntFilter},
      {"float", {"default"}, FloatFilter},
      {"round", {"precision", "method"}, Round},
      {"abs", {}, Abs},
      {"reverse", {}, Reverse},
      {"sort", {"reverse", "case_sensitive", "attribute"}, Sort},
      {"safe", {}, Safe},
      {"escape", {}, Escape},
      {"e", {}, Escape},
      {"indent", {"width", "first", "blank"}, Indent},
  };
  return *kFilters;
}

// select / reject / selectattr / rejectattr: keeps items whose test result is `keep`.
absl::StatusOr<Value> SelectFilter(std::string_view name, const Value& in, const Args& args,
                                   bool by_attribute, bool keep) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
  size_t next = 0;
  std::string attribute;
  if (by_attribute) {
    if (args.empty()) return Error(name, "missing attribute name");
    attribute = args[next++].ToString();
  }
  std::string test;
  if (next < args.size()) test = args[next++].ToString();
  const Args test_args(args.begin() + static_cast<std::ptrdiff_t>(next), args.end());
  std::vector<Value> out;
  for (const Value& item : items) {
    Value subject = item;
    if (by_attribute) {
      SLUICE_ASSIGN_OR_RETURN(subject, LookupPath(item, attribute));
    }
    bool passed = subject.Truthy();
    if (!test.empty()) {
      SLUICE_ASSIGN_OR_RETURN(passed, ApplyTest(test, subject, test_args));
    }
    if (passed == keep) out.push_back(item);
  }
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> MapFilter(const Value& in, const Args& args, const Kwargs& kwargs,
                                const SizeLimits& limits) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
  std::vector<Value> out;
  for (const auto& [key, value] : kwargs) {
    if (key != "attribute" && key != "default") return Error("map", "unexpected keyword argument");
  }
  if (!kwargs.empty()) {
    const Value* attribute = nullptr;
    const Value* fallback = nullptr;
    for (const auto& [key, value] : kwargs) (key == "attribute" ? attribute : fallback) = &value;
    if (attribute == nullptr) return Error("map", "missing attribute");
    for (const Value& item : items) {
      SLUICE_ASSIGN_OR_RETURN(Value v, LookupPath(item, attribute->ToString()));
      out.push_back(v.is_undefined() && fallback != nullptr ? *fallback : v);
    }
    return Value::MakeList(std::move(out));
  }
  if (args.empty()) return Error("map", "expected a filter name or attribute=");
  const std::string filter = args[0].ToString();
  const Args filter_args(args.begin() + 1, args.end());
  for (const Value& item : items) {
    SLUICE_ASSIGN_OR_RETURN(Value v, ApplyFilter(filter, item, filter_args, {}, limits));
    out.push_back(std::move(v));
  }
  return Value::MakeList(std::move(out));
}

}  // namespace

bool IsKnownFilter(std::string_view name) {
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr" ||
      name == "map") {
    return true;
  }
  for (const FilterSpec& spec : Filters()) {
    if (spec.name == name) return true;
  }
  return false;
}

absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& input,
                                  const std::vector<Value>& args, const Kwargs& kwargs,
                                  const SizeLimits& limits) {
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    if (!kwargs.empty()) return Error(name, "keyword arguments are not supported");
    return SelectFilter(name, input, args, name.size() > 6, name[0] == 's');
  }
  if (name == "map") return MapFilter(input, args, kwargs, limits);
  for (const FilterSpec& spec : Filters()) {
    if (spec.name != name) continue;
    SLUICE_ASSIGN_OR_RETURN(std::vector<Value> bound, BindArgs(name, spec.params, args, kwargs));
    return spec.fn(input, bound, limits);
  }
  return absl::InvalidArgumentError(absl::StrCat("no filter named '", std::string(name), "'"));
}

}  // namespace sluice::chat
