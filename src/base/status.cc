#include "base/status.h"

namespace ferry {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "OK";
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kCorrupt: return "corrupt input";
    case ErrorCode::kOutOfRange: return "out of range";
    case ErrorCode::kVersionMismatch: return "version mismatch";
    case ErrorCode::kFailedPrecondition: return "failed precondition";
    case ErrorCode::kIo: return "I/O error";
    case ErrorCode::kInternal: return "internal error";
  }
  return "unknown error";
}

void Status::RepDeleter::operator()(Rep* rep) const { delete rep; }

Status::Status(ErrorCode code, std::string message)
    : rep_(new Rep{code, std::move(message), {}}) {
  assert(code != ErrorCode::kOk);
}

Status::Status(const Status& other)
    : rep_(other.rep_ ? new Rep(*other.rep_) : nullptr) {}

Status& Status::operator=(const Status& other) {
  if (this != &other) rep_.reset(other.rep_ ? new Rep(*other.rep_) : nullptr);
  return *this;
}

std::string Status::to_string() const {
  if (!rep_) return "OK";
  if (rep_->path.empty()) return rep_->message;
  return rep_->path + ": " + rep_->message;
}

Status& Status::prepend_path(std::string_view segment) {
  if (!rep_ || segment.empty()) return *this;
  std::string& path = rep_->path;
  if (path.empty()) {
    path.assign(segment);
  } else if (path.front() == '[') {
    path.insert(0, segment);
  } else {
    path.insert(0, 1, '/');
    path.insert(0, segment);
  }
  return *this;
}

Status& Status::prepend_message(std::string_view context) {
  if (rep_) rep_->message.insert(0, std::string(context) + ": ");
  return *this;
}

}  // namespace ferry
