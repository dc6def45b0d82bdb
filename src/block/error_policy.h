// What happens when the host storage fails a request: the -drive werror=/rerror= policy
// (QEMU's BlockdevOnError), the action it picks for one failure (QEMU's
// BlockErrorAction), and the drive's I/O status that `query-block` reports.
//
//   report  the device completes the request with an error status (the guest sees it)
//   ignore  the device completes the request as if it had succeeded
//   stop    the VM pauses (run state io-error); the device holds the request and retries
//           it when the VM continues, so the guest never sees the error
//   enospc  stop when the error is ENOSPC (host disk full), report anything else
//
// Defaults as in QEMU: werror=enospc, rerror=report. The policy is applied by the device
// (which knows how to hold and retry its requests) through BlockBackend::error_action and
// BlockBackend::report_error; this layer only decides and records.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace ferry::block {

enum class ErrorPolicy : uint8_t { kReport, kIgnore, kStop, kEnospc };
enum class ErrorAction : uint8_t { kReport, kIgnore, kStop };
// "ok" until a request stopped the VM; "failed" or "nospace" then, until `cont`.
enum class IoStatus : uint8_t { kOk, kFailed, kNoSpace };

std::string_view error_policy_name(ErrorPolicy policy);  // "report", "ignore", "stop", "enospc"
std::optional<ErrorPolicy> error_policy_from_name(std::string_view name);
std::string_view error_action_name(ErrorAction action);  // "report", "ignore", "stop"
std::string_view io_status_name(IoStatus status);        // "ok", "failed", "nospace"

// The action for one failed request; `error` is a positive errno.
ErrorAction decide_error_action(ErrorPolicy policy, int error);

}  // namespace ferry::block
