// Errors as values. A Status is either OK (no allocation, one null pointer) or an error
// carrying a code, a message, and a path naming where in a structure it happened
// ("nvme/sq[3]/size"). Paths are built while an error unwinds, so the success path never
// pays for them.
#pragma once

#include <cassert>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace ferry {

enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,     // a caller or a description broke a rule
  kCorrupt,             // input bytes are malformed (hostile or damaged stream)
  kOutOfRange,          // input ended early, or a value exceeds a declared bound
  kVersionMismatch,     // incoming version outside [minimum_version, version]
  kFailedPrecondition,  // object not in the state the operation needs
  kIo,                  // operating-system I/O failed
  kInternal,            // a bug
};

std::string_view error_code_name(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(ErrorCode code, std::string message);

  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  static Status Ok() { return Status(); }

  bool ok() const { return rep_ == nullptr; }
  ErrorCode code() const { return rep_ ? rep_->code : ErrorCode::kOk; }
  // The message without the path.
  std::string_view message() const { return rep_ ? std::string_view(rep_->message) : ""; }
  // Where the error happened, outermost first, e.g. "nvme/sq[3]/size"; empty if unknown.
  std::string_view path() const { return rep_ ? std::string_view(rep_->path) : ""; }
  // "path: message", or "message" when there is no path, or "OK".
  std::string to_string() const;

  // Prepends one path segment while an error unwinds. Segments starting with '[' attach
  // without a separator ("sq" + "[3]" -> "sq[3]"), others are joined with '/'.
  Status& prepend_path(std::string_view segment);
  // Prepends context to the message ("while loading section 3: ...").
  Status& prepend_message(std::string_view context);

 private:
  struct Rep {
    ErrorCode code;
    std::string message;
    std::string path;
  };
  // Destroying a Rep is out of line so that the inline destructor of an OK Status is
  // just a null test: an unrolled save or load handles one Status per field.
  struct RepDeleter {
    void operator()(Rep* rep) const;
  };
  std::unique_ptr<Rep, RepDeleter> rep_;
};

template <typename... Args>
Status Error(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
  return Status(code, fmt::format(format, std::forward<Args>(args)...));
}

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  Status take_status() { return ok() ? Status() : std::move(std::get<Status>(v_)); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace ferry

// Returns early from the enclosing function when `expr` yields an error Status.
// (The one macro in the project: control flow cannot be expressed by a function.)
#define FERRY_RETURN_IF_ERROR(...)               \
  do {                                           \
    ::ferry::Status ferry_status_ = (__VA_ARGS__); \
    if (!ferry_status_.ok()) return ferry_status_; \
  } while (0)
