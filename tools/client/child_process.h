// A child process owned by a test: started with an argument vector, its stderr kept in a
// file for failure messages, killed and reaped when the owner goes away.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace ferry::client {

class ChildProcess {
 public:
  static Result<ChildProcess> spawn(const std::vector<std::string>& argv,
                                    const std::string& stderr_path);
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&&) = delete;
  ChildProcess(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // Exit code (or 128 + signal) once it ended within `timeout`, else nothing.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();
  void kill();
  std::string stderr_text() const;

 private:
  ChildProcess(pid_t pid, std::string stderr_path) : pid_(pid), stderr_path_(std::move(stderr_path)) {}
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string stderr_path_;
};

}  // namespace ferry::client
