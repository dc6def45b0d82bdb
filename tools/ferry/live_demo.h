// `ferry demo`: live migration between two ferry-vm processes on this machine, there and
// back, with guest RAM content and device state written before and verified after each
// hop. (The NVMe controller under a verifying guest workload joins it once those exist.)
#pragma once

#include <cstdint>
#include <string>

namespace ferry::tools {

struct LiveDemoOptions {
  uint64_t ram_mib = 256;
  std::string transport = "unix";  // or "tcp"
  int round_trips = 1;             // each is a migration there and one back
};

// Prints progress and a report; returns the exit code (0 = every check passed).
int run_live_demo(const LiveDemoOptions& options, const std::string& ferry_vm_path);

}  // namespace ferry::tools
