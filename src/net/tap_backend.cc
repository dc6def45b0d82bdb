#include "net/tap_backend.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "base/log.h"
#include "net/fd_interest.h"
#include "net/frame_codec.h"

namespace ferry::net {

TapBackend::TapBackend(EventLoop& loop, std::string id, TapOptions options)
    : NetBackend(std::move(id), "tap"),
      loop_(loop),
      options_(std::move(options)),
      send_queue_(options_.send_queue_limit),
      buffer_(kMaxFrameSize) {}

Result<std::unique_ptr<TapBackend>> TapBackend::create(EventLoop& loop, std::string id,
                                                       TapOptions options) {
  std::unique_ptr<TapBackend> backend(new TapBackend(loop, std::move(id), std::move(options)));
  const std::string& name = backend->options_.ifname;
  if (name.size() >= IFNAMSIZ)
    return Error(ErrorCode::kInvalidArgument, "tap: ifname '{}' is longer than {} characters",
                 name, IFNAMSIZ - 1);
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return Error(ErrorCode::kIo, "could not open /dev/net/tun: {}", std::strerror(errno));
  backend->fd_ = fd;
  ifreq request{};
  request.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::memcpy(request.ifr_name, name.data(), name.size());
  if (ioctl(fd, TUNSETIFF, &request) != 0)
    return Error(ErrorCode::kIo, "could not configure /dev/net/tun ({}): {}",
                 name.empty() ? "tap%d" : name, std::strerror(errno));
  backend->ifname_ = request.ifr_name;
  backend->set_info(fmt::format("ifname={},script=no,downscript=no", backend->ifname_));
  backend->set_link(true);
  backend->update_watch();
  return backend;
}

TapBackend::~TapBackend() {
  if (fd_ < 0) return;
  if (watched_events_ != 0) loop_.unwatch_fd(fd_);
  close(fd_);
}

void TapBackend::update_watch() {
  uint32_t wanted = 0;
  if (!reading_paused_) wanted |= EventLoop::kReadable;
  if (!send_queue_.empty()) wanted |= EventLoop::kWritable;
  Status st = set_fd_interest(loop_, fd_, wanted, watched_events_,
                              [this](uint32_t events) { on_ready(events); });
  if (!st.ok()) log(LogLevel::kError, "netdev {}: {}", id(), st.message());
}

void TapBackend::on_ready(uint32_t events) {
  if (events & EventLoop::kWritable) {
    int rc = send_queue_.write_each(fd_);
    if (rc < 0) log(LogLevel::kWarn, "netdev {}: write: {}", id(), std::strerror(-rc));
    if (busy_reported_ && !send_queue_.full()) {
      busy_reported_ = false;
      notify_send_ready();
    }
  }
  // A bounded batch per wake-up, so a busy interface cannot starve the loop.
  for (int i = 0; (events & EventLoop::kReadable) && i < 64; ++i) {
    if (!nic_can_receive()) {
      reading_paused_ = true;
      break;
    }
    ssize_t n = read(fd_, buffer_.data(), buffer_.size());
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        log(LogLevel::kWarn, "netdev {}: read: {}", id(), std::strerror(errno));
      break;
    }
    if (n == 0) break;
    deliver(std::span<const uint8_t>(buffer_.data(), static_cast<size_t>(n)));
  }
  update_watch();
}

void TapBackend::receive_ready() {
  if (!reading_paused_) return;
  reading_paused_ = false;
  update_watch();
}

SendResult TapBackend::transmit(std::span<const iovec> frame) {
  if (send_queue_.full()) {
    busy_reported_ = true;
    return SendResult::kBusy;
  }
  if (send_queue_.empty()) {
    ssize_t written = writev(fd_, frame.data(), static_cast<int>(frame.size()));
    if (written >= 0) return SendResult::kSent;
    // The interface is down (EIO) or cannot take it: lost, as on a wire.
    if (errno != EAGAIN && errno != EWOULDBLOCK) return SendResult::kDropped;
  }
  send_queue_.push(frame);
  update_watch();
  return SendResult::kSent;
}

}  // namespace ferry::net
