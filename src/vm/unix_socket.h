// Unix stream sockets for the control plane (QMP listens, qtest connects), and an owning
// file descriptor.
#pragma once

#include <string_view>
#include <utility>

#include "base/status.h"

namespace ferry::vm {

// Closes its fd on destruction; move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset();

 private:
  int fd_ = -1;
};

Status set_nonblocking(int fd);
// Connects to a listening unix socket (blocking connect; the fd is then non-blocking).
Result<UniqueFd> unix_connect(std::string_view path);
// Binds and listens (non-blocking), replacing a stale socket file at `path`.
Result<UniqueFd> unix_listen(std::string_view path);
// Strips a "unix:" prefix; other URI schemes are refused.
Result<std::string_view> unix_socket_path(std::string_view uri);

}  // namespace ferry::vm
