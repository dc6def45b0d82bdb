// QMP commands: the handler type, a registry, and argument checking with QEMU's error
// wording, so that every command reports wrong input the same way:
//   missing:    "Parameter 'uri' is missing"
//   wrong type: "Invalid parameter type for 'uri', expected: string"
//   unknown:    "Parameter 'foo' is unexpected"
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace ferry::vm {

// Ordered, so replies keep the member order handlers build (QEMU's documented shapes).
using Json = nlohmann::ordered_json;

// Takes the request's `arguments` object (empty when absent) and returns the `return`
// value. An error becomes {"error": {"class": "GenericError", "desc": message}}.
using QmpHandler = std::function<Result<Json>(const Json& arguments)>;
// A handler whose errors may belong to another of QEMU's classes (set_link's unknown name
// is "DeviceNotFound"): it sets `error_class`, which starts as "GenericError".
using QmpClassedHandler =
    std::function<Result<Json>(const Json& arguments, std::string& error_class)>;

class QmpCommands {
 public:
  // Refuses duplicate and empty names.
  Status add(std::string name, QmpHandler handler);
  Status add(std::string name, QmpClassedHandler handler);
  const QmpClassedHandler* find(std::string_view name) const;
  std::vector<std::string> names() const;  // sorted

 private:
  std::map<std::string, QmpClassedHandler, std::less<>> handlers_;
};

// Reads typed members of an `arguments` object; `finish` then refuses members that no
// one asked for. Integers must be integral JSON numbers that fit the type; anything else
// (1.5, 1e300, 2^64) is refused in QEMU's words, never converted.
class QmpArgs {
 public:
  explicit QmpArgs(const Json& arguments) : args_(arguments) {}

  Result<std::string> string(std::string_view name);
  Result<std::optional<std::string>> optional_string(std::string_view name);
  Result<int64_t> integer(std::string_view name);
  Result<std::optional<int64_t>> optional_integer(std::string_view name);
  // QEMU's uint64 arguments: "Parameter 'x' expects uint64" for any other value; a
  // negative integer is taken modulo 2^64, as QEMU does for backward compatibility.
  Result<std::optional<uint64_t>> optional_uint64(std::string_view name);
  Result<bool> boolean(std::string_view name);
  Result<std::optional<bool>> optional_boolean(std::string_view name);
  // Objects and arrays, returned as they are for the handler to walk.
  Result<Json> object(std::string_view name);
  Result<std::optional<Json>> optional_object(std::string_view name);
  Result<std::optional<Json>> optional_array(std::string_view name);

  Status finish() const;

 private:
  enum class Kind { kString, kInteger, kBoolean, kObject, kArray };
  // The member if present and of the right kind; nullopt if absent; an error otherwise.
  Result<std::optional<Json>> member(std::string_view name, Kind kind);

  const Json& args_;
  std::set<std::string, std::less<>> used_;
};

}  // namespace ferry::vm
