// ferry-vm: the VM process. Parses a QEMU-style command line, builds the machine and runs
// its main loop until `quit` (QMP), SIGTERM/SIGINT/SIGHUP, or a fatal error.
#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "base/event_loop.h"
#include "vm/command_line.h"
#include "vm/machine.h"
#include "vm/unix_socket.h"

namespace {

// The signals that end the VM cleanly, as in QEMU.
sigset_t termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

// A child forked for an exec: migration must not inherit the blocked signals (a blocked
// SIGINT survives exec). Runs in the child between fork and exec: async-signal-safe only.
void unblock_in_child() {
  sigset_t set = termination_signals();
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

// QEMU's report: "terminating on signal 15 from pid 1234 (bash)".
void report_signal(const signalfd_siginfo& info) {
  std::string sender;
  if (info.ssi_pid != 0) {
    std::ifstream comm("/proc/" + std::to_string(info.ssi_pid) + "/comm");
    std::string name;
    if (std::getline(comm, name)) sender = " (" + name + ")";
    std::fprintf(stderr, "ferry-vm: terminating on signal %u from pid %u%s\n", info.ssi_signo,
                 info.ssi_pid, sender.c_str());
  } else {
    std::fprintf(stderr, "ferry-vm: terminating on signal %u\n", info.ssi_signo);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a client that goes away is an error value, not a signal
  // Termination signals arrive through a signalfd the event loop watches, so no work runs
  // in a signal handler. They are blocked before any thread starts, so every thread
  // inherits the mask and none takes the default action.
  sigset_t signals = termination_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  pthread_atfork(nullptr, nullptr, unblock_in_child);
  ferry::vm::UniqueFd signal_fd(signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signal_fd.valid()) {
    std::fprintf(stderr, "ferry-vm: signalfd: %s\n", std::strerror(errno));
    return 1;
  }

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
  ferry::vm::Machine& vm = **machine;
  bool shutting_down = false;
  ferry::Status watched = (*loop)->watch_fd(
      signal_fd.get(), ferry::EventLoop::kReadable, [&](uint32_t) {
        signalfd_siginfo info;
        while (::read(signal_fd.get(), &info, sizeof(info)) == sizeof(info)) {
          if (shutting_down) continue;  // QEMU too ends once, however many signals come
          shutting_down = true;
          report_signal(info);
          vm.shutdown("host-signal");
        }
      });
  if (!watched.ok()) {
    std::fprintf(stderr, "ferry-vm: %s\n", watched.to_string().c_str());
    return 1;
  }
  ferry::Status st = (*loop)->run();
  (*loop)->unwatch_fd(signal_fd.get());
  if (!st.ok()) {
    std::fprintf(stderr, "ferry-vm: main loop: %s\n", st.to_string().c_str());
    return 1;
  }
  return vm.exit_code();
}
