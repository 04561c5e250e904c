// Runtime values of the chat-template language: Python's None, bool, int, float, str, list,
// dict, plus jinja2's Undefined and callables (macros, global functions, bound methods).
#ifndef SLUICE_SERVER_CHAT_VALUE_H_
#define SLUICE_SERVER_CHAT_VALUE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace sluice::chat {

struct List;
struct Dict;
struct Callable;

// Thread safety: lists and dicts are shared between copies; only namespace dicts are
// mutated, and only by the render that created them.
class Value {
 public:
  enum class Type { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kCallable };

  // An Undefined; `name` is what the template asked for, for error messages.
  static Value Undefined(std::string name = "");
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double d);
  static Value String(std::string s);
  static Value MakeList(std::vector<Value> items, bool is_tuple = false);
  static Value MakeDict(std::shared_ptr<Dict> dict);
  static Value MakeCallable(std::shared_ptr<const Callable> callable);

  Value() = default;

  Type type() const { return type_; }
  bool is_undefined() const { return type_ == Type::kUndefined; }
  bool is_none() const { return type_ == Type::kNone; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_list() const { return type_ == Type::kList; }
  bool is_dict() const { return type_ == Type::kDict; }
  bool is_callable() const { return type_ == Type::kCallable; }
  // Bool, int and float (Python's bool is an int).
  bool is_number() const {
    return type_ == Type::kBool || type_ == Type::kInt || type_ == Type::kFloat;
  }
  bool is_integral() const { return type_ == Type::kBool || type_ == Type::kInt; }

  bool bool_value() const { return bool_; }
  // REQUIRES: is_integral().
  int64_t int_value() const { return type_ == Type::kBool ? bool_ : int_; }
  // REQUIRES: is_number().
  double AsDouble() const { return type_ == Type::kFloat ? float_ : int_value(); }
  // The string payload; for an Undefined, the name it was looked up by.
  const std::string& str() const { return str_; }
  const List& list() const { return *list_; }
  Dict& dict() const { return *dict_; }
  const Callable& callable() const { return *callable_; }

  // Python truthiness; Undefined is false.
  bool Truthy() const;
  // Python's str(): None -> "None", True -> "True", lists as repr; Undefined -> "".
  std::string ToString() const;
  // Python's repr().
  std::string Repr() const;
  // Python's type name, for error messages ("str", "NoneType", ...).
  std::string TypeName() const;

 private:
  std::string ContainerRepr(int depth) const;

  Type type_ = Type::kUndefined;
  bool bool_ = false;
  int64_t int_ = 0;
  double float_ = 0;
  std::string str_;
  std::shared_ptr<const List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<const Callable> callable_;
};

struct List {
  std::vector<Value> items;
  bool is_tuple = false;
};

struct Stmt;

// Something a template can call.
struct Callable {
  enum class Kind { kGlobal, kMethod, kMacro };
  Kind kind = Kind::kGlobal;
  std::string name;             // Function or method name.
  Value receiver;               // kMethod: the object the method is bound to.
  const Stmt* macro = nullptr;  // kMacro: the definition, owned by the parsed template.
};

// Insertion-ordered string-keyed mapping (Python dicts keep insertion order).
struct Dict {
  // Returns the value for `key`, or null.
  const Value* Find(const std::string& key) const;
  // Inserts or overwrites, keeping the first insertion's position.
  void Set(const std::string& key, Value value);

  std::vector<std::pair<std::string, Value>> items;
  absl::flat_hash_map<std::string, size_t> index;  // Built once items outgrow a scan.
  static constexpr size_t kNotFound = static_cast<size_t>(-1);
  size_t FindIndex(const std::string& key) const;

  // A namespace() object: the only kind `{% set ns.attr = ... %}` may assign to.
  bool is_namespace = false;
};

// Checks a value about to become a namespace attribute. Namespaces are the only mutable
// values, so this keeps every value acyclic and shallow: InvalidArgument when `value`
// holds a namespace or nests deeper than 256 levels.
absl::Status CheckNamespaceAttribute(const Value& value);

// Python ==, with 1 == 1.0 == True; Undefined equals only Undefined.
bool Equal(const Value& a, const Value& b);
// Python <; InvalidArgument when the types cannot be ordered.
absl::StatusOr<bool> Less(const Value& a, const Value& b);

// Converts JSON, keeping object key order. InvalidArgument when nested deeper than
// `max_depth`.
absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& json, int max_depth);

struct JsonOptions {
  int indent = -1;  // < 0: one line with ", " and ": " separators.
  bool sort_keys = false;
  bool ensure_ascii = false;  // Escape non-ASCII as \uXXXX.
};
// Python's json.dumps(value, ...) (transformers' tojson). InvalidArgument for Undefined and
// callables.
absl::StatusOr<std::string> ToJson(const Value& value, const JsonOptions& options);

}  // namespace sluice::chat

#endif  // SLUICE_SERVER_CHAT_VALUE_H_
