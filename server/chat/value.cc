#include "server/chat/value.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/chat/text_util.h"

namespace sluice::chat {
namespace {

constexpr int kMaxReprDepth = 200;
constexpr int kMaxStoredDepth = 256;
// Dicts up to this size are searched linearly and carry no hash index.
constexpr size_t kLinearLookupMax = 8;

}  // namespace

Value Value::Undefined(std::string name) {
  Value v;
  v.str_ = std::move(name);
  return v;
}

Value Value::None() {
  Value v;
  v.type_ = Type::kNone;
  return v;
}

Value Value::Bool(bool b) {
  Value v;
  v.type_ = Type::kBool;
  v.bool_ = b;
  return v;
}

Value Value::Int(int64_t i) {
  Value v;
  v.type_ = Type::kInt;
  v.int_ = i;
  return v;
}

Value Value::Float(double d) {
  Value v;
  v.type_ = Type::kFloat;
  v.float_ = d;
  return v;
}

Value Value::String(std::string s) {
  Value v;
  v.type_ = Type::kString;
  v.str_ = std::move(s);
  return v;
}

Value Value::MakeList(std::vector<Value> items, bool is_tuple) {
  Value v;
  v.type_ = Type::kList;
  auto list = std::make_shared<List>();
  list->items = std::move(items);
  list->is_tuple = is_tuple;
  v.list_ = std::move(list);
  return v;
}

Value Value::MakeDict(std::shared_ptr<Dict> dict) {
  Value v;
  v.type_ = Type::kDict;
  v.dict_ = std::move(dict);
  return v;
}

Value Value::MakeCallable(std::shared_ptr<const Callable> callable) {
  Value v;
  v.type_ = Type::kCallable;
  v.callable_ = std::move(callable);
  return v;
}

bool Value::Truthy() const {
  switch (type_) {
    case Type::kUndefined:
    case Type::kNone:
      return false;
    case Type::kBool:
      return bool_;
    case Type::kInt:
      return int_ != 0;
    case Type::kFloat:
      return float_ != 0;
    case Type::kString:
      return !str_.empty();
    case Type::kList:
      return !list_->items.empty();
    case Type::kDict:
      return !dict_->items.empty();
    case Type::kCallable:
      return true;
  }
  return false;
}

std::string Value::ToString() const {
  switch (type_) {
    case Type::kUndefined:
      return "";
    case Type::kString:
      return str_;
    default:
      return Repr();
  }
}

std::string Value::Repr() const {
  if (type_ == Type::kList || type_ == Type::kDict) return ContainerRepr(0);
  switch (type_) {
    case Type::kUndefined:
      return "Undefined";
    case Type::kNone:
      return "None";
    case Type::kBool:
      return bool_ ? "True" : "False";
    case Type::kInt:
      return absl::StrCat(int_);
    case Type::kFloat:
      return PyFloatRepr(float_);
    case Type::kString:
      return PyStringRepr(str_);
    case Type::kList:
    case Type::kDict:
      break;
    case Type::kCallable:
      return absl::StrCat("<function ", callable_->name, ">");
  }
  return "";
}

std::string Value::ContainerRepr(int depth) const {
  auto item_repr = [depth](const Value& v) {
    return v.is_list() || v.is_dict() ? v.ContainerRepr(depth + 1) : v.Repr();
  };
  if (depth > kMaxReprDepth) return "...";
  if (type_ == Type::kList) {
    std::string out = list_->is_tuple ? "(" : "[";
    for (size_t i = 0; i < list_->items.size(); ++i) {
      if (i > 0) out += ", ";
      out += item_repr(list_->items[i]);
    }
    if (list_->is_tuple && list_->items.size() == 1) out += ",";
    return out + (list_->is_tuple ? ")" : "]");
  }
  std::string out = dict_->is_namespace ? "<Namespace {" : "{";
  for (size_t i = 0; i < dict_->items.size(); ++i) {
    if (i > 0) out += ", ";
    out += PyStringRepr(dict_->items[i].first) + ": " + item_repr(dict_->items[i].second);
  }
  return out + (dict_->is_namespace ? "}>" : "}");
}

std::string Value::TypeName() const {
  static const char* const kNames[] = {"Undefined", "NoneType", "bool", "int",     "float",
                                       "str",       "list",     "dict", "function"};
  if (type_ == Type::kList && list_->is_tuple) return "tuple";
  return kNames[static_cast<int>(type_)];
}

size_t Dict::FindIndex(const std::string& key) const {
  if (index.empty()) {
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i].first == key) return i;
    }
    return kNotFound;
  }
  const auto it = index.find(key);
  return it == index.end() ? kNotFound : it->second;
}

const Value* Dict::Find(const std::string& key) const {
  const size_t i = FindIndex(key);
  return i == kNotFound ? nullptr : &items[i].second;
}

void Dict::Set(const std::string& key, Value value) {
  if (const size_t i = FindIndex(key); i != kNotFound) {
    items[i].second = std::move(value);
    return;
  }
  items.emplace_back(key, std::move(value));
  if (items.size() == kLinearLookupMax + 1) {
    for (size_t i = 0; i < items.size(); ++i) index.emplace(items[i].first, i);
  } else if (items.size() > kLinearLookupMax) {
    index.emplace(key, items.size() - 1);
  }
}

namespace {

absl::Status CheckStorable(const Value& value, int depth) {
  if (depth > kMaxStoredDepth) {
    return absl::InvalidArgumentError("value stored in a namespace is nested too deeply");
  }
  if (value.is_dict()) {
    if (value.dict().is_namespace) {
      return absl::InvalidArgumentError("a namespace cannot be stored inside a namespace");
    }
    for (const auto& [k, v] : value.dict().items) {
      SLUICE_RETURN_IF_ERROR(CheckStorable(v, depth + 1));
    }
  } else if (value.is_list()) {
    for (const Value& v : value.list().items) SLUICE_RETURN_IF_ERROR(CheckStorable(v, depth + 1));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckNamespaceAttribute(const Value& value) { return CheckStorable(value, 1); }

bool Equal(const Value& a, const Value& b) {
  using T = Value::Type;
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.int_value() == b.int_value();
    return a.AsDouble() == b.AsDouble();
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case T::kUndefined:
    case T::kNone:
      return true;
    case T::kString:
      return a.str() == b.str();
    case T::kList: {
      const auto& x = a.list().items;
      const auto& y = b.list().items;
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!Equal(x[i], y[i])) return false;
      }
      return true;
    }
    case T::kDict: {
      const Dict& x = a.dict();
      const Dict& y = b.dict();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, v] : x.items) {
        const Value* other = y.Find(k);
        if (other == nullptr || !Equal(v, *other)) return false;
      }
      return true;
    }
    case T::kCallable:
      return &a.callable() == &b.callable();
    default:
      return false;
  }
}

absl::StatusOr<bool> Less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.int_value() < b.int_value();
    return a.AsDouble() < b.AsDouble();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();
  if (a.is_list() && b.is_list()) {
    const auto& x = a.list().items;
    const auto& y = b.list().items;
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
      if (Equal(x[i], y[i])) continue;
      return Less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  return absl::InvalidArgumentError(absl::StrCat("'<' not supported between instances of '",
                                                 a.TypeName(), "' and '", b.TypeName(), "'"));
}

}  // namespace sluice::chat
