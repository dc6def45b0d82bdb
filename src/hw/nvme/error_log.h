// The Error Information log (Get Log Page 01h, NVMe 1.4 §5.14.1.1) as plain rules: which
// completion statuses are worth an entry, how error counts advance, the 64-byte entry
// layout, and the checks a migrated log must pass. The controller keeps the entries in
// ControllerState::error_log (newest first) and records them in error_log.cc.
#pragma once

#include <cstdint>
#include <deque>
#include <span>

#include "base/status.h"
#include "hw/nvme/controller_state.h"

namespace ferry::nvme {

// Statuses that say something went wrong on the controller's side of the command — data
// transfer, media, capacity, internal — as opposed to a host's malformed command. Only
// those get an entry (and the More bit in their completion).
bool error_worth_logging(uint16_t status);

// The error count after `count`: 1, 2, ... FFFFFFFFh, then 1 again (the specification's
// roll-over rule).
uint64_t next_error_count(uint64_t count);

// The log page: kErrorLogEntries entries of 64 bytes, newest first, unused slots zero.
void encode_error_log(const std::deque<ErrorLogEntry>& log, std::span<uint8_t> out);

// A loaded log: at most kErrorLogEntries entries, counts in 1..FFFFFFFFh and consecutive
// from the newest back, status fields of 15 bits. Errors name the entry and the values.
Status check_error_log(const std::deque<ErrorLogEntry>& log);

}  // namespace ferry::nvme
