// Attribute and item access, slicing, arithmetic, membership and iteration.
#include <algorithm>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "server/chat/builtins.h"
#include "server/chat/text_util.h"

namespace sluice::chat {
namespace {

constexpr std::string_view kDictMethods[] = {"get", "items", "keys", "values"};
constexpr std::string_view kStringMethods[] = {
    "startswith", "endswith", "strip", "lstrip", "rstrip", "split",      "replace",   "upper",
    "lower",      "title",    "find",  "count",  "join",   "capitalize", "splitlines"};

template <size_t N>
bool InList(const std::string_view (&names)[N], std::string_view name) {
  for (std::string_view n : names) {
    if (n == name) return true;
  }
  return false;
}

Value BoundMethod(const Value& receiver, const std::string& name) {
  auto callable = std::make_shared<Callable>();
  callable->kind = Callable::Kind::kMethod;
  callable->name = name;
  callable->receiver = receiver;
  return Value::MakeCallable(std::move(callable));
}

absl::Status UndefinedError(const Value& v) {
  return absl::InvalidArgumentError(v.str().empty() ? "value is undefined"
                                                    : absl::StrCat("'", v.str(), "' is undefined"));
}

bool IsAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

absl::Status Unsupported(std::string_view op, const Value& a, const Value& b) {
  return absl::InvalidArgumentError(absl::StrCat("unsupported operand type(s) for ",
                                                 std::string(op), ": '", a.TypeName(), "' and '",
                                                 b.TypeName(), "'"));
}

absl::StatusOr<Value> Repeat(const Value& seq, int64_t count, const SizeLimits& limits) {
  if (count < 0) count = 0;
  if (seq.is_string()) {
    if (!seq.str().empty() &&
        static_cast<uint64_t>(count) > limits.max_string_bytes / seq.str().size()) {
      return absl::InvalidArgumentError("string repetition exceeds the size limit");
    }
    const size_t size = seq.str().size() * static_cast<size_t>(count);
    std::string out;
    out.reserve(size);
    if (size > 0) out = seq.str();
    while (out.size() < size) out.append(out, 0, std::min(out.size(), size - out.size()));
    return Value::String(std::move(out));
  }
  const auto& items = seq.list().items;
  if (!items.empty() && static_cast<uint64_t>(count) > limits.max_list_items / items.size()) {
    return absl::InvalidArgumentError("list repetition exceeds the size limit");
  }
  std::vector<Value> out;
  for (int64_t i = 0; i < count; ++i) out.insert(out.end(), items.begin(), items.end());
  return Value::MakeList(std::move(out), seq.list().is_tuple);
}

absl::StatusOr<Value> IntArith(std::string_view op, int64_t x, int64_t y) {
  int64_t r = 0;
  bool overflow = false;
  if (op == "+") {
    overflow = __builtin_add_overflow(x, y, &r);
  } else if (op == "-") {
    overflow = __builtin_sub_overflow(x, y, &r);
  } else if (op == "*") {
    overflow = __builtin_mul_overflow(x, y, &r);
  } else if (op == "//" || op == "%") {
    if (y == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
    if (x == INT64_MIN && y == -1) return absl::InvalidArgumentError("integer overflow");
    int64_t q = x / y;
    int64_t m = x % y;
    if (m != 0 && ((m < 0) != (y < 0))) {
      --q;
      m += y;
    }
    r = op == "//" ? q : m;
  } else if (op == "**") {
    if (y < 0) return Value::Float(std::pow(static_cast<double>(x), static_cast<double>(y)));
    r = 1;
    for (int64_t i = 0; i < y && !overflow; ++i) overflow = __builtin_mul_overflow(r, x, &r);
  }
  if (overflow)
    return absl::InvalidArgumentError(absl::StrCat("integer overflow in '", std::string(op), "'"));
  return Value::Int(r);
}

absl::StatusOr<Value> FloatArith(std::string_view op, double x, double y) {
  if ((op == "/" || op == "//" || op == "%") && y == 0) {
    return absl::InvalidArgumentError("float division by zero");
  }
  if (op == "+") return Value::Float(x + y);
  if (op == "-") return Value::Float(x - y);
  if (op == "*") return Value::Float(x * y);
  if (op == "/") return Value::Float(x / y);
  if (op == "//") return Value::Float(std::floor(x / y));
  if (op == "%") {
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    return Value::Float(m);
  }
  return Value::Float(std::pow(x, y));
}

}  // namespace

absl::StatusOr<Value> GetAttribute(const Value& obj, const std::string& name) {
  switch (obj.type()) {
    case Value::Type::kUndefined:
      return UndefinedError(obj);
    case Value::Type::kDict: {
      if (!obj.dict().is_namespace && InList(kDictMethods, name)) return BoundMethod(obj, name);
      const Value* v = obj.dict().Find(name);
      return v != nullptr ? *v : Value::Undefined(name);
    }
    case Value::Type::kString:
      if (InList(kStringMethods, name)) return BoundMethod(obj, name);
      return Value::Undefined(name);
    default:
      return Value::Undefined(name);
  }
}

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (obj.is_dict()) {
    if (!key.is_string()) return Value::Undefined();
    const Value* v = obj.dict().Find(key.str());
    return v != nullptr ? *v : Value::Undefined(key.str());
  }
  if (!key.is_integral() || !(obj.is_list() || obj.is_string())) return Value::Undefined();
  int64_t i = key.int_value();
  if (obj.is_list()) {
    const auto& items = obj.list().items;
    if (i < 0) i += static_cast<int64_t>(items.size());
    if (i < 0 || i >= static_cast<int64_t>(items.size())) return Value::Undefined();
    return items[static_cast<size_t>(i)];
  }
  if (IsAscii(obj.str())) {
    if (i < 0) i += static_cast<int64_t>(obj.str().size());
    if (i < 0 || i >= static_cast<int64_t>(obj.str().size())) return Value::Undefined();
    return Value::String(std::string(1, obj.str()[static_cast<size_t>(i)]));
  }
  const std::vector<char32_t> cps = DecodeUtf8(obj.str());
  if (i < 0) i += static_cast<int64_t>(cps.size());
  if (i < 0 || i >= static_cast<int64_t>(cps.size())) return Value::Undefined();
  std::string out;
  AppendUtf8(cps[static_cast<size_t>(i)], &out);
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Slice(const Value& obj, const Value* start, const Value* stop,
                            const Value* step) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (!obj.is_list() && !obj.is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("'", obj.TypeName(), "' cannot be sliced"));
  }
  for (const Value* bound : {start, stop, step}) {
    if (bound != nullptr && !bound->is_none() && !bound->is_integral()) {
      return absl::InvalidArgumentError("slice indices must be integers or None");
    }
  }
  auto given = [](const Value* v) { return v != nullptr && !v->is_none(); };
  const int64_t stride = given(step) ? step->int_value() : 1;
  if (stride == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  const bool ascii = obj.is_string() && IsAscii(obj.str());
  std::vector<char32_t> cps;
  if (obj.is_string() && !ascii) cps = DecodeUtf8(obj.str());
  const int64_t n = static_cast<int64_t>(obj.is_list() ? obj.list().items.size()
                                         : ascii       ? obj.str().size()
                                                       : cps.size());
  auto clamp = [&](const Value* v, int64_t fallback) {
    if (!given(v)) return fallback;
    int64_t i = v->int_value();
    if (i < 0) i += n;
    if (stride > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t first = clamp(start, stride > 0 ? 0 : n - 1);
  const int64_t last = clamp(stop, stride > 0 ? n : -1);
  std::vector<Value> items;
  std::string text;
  for (int64_t i = first; stride > 0 ? i < last : i > last; i += stride) {
    if (obj.is_list()) {
      items.push_back(obj.list().items[static_cast<size_t>(i)]);
    } else if (ascii) {
      text.push_back(obj.str()[static_cast<size_t>(i)]);
    } else {
      AppendUtf8(cps[static_cast<size_t>(i)], &text);
    }
  }
  if (obj.is_list()) return Value::MakeList(std::move(items), obj.list().is_tuple);
  return Value::String(std::move(text));
}

absl::StatusOr<Value> BinaryOp(std::string_view op, const Value& a, const Value& b,
                               const SizeLimits& limits) {
  if (op == "~") {
    std::string out = a.ToString() + b.ToString();
    if (out.size() > limits.max_string_bytes) {
      return absl::InvalidArgumentError("string exceeds the size limit");
    }
    return Value::String(std::move(out));
  }
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (a.is_number() && b.is_number()) {
    if (op == "/") return FloatArith(op, a.AsDouble(), b.AsDouble());
    if (a.is_integral() && b.is_integral()) return IntArith(op, a.int_value(), b.int_value());
    return FloatArith(op, a.AsDouble(), b.AsDouble());
  }
  if (op == "+" && a.is_string() && b.is_string()) {
    if (a.str().size() + b.str().size() > limits.max_string_bytes) {
      return absl::InvalidArgumentError("string exceeds the size limit");
    }
    return Value::String(a.str() + b.str());
  }
  if (op == "+" && a.is_list() && b.is_list()) {
    if (a.list().items.size() + b.list().items.size() > limits.max_list_items) {
      return absl::InvalidArgumentError("list exceeds the size limit");
    }
    std::vector<Value> items = a.list().items;
    items.insert(items.end(), b.list().items.begin(), b.list().items.end());
    return Value::MakeList(std::move(items), a.list().is_tuple);
  }
  if (op == "*" && (a.is_string() || a.is_list()) && b.is_integral()) {
    return Repeat(a, b.int_value(), limits);
  }
  if (op == "*" && a.is_integral() && (b.is_string() || b.is_list())) {
    return Repeat(b, a.int_value(), limits);
  }
  return Unsupported(op, a, b);
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  switch (container.type()) {
    case Value::Type::kUndefined:
      return false;
    case Value::Type::kString:
      if (!item.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat("'in <string>' requires string as left operand, not ", item.TypeName()));
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Type::kList:
      for (const Value& v : container.list().items) {
        if (Equal(v, item)) return true;
      }
      return false;
    case Value::Type::kDict:
      return item.is_string() && container.dict().Find(item.str()) != nullptr;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("argument of type '", container.TypeName(), "' is not iterable"));
  }
}

absl::StatusOr<std::vector<Value>> Iterate(const Value& value) {
  std::vector<Value> items;
  switch (value.type()) {
    case Value::Type::kUndefined:
      return items;
    case Value::Type::kList:
      return value.list().items;
    case Value::Type::kDict:
      for (const auto& [key, unused] : value.dict().items) items.push_back(Value::String(key));
      return items;
    case Value::Type::kString:
      for (char32_t cp : DecodeUtf8(value.str())) {
        std::string s;
        AppendUtf8(cp, &s);
        items.push_back(Value::String(std::move(s)));
      }
      return items;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("'", value.TypeName(), "' object is not iterable"));
  }
}

absl::StatusOr<std::vector<Value>> BindArgs(std::string_view what,
                                            const std::vector<std::string_view>& names,
                                            const std::vector<Value>& args, const Kwargs& kwargs) {
  if (args.size() > names.size()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), "() takes at most ",
                                                   names.size(), " arguments (", args.size(),
                                                   " given)"));
  }
  std::vector<Value> bound(names.size());
  std::vector<bool> is_set(names.size(), false);
  for (size_t i = 0; i < args.size(); ++i) {
    bound[i] = args[i];
    is_set[i] = true;
  }
  for (const auto& [key, value] : kwargs) {
    size_t i = 0;
    while (i < names.size() && names[i] != key) ++i;
    if (i == names.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(what), "() got an unexpected keyword argument '", key, "'"));
    }
    if (is_set[i]) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(what), "() got multiple values for argument '", key, "'"));
    }
    bound[i] = value;
    is_set[i] = true;
  }
  return bound;
}

}  // namespace sluice::chat
