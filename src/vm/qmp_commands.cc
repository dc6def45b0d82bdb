#include "vm/qmp_commands.h"

namespace ferry::vm {

Status QmpCommands::add(std::string name, QmpHandler handler) {
  if (!handler) return add(std::move(name), QmpClassedHandler());
  return add(std::move(name),
             QmpClassedHandler([handler = std::move(handler)](const Json& arguments,
                                                              std::string&) {
               return handler(arguments);
             }));
}

Status QmpCommands::add(std::string name, QmpClassedHandler handler) {
  if (name.empty()) return Error(ErrorCode::kInvalidArgument, "QMP command name is empty");
  if (!handler) {
    return Error(ErrorCode::kInvalidArgument, "QMP command '{}' has no handler", name);
  }
  if (handlers_.count(name)) {
    return Error(ErrorCode::kFailedPrecondition, "QMP command '{}' is already registered", name);
  }
  handlers_.emplace(std::move(name), std::move(handler));
  return Status::Ok();
}

const QmpClassedHandler* QmpCommands::find(std::string_view name) const {
  auto it = handlers_.find(name);
  return it == handlers_.end() ? nullptr : &it->second;
}

std::vector<std::string> QmpCommands::names() const {
  std::vector<std::string> out;
  for (const auto& [name, handler] : handlers_) out.push_back(name);
  return out;
}

Result<std::optional<Json>> QmpArgs::member(std::string_view name, Kind kind) {
  used_.emplace(name);
  if (!args_.is_object()) return std::optional<Json>();
  auto it = args_.find(name);
  if (it == args_.end()) return std::optional<Json>();
  const Json& v = *it;
  bool right = false;
  std::string_view expected;
  switch (kind) {
    case Kind::kString:
      right = v.is_string();
      expected = "string";
      break;
    case Kind::kInteger:
      right = v.is_number_integer();
      expected = "integer";
      break;
    case Kind::kBoolean:
      right = v.is_boolean();
      expected = "boolean";
      break;
    case Kind::kObject:
      right = v.is_object();
      expected = "object";
      break;
    case Kind::kArray:
      right = v.is_array();
      expected = "array";
      break;
  }
  if (!right) {
    return Error(ErrorCode::kInvalidArgument, "Invalid parameter type for '{}', expected: {}", name,
                 expected);
  }
  return std::optional<Json>(v);
}

namespace {

template <typename T>
Result<T> required(Result<std::optional<T>> r, std::string_view name) {
  if (!r.ok()) return r.take_status();
  if (!r->has_value()) return Error(ErrorCode::kInvalidArgument, "Parameter '{}' is missing", name);
  return std::move(**r);
}

}  // namespace

Result<std::optional<std::string>> QmpArgs::optional_string(std::string_view name) {
  auto m = member(name, Kind::kString);
  if (!m.ok()) return m.take_status();
  if (!m->has_value()) return std::optional<std::string>();
  return std::optional<std::string>((*m)->get<std::string>());
}

Result<std::optional<int64_t>> QmpArgs::optional_integer(std::string_view name) {
  auto m = member(name, Kind::kInteger);
  if (!m.ok()) return m.take_status();
  if (!m->has_value()) return std::optional<int64_t>();
  const Json& v = **m;
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)) {
    return Error(ErrorCode::kInvalidArgument, "Invalid parameter type for '{}', expected: integer",
                 name);
  }
  return std::optional<int64_t>(v.get<int64_t>());
}

Result<std::optional<uint64_t>> QmpArgs::optional_uint64(std::string_view name) {
  used_.emplace(name);
  if (!args_.is_object()) return std::optional<uint64_t>();
  auto it = args_.find(name);
  if (it == args_.end()) return std::optional<uint64_t>();
  // The parser gives integers beyond 2^64 - 1 as doubles, so those land here too.
  if (it->is_number_unsigned()) return std::optional<uint64_t>(it->get<uint64_t>());
  if (it->is_number_integer())
    return std::optional<uint64_t>(static_cast<uint64_t>(it->get<int64_t>()));
  return Error(ErrorCode::kInvalidArgument, "Parameter '{}' expects uint64", name);
}

Result<std::optional<bool>> QmpArgs::optional_boolean(std::string_view name) {
  auto m = member(name, Kind::kBoolean);
  if (!m.ok()) return m.take_status();
  if (!m->has_value()) return std::optional<bool>();
  return std::optional<bool>((*m)->get<bool>());
}

Result<std::optional<Json>> QmpArgs::optional_object(std::string_view name) {
  return member(name, Kind::kObject);
}

Result<std::optional<Json>> QmpArgs::optional_array(std::string_view name) {
  return member(name, Kind::kArray);
}

Result<std::string> QmpArgs::string(std::string_view name) {
  return required(optional_string(name), name);
}
Result<int64_t> QmpArgs::integer(std::string_view name) {
  return required(optional_integer(name), name);
}
Result<bool> QmpArgs::boolean(std::string_view name) {
  return required(optional_boolean(name), name);
}
Result<Json> QmpArgs::object(std::string_view name) {
  return required(optional_object(name), name);
}

Status QmpArgs::finish() const {
  if (!args_.is_object()) return Status::Ok();
  for (const auto& [key, value] : args_.items()) {
    if (!used_.count(key)) {
      return Error(ErrorCode::kInvalidArgument, "Parameter '{}' is unexpected", key);
    }
  }
  return Status::Ok();
}

}  // namespace ferry::vm
