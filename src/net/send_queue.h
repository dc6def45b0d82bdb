// The bytes (stream) or datagrams a backend accepted but the socket did not take yet.
// Bounded: a backend answers kBusy instead of queueing past the limit, so a peer that does
// not read slows the guest's TX instead of growing memory or losing frames.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

namespace ferry::net {

class SendQueue {
 public:
  // Four largest frames: enough to keep a socket busy, small enough to bound memory.
  static constexpr size_t kDefaultLimit = 4 * (4096 + 65536 + 4);

  explicit SendQueue(size_t limit = kDefaultLimit) : limit_(limit) {}

  bool empty() const { return messages_.empty(); }
  bool full() const { return bytes_ >= limit_; }
  size_t bytes() const { return bytes_; }
  size_t limit() const { return limit_; }

  // Appends one message gathered from `pieces`, skipping its first `skip` bytes (the part
  // a direct write already sent).
  void push(std::span<const iovec> pieces, size_t skip = 0);
  // Stream sockets: writes as much as the socket takes. Returns -errno on an error other
  // than EAGAIN, else 0.
  int write_stream(int fd);
  // Datagram sockets: sends whole messages to `to` (null: the connected peer) until one
  // would block. Returns -errno on an error other than EAGAIN, else 0.
  int send_datagrams(int fd, const void* to, unsigned to_length);
  // Character devices that take one message per write (tap): as send_datagrams.
  int write_each(int fd);
  void clear();

 private:
  // Sends whole messages from the front with `send_one` until the fd would block.
  template <typename SendOne>
  int send_each(SendOne send_one);

  size_t limit_;
  size_t bytes_ = 0;
  size_t head_offset_ = 0;  // bytes of the front message already written
  std::deque<std::vector<uint8_t>> messages_;
};

}  // namespace ferry::net
