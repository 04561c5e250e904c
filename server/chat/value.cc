#include "server/chat/value.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/chat/text_util.h"

namespace sluice::chat {
namespace {

constexpr int kMaxReprDepth = 200;
constexpr int kMaxJsonDepth = 512;
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
      return "";
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

absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& json, int max_depth) {
  if (max_depth <= 0) return absl::InvalidArgumentError("JSON value nested too deeply");
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::None();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::Bool(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::Int(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = json.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::Float(static_cast<double>(u));
      return Value::Int(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::Float(json.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::String(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) {
        absl::StatusOr<Value> v = FromJson(item, max_depth - 1);
        if (!v.ok()) return v.status();
        items.push_back(*std::move(v));
      }
      return Value::MakeList(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      auto dict = std::make_shared<Dict>();
      for (const auto& [key, item] : json.items()) {
        absl::StatusOr<Value> v = FromJson(item, max_depth - 1);
        if (!v.ok()) return v.status();
        dict->Set(key, *std::move(v));
      }
      return Value::MakeDict(std::move(dict));
    }
    default:
      return absl::InvalidArgumentError("unsupported JSON value (binary or discarded)");
  }
}

namespace {

absl::Status AppendJson(const Value& value, const JsonOptions& options, int level,
                        std::string* out) {
  using T = Value::Type;
  if (level > kMaxJsonDepth) return absl::InvalidArgumentError("tojson: value nested too deeply");
  auto newline = [&](int depth) {
    out->push_back('\n');
    out->append(static_cast<size_t>(options.indent) * depth, ' ');
  };
  const char* item_sep = options.indent < 0 ? ", " : ",";
  switch (value.type()) {
    case T::kNone:
      *out += "null";
      return absl::OkStatus();
    case T::kBool:
      *out += value.bool_value() ? "true" : "false";
      return absl::OkStatus();
    case T::kInt:
      *out += absl::StrCat(value.int_value());
      return absl::OkStatus();
    case T::kFloat: {
      const double d = value.AsDouble();
      if (std::isnan(d)) {
        *out += "NaN";
      } else if (std::isinf(d)) {
        *out += d > 0 ? "Infinity" : "-Infinity";
      } else {
        *out += PyFloatRepr(d);
      }
      return absl::OkStatus();
    }
    case T::kString:
      AppendJsonString(value.str(), options.ensure_ascii, out);
      return absl::OkStatus();
    case T::kList: {
      const auto& items = value.list().items;
      if (items.empty()) {
        *out += "[]";
        return absl::OkStatus();
      }
      out->push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) *out += item_sep;
        if (options.indent >= 0) newline(level + 1);
        absl::Status s = AppendJson(items[i], options, level + 1, out);
        if (!s.ok()) return s;
      }
      if (options.indent >= 0) newline(level);
      out->push_back(']');
      return absl::OkStatus();
    }
    case T::kDict: {
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& entry : value.dict().items) entries.push_back(&entry);
      if (options.sort_keys) {
        std::sort(entries.begin(), entries.end(),
                  [](const auto* a, const auto* b) { return a->first < b->first; });
      }
      if (entries.empty()) {
        *out += "{}";
        return absl::OkStatus();
      }
      out->push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) *out += item_sep;
        if (options.indent >= 0) newline(level + 1);
        AppendJsonString(entries[i]->first, options.ensure_ascii, out);
        *out += ": ";
        absl::Status s = AppendJson(entries[i]->second, options, level + 1, out);
        if (!s.ok()) return s;
      }
      if (options.indent >= 0) newline(level);
      out->push_back('}');
      return absl::OkStatus();
    }
    case T::kUndefined:
    case T::kCallable:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("Object of type ", value.TypeName(), " is not JSON serializable"));
}

}  // namespace

absl::StatusOr<std::string> ToJson(const Value& value, const JsonOptions& options) {
  std::string out;
  absl::Status s = AppendJson(value, options, 0, &out);
  if (!s.ok()) return s;
  return out;
}

}  // namespace sluice::chat
