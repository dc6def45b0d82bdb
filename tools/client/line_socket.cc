#include "client/line_socket.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

namespace ferry::client {

namespace {

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return Error(ErrorCode::kInvalidArgument, "unix socket path too long: {}", path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Waits for `fd` to become readable; false on timeout.
bool wait_readable(int fd, Millis timeout) {
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

}  // namespace

LineSocket::LineSocket(LineSocket&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), pending_(std::move(other.pending_)) {}

LineSocket& LineSocket::operator=(LineSocket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    pending_ = std::move(other.pending_);
  }
  return *this;
}

LineSocket::~LineSocket() { close(); }

void LineSocket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status LineSocket::send(std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::send(fd_, text.data(), text.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error(ErrorCode::kIo, "send failed: {}", std::strerror(errno));
    }
    text.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

Result<std::string> LineSocket::read_line(Millis timeout) {
  auto line = try_read_line(timeout);
  if (!line.ok()) return line.take_status();
  if (!*line)
    return Error(ErrorCode::kIo, "no complete line within {} ms (have '{}')", timeout.count(),
                 pending_);
  return std::move(**line);
}

Result<std::optional<std::string>> LineSocket::try_read_line(Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    size_t nl = pending_.find('\n');
    if (nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return std::optional<std::string>(std::move(line));
    }
    // Past the deadline, still look once without waiting (a timeout of 0 polls).
    auto left = std::max(Millis(0), std::chrono::duration_cast<Millis>(
                                        deadline - std::chrono::steady_clock::now()));
    if (!wait_readable(fd_, left)) return std::optional<std::string>();
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error(ErrorCode::kIo, "peer closed the connection (have '{}')", pending_);
    pending_.append(buf, static_cast<size_t>(n));
  }
}

std::string free_loopback_tcp_uri() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    addr.sin_port = 0;
  if (fd >= 0) ::close(fd);
  return fmt::format("tcp:127.0.0.1:{}", ntohs(addr.sin_port));
}

Result<LineSocket> connect_unix(const std::string& path, Millis timeout) {
  auto addr = unix_address(path);
  if (!addr.ok()) return addr.take_status();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Error(ErrorCode::kIo, "socket: {}", std::strerror(errno));
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(sockaddr_un)) == 0)
      return LineSocket(fd);
    int err = errno;
    ::close(fd);
    if (std::chrono::steady_clock::now() >= deadline)
      return Error(ErrorCode::kIo, "cannot connect to {}: {}", path, std::strerror(err));
    std::this_thread::sleep_for(Millis(20));
  }
}

Result<UnixListener> UnixListener::listen(const std::string& path) {
  auto addr = unix_address(path);
  if (!addr.ok()) return addr.take_status();
  ::unlink(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error(ErrorCode::kIo, "socket: {}", std::strerror(errno));
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(sockaddr_un)) != 0 ||
      ::listen(fd, 4) != 0) {
    int err = errno;
    ::close(fd);
    return Error(ErrorCode::kIo, "cannot listen on {}: {}", path, std::strerror(err));
  }
  return UnixListener(fd, path);
}

UnixListener::UnixListener(UnixListener&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

UnixListener::~UnixListener() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
}

Result<LineSocket> UnixListener::accept(Millis timeout) {
  if (!wait_readable(fd_, timeout))
    return Error(ErrorCode::kIo, "nobody connected to {} within {} ms", path_, timeout.count());
  int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return Error(ErrorCode::kIo, "accept on {}: {}", path_, std::strerror(errno));
  return LineSocket(fd);
}

}  // namespace ferry::client
