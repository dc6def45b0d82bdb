// `ferry demo`: the project's main job. A source ferry-vm runs the `verify` guest program
// (crc32c-verifying random writes, bs=4k, iodepth=16) on an NVMe controller with two
// namespaces backed by temporary files; it is live-migrated to a destination ferry-vm on
// this machine while the workload runs, and back, as many round trips as asked. Progress
// bars during each migration; at the end a table: total time, downtime, the per-device
// stop-and-copy breakdown, the I/O stall the guest saw, workload IOPS before and after,
// and the verification result. Exits non-zero on any verification error, NVMe error or
// failed migration.
#pragma once

#include <cstdint>
#include <string>

namespace ferry::tools {

struct LiveDemoOptions {
  uint64_t ram_mib = 256;
  std::string transport = "tcp";  // or "unix"
  int round_trips = 1;            // each is a migration there and one back
  bool json = false;              // print the final report as JSON instead of a table
  bool quiet = false;             // no progress bars (also when stdout is not a terminal)
};

// Prints progress and a report; returns the exit code (0 = every check passed).
int run_live_demo(const LiveDemoOptions& options, const std::string& ferry_vm_path);

}  // namespace ferry::tools
