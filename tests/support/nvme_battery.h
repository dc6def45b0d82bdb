// The NVMe command battery: one fixed sequence of register reads, identify and feature
// queries, deliberately invalid commands and a data round trip, run by the guest driver
// over any GuestBus. Each step yields an Observation (a name and a printable value), so the
// same battery run against QEMU 7.2's nvme device and against Ferry's can be compared line
// by line (tests/nvme_qemu_diff_test.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "guest/guest_bus.h"
#include "support/observation.h"

namespace ferry::testing {

struct BatteryOptions {
  std::string image_path;           // the raw image behind the namespace, for the data check
  uint64_t ram_bytes = 256 << 20;   // guest RAM size; DMA memory is [16 MiB, ram_bytes)
  uint64_t unbacked_address = 0x4000000000ull;  // guest-physical address with nothing behind it
};

// Runs every step; a failing step is recorded as its value ("error: ..."), and the battery
// goes on unless the controller cannot be brought up at all.
std::vector<Observation> run_battery(guest::GuestBus& bus, const BatteryOptions& options);

}  // namespace ferry::testing
