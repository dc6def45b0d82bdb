#include "net/socket_address.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace ferry::net {

std::string SocketAddress::uri() const {
  if (type == Type::kUnix) return "unix:" + path;
  return fmt::format("tcp:{}:{}", host, port);
}

Result<SocketAddress> parse_host_port(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos)
    return Error(ErrorCode::kInvalidArgument,
                 "host address '{}' doesn't contain ':' separating host from port", text);
  SocketAddress address;
  address.type = SocketAddress::Type::kInet;
  address.host = std::string(text.substr(0, colon));
  address.port = std::string(text.substr(colon + 1));
  // [::1]:5000 names an IPv6 host.
  if (address.host.size() >= 2 && address.host.front() == '[' && address.host.back() == ']')
    address.host = address.host.substr(1, address.host.size() - 2);
  if (address.port.empty())
    return Error(ErrorCode::kInvalidArgument, "host address '{}' has no port", text);
  return address;
}

Result<ResolvedAddress> resolve(const SocketAddress& address, int socktype) {
  ResolvedAddress out;
  if (address.type == SocketAddress::Type::kUnix) {
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    if (address.path.empty())
      return Error(ErrorCode::kInvalidArgument, "unix socket path is empty");
    if (address.path.size() >= sizeof(un.sun_path))
      return Error(ErrorCode::kInvalidArgument,
                   "UNIX socket path '{}' is too long (at most {} bytes)", address.path,
                   sizeof(un.sun_path) - 1);
    std::memcpy(un.sun_path, address.path.data(), address.path.size());
    std::memcpy(&out.storage, &un, sizeof(un));
    out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.path.size() + 1);
    return out;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = AI_NUMERICSERV | (address.host.empty() ? AI_PASSIVE : 0);
  addrinfo* list = nullptr;
  int rc = getaddrinfo(address.host.empty() ? nullptr : address.host.c_str(),
                       address.port.c_str(), &hints, &list);
  if (rc != 0)
    return Error(ErrorCode::kInvalidArgument, "address resolution failed for {}:{}: {}",
                 address.host, address.port, gai_strerror(rc));
  std::memcpy(&out.storage, list->ai_addr, list->ai_addrlen);
  out.length = list->ai_addrlen;
  freeaddrinfo(list);
  return out;
}

namespace {

Result<SocketAddress> to_socket_address(const sockaddr_storage& storage, socklen_t length) {
  SocketAddress out;
  if (storage.ss_family == AF_UNIX) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(&storage);
    out.type = SocketAddress::Type::kUnix;
    size_t max = length > offsetof(sockaddr_un, sun_path) ? length - offsetof(sockaddr_un, sun_path)
                                                          : 0;
    out.path = std::string(un->sun_path, strnlen(un->sun_path, max));
    return out;
  }
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  int rc = getnameinfo(reinterpret_cast<const sockaddr*>(&storage), length, host, sizeof(host),
                       port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
  if (rc != 0)
    return Error(ErrorCode::kIo, "cannot format socket address: {}", gai_strerror(rc));
  out.type = SocketAddress::Type::kInet;
  out.host = host;
  out.port = port;
  out.ip_version = storage.ss_family == AF_INET6 ? 6 : 4;
  return out;
}

}  // namespace

Result<SocketAddress> local_address(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof(storage);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0)
    return Error(ErrorCode::kIo, "getsockname: {}", std::strerror(errno));
  return to_socket_address(storage, length);
}

Result<SocketAddress> peer_address(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof(storage);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0)
    return Error(ErrorCode::kIo, "getpeername: {}", std::strerror(errno));
  return to_socket_address(storage, length);
}

Result<int> listen_stream(const SocketAddress& address) {
  auto resolved = resolve(address, SOCK_STREAM);
  if (!resolved.ok()) return resolved.take_status();
  int fd = socket(resolved->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error(ErrorCode::kIo, "Failed to create socket: {}", std::strerror(errno));
  int one = 1;
  if (resolved->family() != AF_UNIX) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, resolved->get(), resolved->length) != 0) {
    int err = errno;
    close(fd);
    return Error(ErrorCode::kIo, "Failed to bind socket to {}: {}", address.uri(),
                 std::strerror(err));
  }
  if (listen(fd, 1) != 0) {
    int err = errno;
    close(fd);
    return Error(ErrorCode::kIo, "Failed to listen on {}: {}", address.uri(), std::strerror(err));
  }
  return fd;
}

Result<PendingConnect> start_connect(const ResolvedAddress& address, int socktype) {
  int fd = socket(address.family(), socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error(ErrorCode::kIo, "Failed to create socket: {}", std::strerror(errno));
  if (connect(fd, address.get(), address.length) == 0) return PendingConnect{fd, true};
  int err = errno;
  if (err == EINPROGRESS) return PendingConnect{fd, false};
  close(fd);
  return Error(ErrorCode::kIo, "Failed to connect: {}", std::strerror(err));
}

Status finish_connect(int fd) {
  int err = 0;
  socklen_t length = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &length) != 0) err = errno;
  if (err != 0) return Error(ErrorCode::kIo, "Failed to connect: {}", std::strerror(err));
  return {};
}

}  // namespace ferry::net
