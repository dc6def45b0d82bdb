// ferry-vm: the VM process. Parses a QEMU-style command line, builds the machine and runs
// its main loop until `quit` (QMP) or a fatal error.
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "base/event_loop.h"
#include "vm/command_line.h"
#include "vm/machine.h"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a client that goes away is an error value, not a signal
  std::vector<std::string> args(argv + 1, argv + argc);
  auto command_line = ferry::vm::parse_command_line(args);
  if (!command_line.ok()) {
    std::fprintf(stderr, "ferry-vm: %s\n", command_line.status().to_string().c_str());
    return 1;
  }
  if (!command_line->print_and_exit.empty()) {
    std::fputs(command_line->print_and_exit.c_str(), stdout);
    return 0;
  }
  auto loop = ferry::EventLoop::create();
  if (!loop.ok()) {
    std::fprintf(stderr, "ferry-vm: %s\n", loop.status().to_string().c_str());
    return 1;
  }
  auto machine = ferry::vm::Machine::create(**loop, std::move(command_line->machine));
  if (!machine.ok()) {
    std::fprintf(stderr, "ferry-vm: %s\n", machine.status().to_string().c_str());
    return 1;
  }
  ferry::Status st = (*loop)->run();
  if (!st.ok()) {
    std::fprintf(stderr, "ferry-vm: main loop: %s\n", st.to_string().c_str());
    return 1;
  }
  return (*machine)->exit_code();
}
