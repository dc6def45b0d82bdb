#include "net/message_fd_backend.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "net/fd_interest.h"
#include "net/frame_codec.h"

namespace ferry::net {

MessageFdBackend::MessageFdBackend(EventLoop& loop, std::string id, std::string_view type,
                                   size_t send_queue_limit)
    : NetBackend(std::move(id), type),
      loop_(loop),
      send_queue_(send_queue_limit),
      buffer_(kMaxFrameSize) {}

MessageFdBackend::~MessageFdBackend() {
  if (fd_ < 0) return;
  if (watched_events_ != 0) loop_.unwatch_fd(fd_);
  close(fd_);
}

void MessageFdBackend::start() {
  set_link(true);
  update_watch();
}

void MessageFdBackend::update_watch() {
  uint32_t wanted = 0;
  if (!reading_paused_) wanted |= EventLoop::kReadable;
  if (!send_queue_.empty()) wanted |= EventLoop::kWritable;
  Status st = set_fd_interest(loop_, fd_, wanted, watched_events_,
                              [this](uint32_t events) { on_ready(events); });
  if (!st.ok()) log(LogLevel::kError, "netdev {}: {}", id(), st.message());
}

void MessageFdBackend::on_ready(uint32_t events) {
  if (events & EventLoop::kWritable) {
    int rc = flush_queue(send_queue_);
    if (rc < 0) log(LogLevel::kWarn, "netdev {}: {}: {}", id(), send_call(), std::strerror(-rc));
    if (busy_reported_ && !send_queue_.full()) {
      busy_reported_ = false;
      notify_send_ready();
    }
  }
  if (events & EventLoop::kReadable) read_frames();
  update_watch();
}

void MessageFdBackend::read_frames() {
  // A bounded batch per wake-up, so a flood cannot starve the loop.
  for (int i = 0; i < 64; ++i) {
    if (!nic_can_receive()) {
      reading_paused_ = true;
      return;
    }
    ssize_t n = receive_frame(buffer_);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        log(LogLevel::kWarn, "netdev {}: {}: {}", id(), receive_call(), std::strerror(errno));
      return;
    }
    // An empty datagram carries no frame.
    if (n > 0) deliver(std::span<const uint8_t>(buffer_.data(), static_cast<size_t>(n)));
  }
}

void MessageFdBackend::receive_ready() {
  if (!reading_paused_) return;
  reading_paused_ = false;
  update_watch();
}

SendResult MessageFdBackend::transmit(std::span<const iovec> frame) {
  if (send_queue_.full()) {
    busy_reported_ = true;
    return SendResult::kBusy;
  }
  // Frames already waiting go first: a new one joins the queue behind them.
  if (send_queue_.empty()) {
    if (send_frame(frame) >= 0) return SendResult::kSent;
    // Anything but a full buffer (no peer listening, no route, the interface down): lost,
    // as on a wire.
    if (errno != EAGAIN && errno != EWOULDBLOCK) return SendResult::kDropped;
  }
  send_queue_.push(frame);
  update_watch();
  return SendResult::kSent;
}

}  // namespace ferry::net
