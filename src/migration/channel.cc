#include "migration/channel.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>

namespace ferry::migration {
namespace {

Status io_error(const std::string& what, std::string_view channel) {
  return Error(ErrorCode::kIo, "{} on {} failed: {}", what, channel, std::strerror(errno));
}

// Owns a descriptor until released.
struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

Status uri_error(std::string_view uri, std::string_view why) {
  return Error(ErrorCode::kInvalidArgument, "migration URI '{}': {}", uri, why);
}

std::string tcp_uri(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return fmt::format("tcp:[{}]:{}", host, ntohs(in6->sin6_port));
  }
  auto* in = reinterpret_cast<const sockaddr_in*>(sa);
  ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
  return fmt::format("tcp:{}:{}", host, ntohs(in->sin_port));
}

Result<addrinfo*> resolve(const ChannelUri& u, std::string_view uri, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  std::string port = std::to_string(u.port);
  int rc = ::getaddrinfo(u.host.empty() ? nullptr : u.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0)
    return Error(ErrorCode::kIo, "migration URI '{}': cannot resolve host '{}': {}", uri, u.host,
                 ::gai_strerror(rc));
  return res;
}

Result<sockaddr_un> unix_address(const ChannelUri& u, std::string_view uri) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (u.path.size() >= sizeof sa.sun_path)
    return uri_error(uri, fmt::format("socket path is {} bytes, the limit is {}", u.path.size(),
                                      sizeof sa.sun_path - 1));
  std::memcpy(sa.sun_path, u.path.c_str(), u.path.size() + 1);
  return sa;
}

// exec: runs `/bin/sh -c command` with one end of a pipe as its stdin (outgoing) or stdout.
Result<std::unique_ptr<Channel>> spawn(const ChannelUri& u, std::string_view uri, bool outgoing) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return io_error("pipe", uri);
  Fd read_end(p[0]), write_end(p[1]);
  pid_t pid = ::fork();
  if (pid < 0) return io_error("fork", uri);
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    int child_end = outgoing ? read_end.fd : write_end.fd;
    int target = outgoing ? STDIN_FILENO : STDOUT_FILENO;
    if (::dup2(child_end, target) < 0) ::_exit(127);
    ::execl("/bin/sh", "sh", "-c", u.command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int mine = outgoing ? write_end.release() : read_end.release();
  return std::unique_ptr<Channel>(new FdChannel(mine, std::string(uri), false, pid));
}

class SocketListener final : public Listener {
 public:
  SocketListener(int fd, std::string uri, std::string unix_path)
      : fd_(fd), uri_(std::move(uri)), unix_path_(std::move(unix_path)) {}
  ~SocketListener() override {
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
  }
  Result<std::unique_ptr<Channel>> accept() override {
    int c;
    do {
      c = ::accept4(fd_.fd, nullptr, nullptr, SOCK_CLOEXEC);
    } while (c < 0 && errno == EINTR);
    if (c < 0) return io_error("accept", uri_);
    if (unix_path_.empty()) {
      int one = 1;
      ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return std::unique_ptr<Channel>(new FdChannel(c, uri_, true));
  }
  std::string uri() const override { return uri_; }
  void interrupt() override { ::shutdown(fd_.fd, SHUT_RDWR); }

 private:
  Fd fd_;
  std::string uri_;
  std::string unix_path_;  // removed with the listener
};

// file:, fd:, exec: — the channel exists already; accept() hands it over once.
class OneShotListener final : public Listener {
 public:
  OneShotListener(std::unique_ptr<Channel> channel, std::string uri)
      : channel_(std::move(channel)), uri_(std::move(uri)) {}
  Result<std::unique_ptr<Channel>> accept() override {
    if (!channel_)
      return Error(ErrorCode::kFailedPrecondition, "migration URI '{}' gives only one channel",
                   uri_);
    return std::move(channel_);
  }
  std::string uri() const override { return uri_; }

 private:
  std::unique_ptr<Channel> channel_;
  std::string uri_;
};

Result<int> open_tcp(const ChannelUri& u, std::string_view uri, bool listening,
                     std::string* bound) {
  Result<addrinfo*> res = resolve(u, uri, listening);
  if (!res.ok()) return res.take_status();
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(*res, ::freeaddrinfo);
  int last_errno = 0;
  for (addrinfo* ai = list.get(); ai; ai = ai->ai_next) {
    Fd s(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (s.fd < 0) {
      last_errno = errno;
      continue;
    }
    int one = 1;
    if (listening) {
      ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (::bind(s.fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(s.fd, 8) != 0) {
        last_errno = errno;
        continue;
      }
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      ::getsockname(s.fd, reinterpret_cast<sockaddr*>(&ss), &len);
      *bound = tcp_uri(reinterpret_cast<sockaddr*>(&ss));
    } else {
      int rc;
      do {
        rc = ::connect(s.fd, ai->ai_addr, ai->ai_addrlen);
      } while (rc != 0 && errno == EINTR);
      if (rc != 0) {
        last_errno = errno;
        continue;
      }
      ::setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return s.release();
  }
  return Error(ErrorCode::kIo, "migration URI '{}': cannot {}: {}", uri,
               listening ? "listen" : "connect", std::strerror(last_errno));
}

}  // namespace

// ---- Channel ----

Result<size_t> Channel::readv_some(std::span<const iovec> iov) {
  for (const iovec& v : iov)
    if (v.iov_len > 0) return read_some(std::span(static_cast<uint8_t*>(v.iov_base), v.iov_len));
  return size_t{0};
}

// ---- FdChannel ----

FdChannel::FdChannel(int fd, std::string name, bool is_socket, pid_t child)
    : fd_(fd), name_(std::move(name)), is_socket_(is_socket), child_(child) {}

FdChannel::~FdChannel() { (void)close(); }

Result<size_t> FdChannel::read_some(std::span<uint8_t> out) {
  if (fd_ < 0) return Error(ErrorCode::kFailedPrecondition, "read on closed channel {}", name_);
  while (true) {
    ssize_t n = ::read(fd_, out.data(), out.size());
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return io_error("read", name_);
  }
}

Result<size_t> FdChannel::readv_some(std::span<const iovec> iov) {
  if (fd_ < 0) return Error(ErrorCode::kFailedPrecondition, "read on closed channel {}", name_);
  int count = static_cast<int>(std::min<size_t>(iov.size(), IOV_MAX));
  while (true) {
    ssize_t n = ::readv(fd_, iov.data(), count);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return io_error("read", name_);
  }
}

Status FdChannel::write_all(std::span<const uint8_t> data) {
  iovec iov{const_cast<uint8_t*>(data.data()), data.size()};
  return writev_all(std::span(&iov, 1));
}

Status FdChannel::writev_all(std::span<iovec> iov) {
  if (fd_ < 0) return Error(ErrorCode::kFailedPrecondition, "write on closed channel {}", name_);
  size_t first = 0;
  while (first < iov.size()) {
    if (iov[first].iov_len == 0) {
      ++first;
      continue;
    }
    int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    ssize_t n;
    if (is_socket_) {
      msghdr msg{};
      msg.msg_iov = &iov[first];
      msg.msg_iovlen = static_cast<size_t>(count);
      n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    } else {
      n = ::writev(fd_, &iov[first], count);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("write", name_);
    }
    auto left = static_cast<size_t>(n);
    while (left > 0) {
      size_t take = std::min(left, iov[first].iov_len);
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + take;
      iov[first].iov_len -= take;
      left -= take;
      if (iov[first].iov_len == 0) ++first;
    }
  }
  return {};
}

Status FdChannel::shutdown_write() {
  if (fd_ < 0) return {};
  if (is_socket_) {
    if (::shutdown(fd_, SHUT_WR) != 0) return io_error("shutdown", name_);
    return {};
  }
  return close();  // a pipe or file has one direction: closing is the half-close
}

void FdChannel::interrupt() {
  if (fd_ >= 0 && is_socket_) ::shutdown(fd_, SHUT_RDWR);
}

Status FdChannel::close() {
  Status st;
  if (fd_ >= 0) {
    if (::close(fd_) != 0 && errno != EINTR) st = io_error("close", name_);
    fd_ = -1;
  }
  if (child_ > 0) {
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(child_, &status, 0);
    } while (r < 0 && errno == EINTR);
    child_ = -1;
    if (r > 0 && st.ok() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      st = Error(ErrorCode::kIo, "{}: command {} {}", name_,
                 WIFEXITED(status) ? "exited with status" : "was killed by signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
  }
  return st;
}

// ---- URIs ----

Result<ChannelUri> parse_channel_uri(std::string_view uri) {
  ChannelUri u;
  size_t colon = uri.find(':');
  if (colon == std::string_view::npos)
    return uri_error(uri, "expected TRANSPORT:ADDRESS (tcp, unix, file, fd or exec)");
  std::string_view scheme = uri.substr(0, colon);
  std::string_view rest = uri.substr(colon + 1);
  if (scheme == "tcp") {
    u.kind = ChannelUri::Kind::kTcp;
    std::string_view host, port;
    if (!rest.empty() && rest.front() == '[') {
      size_t close = rest.find(']');
      if (close == std::string_view::npos) return uri_error(uri, "IPv6 host lacks its ']'");
      host = rest.substr(1, close - 1);
      if (close + 1 >= rest.size() || rest[close + 1] != ':')
        return uri_error(uri, "expected ':PORT' after the IPv6 host");
      port = rest.substr(close + 2);
    } else {
      size_t last = rest.rfind(':');
      if (last == std::string_view::npos) return uri_error(uri, "expected tcp:HOST:PORT");
      host = rest.substr(0, last);
      port = rest.substr(last + 1);
      if (host.find(':') != std::string_view::npos)
        return uri_error(uri, fmt::format("IPv6 host '{}' must be written in brackets", host));
    }
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535)
      return uri_error(uri, fmt::format("port '{}' is not a number in 0..65535", port));
    u.host = std::string(host);
    u.port = static_cast<uint16_t>(value);
    return u;
  }
  if (scheme == "unix" || scheme == "file") {
    u.kind = scheme == "unix" ? ChannelUri::Kind::kUnix : ChannelUri::Kind::kFile;
    if (rest.empty()) return uri_error(uri, "empty path");
    u.path = std::string(rest);
    return u;
  }
  if (scheme == "fd") {
    u.kind = ChannelUri::Kind::kFd;
    int value = -1;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), value);
    if (rest.empty() || ec != std::errc() || end != rest.data() + rest.size() || value < 0)
      return uri_error(uri, fmt::format("'{}' is not a descriptor number", rest));
    u.fd = value;
    return u;
  }
  if (scheme == "exec") {
    u.kind = ChannelUri::Kind::kExec;
    if (rest.empty()) return uri_error(uri, "empty command");
    u.command = std::string(rest);
    return u;
  }
  return uri_error(uri, fmt::format("unknown transport '{}' (expected tcp, unix, file, fd or "
                                    "exec)",
                                    scheme));
}

namespace {

// A socket is used both ways (the return path); a pipe or file one way.
bool fd_is_socket(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
}

Result<std::unique_ptr<Channel>> adopt_fd(const ChannelUri& u, std::string_view uri) {
  if (::fcntl(u.fd, F_GETFD) < 0)
    return uri_error(uri, fmt::format("descriptor {} is not open", u.fd));
  return std::unique_ptr<Channel>(new FdChannel(u.fd, std::string(uri), fd_is_socket(u.fd)));
}

}  // namespace

Result<std::unique_ptr<Channel>> connect_outgoing(std::string_view uri) {
  Result<ChannelUri> parsed = parse_channel_uri(uri);
  if (!parsed.ok()) return parsed.take_status();
  const ChannelUri& u = *parsed;
  switch (u.kind) {
    case ChannelUri::Kind::kTcp: {
      Result<int> fd = open_tcp(u, uri, false, nullptr);
      if (!fd.ok()) return fd.take_status();
      return std::unique_ptr<Channel>(new FdChannel(*fd, std::string(uri), true));
    }
    case ChannelUri::Kind::kUnix: {
      Result<sockaddr_un> sa = unix_address(u, uri);
      if (!sa.ok()) return sa.take_status();
      Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (s.fd < 0) return io_error("socket", uri);
      if (::connect(s.fd, reinterpret_cast<const sockaddr*>(&*sa), sizeof *sa) != 0)
        return io_error("connect", uri);
      return std::unique_ptr<Channel>(new FdChannel(s.release(), std::string(uri), true));
    }
    case ChannelUri::Kind::kFile: {
      int fd = ::open(u.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) return io_error(fmt::format("open '{}' for writing", u.path), uri);
      return std::unique_ptr<Channel>(new FdChannel(fd, std::string(uri), false));
    }
    case ChannelUri::Kind::kFd:
      return adopt_fd(u, uri);
    case ChannelUri::Kind::kExec:
      return spawn(u, uri, true);
  }
  return Error(ErrorCode::kInternal, "unhandled URI kind");
}

Result<std::unique_ptr<Listener>> listen_incoming(std::string_view uri) {
  Result<ChannelUri> parsed = parse_channel_uri(uri);
  if (!parsed.ok()) return parsed.take_status();
  const ChannelUri& u = *parsed;
  switch (u.kind) {
    case ChannelUri::Kind::kTcp: {
      std::string bound;
      Result<int> fd = open_tcp(u, uri, true, &bound);
      if (!fd.ok()) return fd.take_status();
      return std::unique_ptr<Listener>(new SocketListener(*fd, bound, ""));
    }
    case ChannelUri::Kind::kUnix: {
      Result<sockaddr_un> sa = unix_address(u, uri);
      if (!sa.ok()) return sa.take_status();
      Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (s.fd < 0) return io_error("socket", uri);
      ::unlink(u.path.c_str());  // a stale socket from an earlier run
      if (::bind(s.fd, reinterpret_cast<const sockaddr*>(&*sa), sizeof *sa) != 0 ||
          ::listen(s.fd, 8) != 0)
        return io_error("listen", uri);
      return std::unique_ptr<Listener>(new SocketListener(s.release(), std::string(uri), u.path));
    }
    case ChannelUri::Kind::kFile: {
      int fd = ::open(u.path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return io_error(fmt::format("open '{}' for reading", u.path), uri);
      return std::unique_ptr<Listener>(new OneShotListener(
          std::unique_ptr<Channel>(new FdChannel(fd, std::string(uri), false)), std::string(uri)));
    }
    case ChannelUri::Kind::kFd:
    case ChannelUri::Kind::kExec: {
      Result<std::unique_ptr<Channel>> ch =
          u.kind == ChannelUri::Kind::kFd ? adopt_fd(u, uri) : spawn(u, uri, false);
      if (!ch.ok()) return ch.take_status();
      return std::unique_ptr<Listener>(new OneShotListener(std::move(*ch), std::string(uri)));
    }
  }
  return Error(ErrorCode::kInternal, "unhandled URI kind");
}

bool has_return_path(const Channel& channel) { return channel.bidirectional(); }

}  // namespace ferry::migration
