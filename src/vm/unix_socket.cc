#include "vm/unix_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace ferry::vm {
namespace {

Result<sockaddr_un> make_address(std::string_view path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Error(ErrorCode::kInvalidArgument,
                 "unix socket path '{}' must be 1 to {} bytes long, found {}", path,
                 sizeof(addr.sun_path) - 1, path.size());
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

}  // namespace

void UniqueFd::reset() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

Status set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return Error(ErrorCode::kIo, "cannot make fd {} non-blocking: {}", fd, std::strerror(errno));
  }
  return Status::Ok();
}

Result<std::string_view> unix_socket_path(std::string_view uri) {
  constexpr std::string_view kPrefix = "unix:";
  if (uri.substr(0, kPrefix.size()) == kPrefix) return uri.substr(kPrefix.size());
  if (uri.find(':') != std::string_view::npos) {
    return Error(ErrorCode::kInvalidArgument,
                 "unsupported socket address '{}' (expected unix:PATH)", uri);
  }
  return uri;
}

Result<UniqueFd> unix_connect(std::string_view path) {
  auto addr = make_address(path);
  if (!addr.ok()) return addr.take_status();
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error(ErrorCode::kIo, "socket failed: {}", std::strerror(errno));
  int rc;
  do {
    rc = connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(sockaddr_un));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    return Error(ErrorCode::kIo, "Failed to connect to '{}': {}", path, std::strerror(errno));
  }
  FERRY_RETURN_IF_ERROR(set_nonblocking(fd.get()));
  return fd;
}

Result<UniqueFd> unix_listen(std::string_view path) {
  auto addr = make_address(path);
  if (!addr.ok()) return addr.take_status();
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Error(ErrorCode::kIo, "socket failed: {}", std::strerror(errno));
  // A socket file left by a previous run would make bind fail; only sockets are removed.
  std::string p(path);
  struct stat st;
  if (lstat(p.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(p.c_str());
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(sockaddr_un)) != 0) {
    return Error(ErrorCode::kIo, "cannot bind unix socket '{}': {}", path, std::strerror(errno));
  }
  if (listen(fd.get(), 16) != 0) {
    return Error(ErrorCode::kIo, "cannot listen on unix socket '{}': {}", path,
                 std::strerror(errno));
  }
  return fd;
}

}  // namespace ferry::vm
