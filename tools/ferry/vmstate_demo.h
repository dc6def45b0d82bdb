// `ferry demo` until live migration exists: the most end-to-end path available today,
// an NVMe-like device state through VMState into a file and back, verified.
#pragma once

#include <string>

namespace ferry::tools {

struct VmstateDemoOptions {
  bool print_vmdesc = false;  // print the vmdesc JSON the save produced
  std::string keep_dir;       // keep the stream file there instead of a temporary dir
};

// Prints a step-by-step report; returns the process exit code (0 = every check passed).
int run_vmstate_demo(const VmstateDemoOptions& options);

}  // namespace ferry::tools
