#include "net/send_queue.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace ferry::net {

void SendQueue::push(std::span<const iovec> pieces, size_t skip) {
  std::vector<uint8_t> message;
  for (const iovec& piece : pieces) {
    const auto* data = static_cast<const uint8_t*>(piece.iov_base);
    size_t length = piece.iov_len;
    size_t skipped = std::min(skip, length);
    skip -= skipped;
    message.insert(message.end(), data + skipped, data + length);
  }
  bytes_ += message.size();
  messages_.push_back(std::move(message));
}

int SendQueue::write_stream(int fd) {
  while (!messages_.empty()) {
    iovec iov[64];
    int count = 0;
    for (size_t i = 0; i < messages_.size() && count < 64; ++i) {
      size_t offset = i == 0 ? head_offset_ : 0;
      iov[count++] = {messages_[i].data() + offset, messages_[i].size() - offset};
    }
    msghdr message{};
    message.msg_iov = iov;
    message.msg_iovlen = static_cast<size_t>(count);
    // MSG_NOSIGNAL: a peer that left is an EPIPE to handle, not a signal that ends the VM.
    ssize_t written = sendmsg(fd, &message, MSG_NOSIGNAL);
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    }
    size_t left = static_cast<size_t>(written);
    bytes_ -= left;
    while (left > 0) {
      size_t rest = messages_.front().size() - head_offset_;
      if (left < rest) {
        head_offset_ += left;
        break;
      }
      left -= rest;
      head_offset_ = 0;
      messages_.pop_front();
    }
  }
  return 0;
}

template <typename SendOne>
int SendQueue::send_each(SendOne send_one) {
  while (!messages_.empty()) {
    const std::vector<uint8_t>& message = messages_.front();
    ssize_t sent = send_one(message);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      // A message the network or device refuses (no route, too big) is lost, as a
      // datagram may be.
      int err = errno;
      bytes_ -= message.size();
      messages_.pop_front();
      return -err;
    }
    bytes_ -= message.size();
    messages_.pop_front();
  }
  return 0;
}

int SendQueue::send_datagrams(int fd, const void* to, unsigned to_length) {
  return send_each([&](const std::vector<uint8_t>& m) {
    return sendto(fd, m.data(), m.size(), MSG_NOSIGNAL, static_cast<const sockaddr*>(to),
                  to_length);
  });
}

int SendQueue::write_each(int fd) {
  return send_each([&](const std::vector<uint8_t>& m) { return write(fd, m.data(), m.size()); });
}

void SendQueue::clear() {
  messages_.clear();
  bytes_ = 0;
  head_offset_ = 0;
}

}  // namespace ferry::net
