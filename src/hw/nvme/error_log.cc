// The Error Information log: what gets an entry, the entry layout, the checks a migrated
// log must pass, and the controller's two ways of adding one — a command that completes
// with an error worth logging (its completion then carries the More bit, "see the error
// log"), and an error of no command (an invalid doorbell write).
#include "hw/nvme/error_log.h"

#include <algorithm>

#include <fmt/format.h>

#include "hw/nvme/command_fields.h"
#include "hw/nvme/controller.h"
#include "spec/nvme.h"

namespace ferry::nvme {

namespace sn = spec::nvme;

namespace {

constexpr uint64_t kMaxErrorCount = 0xffffffffull;  // then it rolls over to 1

// Byte offsets inside a 64-byte entry (NVMe 1.4 Figure 194).
constexpr size_t kEntryErrorCount = 0, kEntrySqId = 8, kEntryCid = 10, kEntryStatus = 12,
                 kEntryParameterLocation = 14, kEntryLba = 16, kEntryNsid = 24;

// The first LBA a failed NVM command touched, where the command names one.
uint64_t command_lba(const Request& request) {
  if (request.sq_id == 0) return 0;
  switch (request.sqe[sn::kSqeOpcode]) {
    case sn::kNvmRead:
    case sn::kNvmWrite:
    case sn::kNvmCompare:
    case sn::kNvmWriteZeroes: return uint64_t{cdw(request, 11)} << 32 | cdw(request, 10);
    default: return 0;
  }
}

}  // namespace

bool error_worth_logging(uint16_t status) {
  switch (status & 0x7ff) {
    case sn::kDataTransferError:
    case sn::kInternalError:
    case sn::kCapacityExceeded:
    case sn::kWriteFault:
    case sn::kUnrecoveredReadError: return true;
    default: return false;
  }
}

uint64_t next_error_count(uint64_t count) {
  return count >= kMaxErrorCount ? 1 : count + 1;
}

void encode_error_log(const std::deque<ErrorLogEntry>& log, std::span<uint8_t> out) {
  std::fill(out.begin(), out.end(), uint8_t{0});
  size_t at = 0;
  for (const ErrorLogEntry& e : log) {
    if (at + sn::kErrorLogEntrySize > out.size()) break;
    std::span<uint8_t> entry = out.subspan(at, sn::kErrorLogEntrySize);
    store_le(entry, kEntryErrorCount, e.error_count, 8);
    store_le(entry, kEntrySqId, e.sq_id, 2);
    store_le(entry, kEntryCid, e.cid, 2);
    store_le(entry, kEntryStatus, uint32_t{e.status} << 1, 2);  // phase tag bit 0 left 0
    store_le(entry, kEntryParameterLocation, e.parameter_error_location, 2);
    store_le(entry, kEntryLba, e.lba, 8);
    store_le(entry, kEntryNsid, e.nsid, 4);
    at += sn::kErrorLogEntrySize;
  }
}

Status check_error_log(const std::deque<ErrorLogEntry>& log) {
  auto error = [](size_t index, std::string message) {
    Status st(ErrorCode::kCorrupt, std::move(message));
    return std::move(st.prepend_path(fmt::format("error_log[{}]", index)));
  };
  if (log.size() > kErrorLogEntries)
    return Error(ErrorCode::kCorrupt, "{} error log entries, above the {} the log holds",
                 log.size(), kErrorLogEntries);
  for (size_t i = 0; i < log.size(); ++i) {
    const ErrorLogEntry& e = log[i];
    if (e.error_count == 0 || e.error_count > kMaxErrorCount)
      return error(i, fmt::format("error count {:#x} is outside [1, {:#x}]", e.error_count,
                                  kMaxErrorCount));
    if (i > 0 && next_error_count(e.error_count) != log[i - 1].error_count)
      return error(i, fmt::format("error count {:#x} does not precede the newer entry's {:#x} "
                                  "(entries are consecutive, newest first)",
                                  e.error_count, log[i - 1].error_count));
    if (e.status & 0x8000)
      return error(i, fmt::format("status {:#x} has more than 15 bits", e.status));
  }
  return {};
}

// ---- the controller's side ------------------------------------------------------------------

void Controller::record_error(ErrorLogEntry entry) {
  std::deque<ErrorLogEntry>& log = state_.error_log;
  entry.error_count = next_error_count(log.empty() ? 0 : log.front().error_count);
  log.push_front(entry);
  if (log.size() > kErrorLogEntries) log.pop_back();
}

uint16_t Controller::log_command_error(const Request& request, uint16_t status) {
  if (!error_worth_logging(status)) return status;
  status |= sn::kStatusMore;  // the error log has more about this command
  record_error(ErrorLogEntry{.sq_id = request.sq_id,
                             .cid = request.cid,
                             .status = status,
                             .lba = command_lba(request),
                             .nsid = request.nsid});
  return status;
}

void Controller::invalid_doorbell_write(uint8_t info) {
  if (!enabled()) return;  // no queues, nothing processes doorbells
  // Not a command: queue and command ids stay FFFFh; the status is the nearest one a
  // command naming that queue or value would get.
  record_error(ErrorLogEntry{.status = info == sn::kAerInfoErrorInvalidDoorbell
                                           ? sn::kInvalidQueueIdentifier
                                           : sn::kInvalidField});
  // Spec 1.4 §4.1: reported as an asynchronous event when an AER is outstanding.
  if (!state_.aer.outstanding.empty())
    enqueue_event(sn::kAerTypeError, info, sn::kLogErrorInformation);
}

}  // namespace ferry::nvme
