// ferry-vm's command line, QEMU style (design.md §7): parsed into a MachineConfig, or into
// text to print and exit (help and device listings). Errors name the option and value.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "vm/machine.h"

namespace ferry::vm {

struct CommandLine {
  MachineConfig machine;
  // When set, print this and exit 0 instead of starting a machine (-h, -device help, ...).
  std::string print_and_exit;
};

Result<CommandLine> parse_command_line(const std::vector<std::string>& args);

}  // namespace ferry::vm
