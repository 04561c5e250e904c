// Conversions between Values and JSON: FromJson for the render context, ToJson for the
// tojson filter.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/chat/text_util.h"
#include "server/chat/value.h"

namespace sluice::chat {
namespace {

constexpr int kMaxJsonDepth = 512;

}  // namespace

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
