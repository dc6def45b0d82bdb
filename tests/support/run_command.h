// Runs a shell command for a black-box test and keeps what it printed on stdout.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace ferry::testing {

struct CommandResult {
  int exit_code = -1;  // -1: it could not start, or a signal ended it
  std::string out;
};

inline CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.out.append(buf, n);
  int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace ferry::testing
