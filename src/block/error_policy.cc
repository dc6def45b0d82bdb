#include "block/error_policy.h"

#include <cerrno>

namespace ferry::block {

std::string_view error_policy_name(ErrorPolicy policy) {
  switch (policy) {
    case ErrorPolicy::kReport: return "report";
    case ErrorPolicy::kIgnore: return "ignore";
    case ErrorPolicy::kStop: return "stop";
    case ErrorPolicy::kEnospc: return "enospc";
  }
  return "?";
}

std::optional<ErrorPolicy> error_policy_from_name(std::string_view name) {
  for (ErrorPolicy p : {ErrorPolicy::kReport, ErrorPolicy::kIgnore, ErrorPolicy::kStop,
                        ErrorPolicy::kEnospc})
    if (error_policy_name(p) == name) return p;
  return std::nullopt;
}

std::string_view error_action_name(ErrorAction action) {
  switch (action) {
    case ErrorAction::kReport: return "report";
    case ErrorAction::kIgnore: return "ignore";
    case ErrorAction::kStop: return "stop";
  }
  return "?";
}

std::string_view io_status_name(IoStatus status) {
  switch (status) {
    case IoStatus::kOk: return "ok";
    case IoStatus::kFailed: return "failed";
    case IoStatus::kNoSpace: return "nospace";
  }
  return "?";
}

ErrorAction decide_error_action(ErrorPolicy policy, int error) {
  switch (policy) {
    case ErrorPolicy::kReport: return ErrorAction::kReport;
    case ErrorPolicy::kIgnore: return ErrorAction::kIgnore;
    case ErrorPolicy::kStop: return ErrorAction::kStop;
    case ErrorPolicy::kEnospc: return error == ENOSPC ? ErrorAction::kStop : ErrorAction::kReport;
  }
  return ErrorAction::kReport;
}

}  // namespace ferry::block
