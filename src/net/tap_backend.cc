#include "net/tap_backend.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>


namespace ferry::net {

TapBackend::TapBackend(EventLoop& loop, std::string id, TapOptions options)
    : MessageFdBackend(loop, std::move(id), "tap", options.send_queue_limit) {}

Result<std::unique_ptr<TapBackend>> TapBackend::create(EventLoop& loop, std::string id,
                                                       TapOptions options) {
  std::unique_ptr<TapBackend> backend(new TapBackend(loop, std::move(id), options));
  const std::string& name = options.ifname;
  if (name.size() >= IFNAMSIZ)
    return Error(ErrorCode::kInvalidArgument, "tap: ifname '{}' is longer than {} characters",
                 name, IFNAMSIZ - 1);
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return Error(ErrorCode::kIo, "could not open /dev/net/tun: {}", std::strerror(errno));
  backend->adopt_fd(fd);
  ifreq request{};
  request.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::memcpy(request.ifr_name, name.data(), name.size());
  if (ioctl(fd, TUNSETIFF, &request) != 0)
    return Error(ErrorCode::kIo, "could not configure /dev/net/tun ({}): {}",
                 name.empty() ? "tap%d" : name, std::strerror(errno));
  backend->ifname_ = request.ifr_name;
  backend->set_info(fmt::format("ifname={},script=no,downscript=no", backend->ifname_));
  backend->start();
  return backend;
}

ssize_t TapBackend::send_frame(std::span<const iovec> frame) {
  return writev(fd(), frame.data(), static_cast<int>(frame.size()));
}

int TapBackend::flush_queue(SendQueue& queue) { return queue.write_each(fd()); }

ssize_t TapBackend::receive_frame(std::span<uint8_t> buffer) {
  return read(fd(), buffer.data(), buffer.size());
}

}  // namespace ferry::net
