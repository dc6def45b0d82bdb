#include "migration/channel.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

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

void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// The wake-up descriptor of a channel or connector: readable once interrupted.
int make_wake_fd() { return ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

void signal_wake_fd(int wake) {
  uint64_t one = 1;
  if (wake >= 0) (void)!::write(wake, &one, sizeof one);
}

// A descriptor that becomes readable when the child exits (-1 where the kernel has none).
int open_pidfd(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

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

// file: naming a FIFO. Its read end was opened without waiting (O_NONBLOCK), so
// listen_incoming() never blocks the main loop on a writer that may never come; accept(), on
// the incoming thread, waits until a writer has sent bytes or come and gone (Linux reports a
// hang-up on a FIFO's read end only after a writer has been there since it was opened), or
// until interrupt().
class FifoListener final : public Listener {
 public:
  FifoListener(int fd, std::string uri) : fd_(fd), wake_(make_wake_fd()), uri_(std::move(uri)) {}
  ~FifoListener() override {
    if (wake_ >= 0) ::close(wake_);
  }
  Result<std::unique_ptr<Channel>> accept() override {
    if (fd_.fd < 0)
      return Error(ErrorCode::kFailedPrecondition, "migration URI '{}' gives only one channel",
                   uri_);
    pollfd fds[2] = {{fd_.fd, POLLIN, 0}, {wake_, POLLIN, 0}};
    while (true) {
      int n = ::poll(fds, wake_ >= 0 ? 2 : 1, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return io_error("waiting for a writer", uri_);
      if (fds[1].revents != 0)
        return Error(ErrorCode::kIo, "{}: stopped while waiting for a writer", uri_);
      if (fds[0].revents != 0) break;
    }
    return std::unique_ptr<Channel>(new FdChannel(fd_.release(), uri_, false));
  }
  void interrupt() override { signal_wake_fd(wake_); }
  std::string uri() const override { return uri_; }

 private:
  Fd fd_;
  int wake_;
  std::string uri_;
};

Result<int> listen_tcp(const ChannelUri& u, std::string_view uri, std::string* bound) {
  Result<addrinfo*> res = resolve(u, uri, true);
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
    ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(s.fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(s.fd, 8) != 0) {
      last_errno = errno;
      continue;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(s.fd, reinterpret_cast<sockaddr*>(&ss), &len);
    *bound = tcp_uri(reinterpret_cast<sockaddr*>(&ss));
    return s.release();
  }
  return Error(ErrorCode::kIo, "migration URI '{}': cannot listen: {}", uri,
               std::strerror(last_errno));
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
    : fd_(fd), wake_(make_wake_fd()), name_(std::move(name)), is_socket_(is_socket),
      child_(child) {
  if (fd_ >= 0) set_nonblocking(fd_);
}

FdChannel::~FdChannel() {
  (void)close();
  if (wake_ >= 0) ::close(wake_);
}

Status FdChannel::interrupted_error(std::string_view what) const {
  return Error(ErrorCode::kIo, "{} on {} interrupted: the migration was cancelled", what, name_);
}

Status FdChannel::wait_ready(short events, std::string_view what) {
  pollfd p[2] = {{fd_, events, 0}, {wake_, POLLIN, 0}};
  while (true) {
    if (interrupted_.load(std::memory_order_acquire)) return interrupted_error(what);
    int n = ::poll(p, wake_ >= 0 ? 2 : 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("poll", name_);
    }
    if (wake_ >= 0 && p[1].revents != 0) return interrupted_error(what);
    if (p[0].revents != 0) return {};  // ready, or an error the next call reports
  }
}

Result<size_t> FdChannel::read_some(std::span<uint8_t> out) {
  iovec iov{out.data(), out.size()};
  return readv_some(std::span(&iov, 1));
}

Result<size_t> FdChannel::readv_some(std::span<const iovec> iov) {
  if (fd_ < 0) return Error(ErrorCode::kFailedPrecondition, "read on closed channel {}", name_);
  int count = static_cast<int>(std::min<size_t>(iov.size(), IOV_MAX));
  while (true) {
    if (interrupted_.load(std::memory_order_acquire)) return interrupted_error("read");
    ssize_t n = ::readv(fd_, iov.data(), count);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (!would_block(errno)) return io_error("read", name_);
    FERRY_RETURN_IF_ERROR(wait_ready(POLLIN, "read"));
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
    if (interrupted_.load(std::memory_order_acquire)) return interrupted_error("write");
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
      if (!would_block(errno)) return io_error("write", name_);
      FERRY_RETURN_IF_ERROR(wait_ready(POLLOUT, "write"));
      continue;
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
  // A pipe or file has one direction: closing it is the half-close. An exec: command is
  // waited for by close().
  int fd;
  {
    std::lock_guard lock(fd_mutex_);
    fd = std::exchange(fd_, -1);
  }
  if (::close(fd) != 0 && errno != EINTR) return io_error("close", name_);
  return {};
}

void FdChannel::interrupt() {
  interrupted_.store(true, std::memory_order_release);
  signal_wake_fd(wake_);
  // A socket's peer sees the end at once too.
  std::lock_guard lock(fd_mutex_);
  if (fd_ >= 0 && is_socket_) ::shutdown(fd_, SHUT_RDWR);
}

Status FdChannel::close() {
  Status st;
  int fd;
  {
    std::lock_guard lock(fd_mutex_);
    fd = std::exchange(fd_, -1);
  }
  if (fd >= 0 && ::close(fd) != 0 && errno != EINTR) st = io_error("close", name_);
  if (child_ > 0) {
    Status exited = reap_child();
    if (st.ok()) st = std::move(exited);
  }
  return st;
}

Status FdChannel::reap_child() {
  pid_t child = std::exchange(child_, -1);
  int pidfd = open_pidfd(child);
  // Wait for the command to exit, unless interrupted (then end it instead).
  int status = 0;
  pid_t r = 0;
  if (pidfd >= 0) {
    pollfd p[2] = {{pidfd, POLLIN, 0}, {wake_, POLLIN, 0}};
    while (!interrupted_.load(std::memory_order_acquire)) {
      int n = ::poll(p, wake_ >= 0 ? 2 : 1, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 || p[0].revents != 0) break;
    }
  }
  if (pidfd < 0 || !interrupted_.load(std::memory_order_acquire)) {
    // No pidfd (an old kernel): a plain wait, as before.
    do {
      r = ::waitpid(child, &status, 0);
    } while (r < 0 && errno == EINTR);
  } else {
    end_child(child, pidfd);
  }
  if (pidfd >= 0) ::close(pidfd);
  if (r <= 0) {
    if (interrupted_.load(std::memory_order_acquire))
      return Error(ErrorCode::kIo, "{}: the migration was cancelled before the command exited",
                   name_);
    return {};
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  return Error(ErrorCode::kIo, "{}: command {} {}", name_,
               WIFEXITED(status) ? "exited with status" : "was killed by signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

void FdChannel::end_child(pid_t child, int pidfd) {
  // Our pipe end is closed already. Give the command a moment after each signal; one that
  // survives SIGKILL (stuck in the kernel) is left to init rather than waited for.
  for (int sig : {0, SIGTERM, SIGKILL}) {
    if (sig != 0) {
      ::kill(child, sig);  // still our unreaped child: the pid cannot name another process
      pollfd p{pidfd, POLLIN, 0};
      while (::poll(&p, 1, 50) < 0 && errno == EINTR) {
      }
    }
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) != 0) return;
  }
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

// ---- OutgoingConnector ----

OutgoingConnector::OutgoingConnector(std::unique_ptr<Channel> ready)
    : uri_(ready ? ready->name() : std::string()), ready_(std::move(ready)),
      wake_(make_wake_fd()) {}

OutgoingConnector::OutgoingConnector(ChannelUri parsed, std::string uri)
    : parsed_(std::move(parsed)), uri_(std::move(uri)), wake_(make_wake_fd()) {}

OutgoingConnector::~OutgoingConnector() {
  if (pending_unix_ >= 0) ::close(pending_unix_);
  if (wake_ >= 0) ::close(wake_);
}

void OutgoingConnector::interrupt() {
  interrupted_.store(true, std::memory_order_release);
  signal_wake_fd(wake_);
}

bool OutgoingConnector::wait(int fd, short events, int timeout_ms) {
  pollfd p[2] = {{fd, events, 0}, {wake_, POLLIN, 0}};  // poll skips a negative fd
  while (!interrupted_.load(std::memory_order_acquire)) {
    int n = ::poll(p, 2, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    return p[1].revents == 0 && !interrupted_.load(std::memory_order_acquire);
  }
  return false;
}

Result<std::unique_ptr<OutgoingConnector>> OutgoingConnector::start(std::string_view uri) {
  Result<ChannelUri> parsed = parse_channel_uri(uri);
  if (!parsed.ok()) return parsed.take_status();
  std::unique_ptr<OutgoingConnector> c(new OutgoingConnector(*parsed, std::string(uri)));
  const ChannelUri& u = c->parsed_;
  switch (u.kind) {
    case ChannelUri::Kind::kTcp:
    case ChannelUri::Kind::kExec:
      break;  // all in finish(): resolving and connecting, or fork and exec
    case ChannelUri::Kind::kUnix: {
      Result<sockaddr_un> sa = unix_address(u, uri);
      if (!sa.ok()) return sa.take_status();
      Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      if (s.fd < 0) return io_error("socket", uri);
      // A unix connect never waits for the peer to answer: it is done, refused, or finds
      // the backlog full (EAGAIN), which finish() waits out.
      if (::connect(s.fd, reinterpret_cast<const sockaddr*>(&*sa), sizeof *sa) == 0)
        c->ready_.reset(new FdChannel(s.release(), std::string(uri), true));
      else if (would_block(errno))
        c->pending_unix_ = s.release();
      else
        return io_error("connect", uri);
      break;
    }
    case ChannelUri::Kind::kFile: {
      // A FIFO nobody reads yet would block the open: that one waits in finish().
      Result<int> fd = c->open_file();
      if (!fd.ok()) return fd.take_status();
      if (*fd >= 0) c->ready_.reset(new FdChannel(*fd, std::string(uri), false));
      break;
    }
    case ChannelUri::Kind::kFd: {
      auto adopted = adopt_fd(u, uri);
      if (!adopted.ok()) return adopted.take_status();
      c->ready_ = std::move(*adopted);
      break;
    }
  }
  return c;
}

Result<std::unique_ptr<Channel>> OutgoingConnector::finish() {
  if (ready_) return std::move(ready_);
  auto interrupted = [this] {
    return Error(ErrorCode::kIo, "connecting to {} interrupted: the migration was cancelled",
                 uri_);
  };
  if (interrupted_.load(std::memory_order_acquire)) return interrupted();
  switch (parsed_.kind) {
    case ChannelUri::Kind::kTcp: {
      Result<int> fd = connect_tcp();
      if (!fd.ok()) return fd.take_status();
      return std::unique_ptr<Channel>(new FdChannel(*fd, uri_, true));
    }
    case ChannelUri::Kind::kUnix: {
      Result<int> fd = connect_unix();
      if (!fd.ok()) return fd.take_status();
      return std::unique_ptr<Channel>(new FdChannel(*fd, uri_, true));
    }
    case ChannelUri::Kind::kExec:
      return spawn(parsed_, uri_, true);
    case ChannelUri::Kind::kFile:
      // A FIFO without a reader: try again every 50 ms (no event tells when one comes).
      while (wait(-1, 0, 50)) {
        Result<int> fd = open_file();
        if (!fd.ok()) return fd.take_status();
        if (*fd >= 0) return std::unique_ptr<Channel>(new FdChannel(*fd, uri_, false));
      }
      return interrupted();
    case ChannelUri::Kind::kFd:
      break;
  }
  return Error(ErrorCode::kFailedPrecondition, "{}: the channel was taken already", uri_);
}

Result<int> OutgoingConnector::connect_tcp() {
  // Name resolution itself cannot be interrupted; a numeric host does not wait on it.
  Result<addrinfo*> res = resolve(parsed_, uri_, false);
  if (!res.ok()) return res.take_status();
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(*res, ::freeaddrinfo);
  int last_errno = 0;
  for (addrinfo* ai = list.get(); ai; ai = ai->ai_next) {
    Fd s(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                  ai->ai_protocol));
    if (s.fd < 0) {
      last_errno = errno;
      continue;
    }
    if (::connect(s.fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last_errno = errno;
        continue;
      }
      if (!wait(s.fd, POLLOUT, -1))
        return Error(ErrorCode::kIo, "connecting to {} interrupted: the migration was cancelled",
                     uri_);
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) {
        last_errno = err;
        continue;
      }
    }
    int one = 1;
    ::setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s.release();
  }
  return Error(ErrorCode::kIo, "migration URI '{}': cannot connect: {}", uri_,
               std::strerror(last_errno));
}

Result<int> OutgoingConnector::open_file() {
  int fd = ::open(parsed_.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK,
                  0644);
  if (fd >= 0) return fd;
  if (errno == ENXIO) return -1;  // a FIFO with no reader yet
  return io_error(fmt::format("open '{}' for writing", parsed_.path), uri_);
}

Result<int> OutgoingConnector::connect_unix() {
  Result<sockaddr_un> sa = unix_address(parsed_, uri_);
  if (!sa.ok()) return sa.take_status();
  Fd s(std::exchange(pending_unix_, -1));
  // The backlog was full: a unix socket says nothing when room appears, so try again
  // every 50 ms until it connects, fails otherwise, or the migration is cancelled.
  while (s.fd >= 0) {
    if (!wait(-1, 0, 50))
      return Error(ErrorCode::kIo, "connecting to {} interrupted: the migration was cancelled",
                   uri_);
    if (::connect(s.fd, reinterpret_cast<const sockaddr*>(&*sa), sizeof *sa) == 0)
      return s.release();
    if (!would_block(errno)) return io_error("connect", uri_);
  }
  return Error(ErrorCode::kFailedPrecondition, "{}: the channel was taken already", uri_);
}

Result<std::unique_ptr<Channel>> connect_outgoing(std::string_view uri) {
  auto connector = OutgoingConnector::start(uri);
  if (!connector.ok()) return connector.take_status();
  return (*connector)->finish();
}

Result<std::unique_ptr<Listener>> listen_incoming(std::string_view uri) {
  Result<ChannelUri> parsed = parse_channel_uri(uri);
  if (!parsed.ok()) return parsed.take_status();
  const ChannelUri& u = *parsed;
  switch (u.kind) {
    case ChannelUri::Kind::kTcp: {
      std::string bound;
      Result<int> fd = listen_tcp(u, uri, &bound);
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
      // O_NONBLOCK: opening a FIFO's read end would otherwise wait here for a writer.
      int fd = ::open(u.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
      if (fd < 0) return io_error(fmt::format("open '{}' for reading", u.path), uri);
      struct stat st {};
      if (::fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
        return std::unique_ptr<Listener>(new FifoListener(fd, std::string(uri)));
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
