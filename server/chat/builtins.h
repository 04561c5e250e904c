// The operations, filters, tests, methods and global functions of the template language,
// with Python / jinja2 semantics. All are pure functions of their arguments.
#ifndef SLUICE_SERVER_CHAT_BUILTINS_H_
#define SLUICE_SERVER_CHAT_BUILTINS_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "server/chat/value.h"

namespace sluice::chat {

using Kwargs = std::vector<std::pair<std::string, Value>>;

// Caps on values built while rendering, so that a template cannot exhaust memory.
struct SizeLimits {
  size_t max_string_bytes = 1 << 20;
  size_t max_list_items = 1'000'000;
};

// obj.name: dict items (and the dict methods get/items/keys/values), string methods,
// Undefined for anything else. InvalidArgument when `obj` is Undefined.
absl::StatusOr<Value> GetAttribute(const Value& obj, const std::string& name);
// obj[key]: dict lookup, list and string indexing (negative counts from the end);
// Undefined when missing or out of range. InvalidArgument when `obj` is Undefined.
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
// obj[start:stop:step] on lists and strings; null bounds are omitted ones.
absl::StatusOr<Value> Slice(const Value& obj, const Value* start, const Value* stop,
                            const Value* step);
// Arithmetic and concatenation: + - * / // % ** ~.
absl::StatusOr<Value> BinaryOp(std::string_view op, const Value& a, const Value& b,
                               const SizeLimits& limits);
// Python's `item in container`.
absl::StatusOr<bool> Contains(const Value& container, const Value& item);
// The items a for-loop visits: list items, dict keys, string code points; none for
// Undefined.
absl::StatusOr<std::vector<Value>> Iterate(const Value& value);

// Whether a filter or test of this name exists.
bool IsKnownFilter(std::string_view name);
bool IsKnownTest(std::string_view name);

// value | name(args, kwargs).
absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& input,
                                  const std::vector<Value>& args, const Kwargs& kwargs,
                                  const SizeLimits& limits);
// value is name(args).
absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& value,
                               const std::vector<Value>& args);
// receiver.name(args, kwargs) for the bound methods GetAttribute hands out.
absl::StatusOr<Value> CallMethod(const Value& receiver, std::string_view name,
                                 const std::vector<Value>& args, const Kwargs& kwargs,
                                 const SizeLimits& limits);

// Global functions: range, namespace, dict, raise_exception, strftime_now.
bool IsGlobalFunction(std::string_view name);
absl::StatusOr<Value> CallGlobal(std::string_view name, const std::vector<Value>& args,
                                 const Kwargs& kwargs, const SizeLimits& limits);

// Binds positional and keyword arguments to `names` in order; unbound ones are left
// Undefined. InvalidArgument for too many or unknown arguments; `what` names the callee.
absl::StatusOr<std::vector<Value>> BindArgs(std::string_view what,
                                            const std::vector<std::string_view>& names,
                                            const std::vector<Value>& args, const Kwargs& kwargs);

}  // namespace sluice::chat

#endif  // SLUICE_SERVER_CHAT_BUILTINS_H_
