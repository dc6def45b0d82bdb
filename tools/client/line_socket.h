// A connected stream socket read line by line with timeouts: what both QEMU's QMP and
// qtest protocols look like from a test.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace ferry::client {

using Millis = std::chrono::milliseconds;

class LineSocket {
 public:
  LineSocket() = default;
  explicit LineSocket(int fd) : fd_(fd) {}
  LineSocket(LineSocket&& other) noexcept;
  LineSocket& operator=(LineSocket&& other) noexcept;
  LineSocket(const LineSocket&) = delete;
  LineSocket& operator=(const LineSocket&) = delete;
  ~LineSocket();

  bool is_open() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  Status send(std::string_view text);
  // Next line without its '\n'; error on timeout or when the peer closed.
  Result<std::string> read_line(Millis timeout);
  // The same, but running out of time is no error: nothing (for lines that may not come).
  Result<std::optional<std::string>> try_read_line(Millis timeout);
  void close();

 private:
  int fd_ = -1;
  std::string pending_;
};

// "tcp:127.0.0.1:PORT" with a port the kernel just handed out and released, for a server
// about to listen there.
std::string free_loopback_tcp_uri();

// Connects to a unix socket, retrying until `timeout` (the server may still be starting).
Result<LineSocket> connect_unix(const std::string& path, Millis timeout);

// A listening unix socket, for protocols where the VM connects to the test (qtest).
class UnixListener {
 public:
  static Result<UnixListener> listen(const std::string& path);
  UnixListener(UnixListener&& other) noexcept;
  UnixListener& operator=(UnixListener&&) = delete;
  UnixListener(const UnixListener&) = delete;
  ~UnixListener();
  Result<LineSocket> accept(Millis timeout);

 private:
  UnixListener(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

}  // namespace ferry::client
