// A backend whose descriptor carries one frame per system call (a datagram socket, a tap
// device): no framing, so a frame is exactly what one send or receive moves. This class
// holds what such backends share: the watch on the descriptor, the queue of frames the
// descriptor could not take yet (with the busy/ready handshake towards the NIC), and the
// bounded read loop that stops while the NIC cannot receive, so frames wait in the kernel's
// buffer instead of being read and dropped. Subclasses open the descriptor and say how one
// frame goes out and comes in.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/event_loop.h"
#include "net/net_backend.h"
#include "net/send_queue.h"

namespace ferry::net {

class MessageFdBackend : public NetBackend {
 public:
  ~MessageFdBackend() override;

  void receive_ready() final;

 protected:
  MessageFdBackend(EventLoop& loop, std::string id, std::string_view type,
                   size_t send_queue_limit);

  // Takes ownership of an open non-blocking descriptor (closed by the destructor, so a
  // create() that fails after this still releases it).
  void adopt_fd(int fd) { fd_ = fd; }
  int fd() const { return fd_; }
  // The descriptor is ready: the link goes up and the watch starts.
  void start();

  SendResult transmit(std::span<const iovec> frame) final;

  // One frame out now: the bytes sent, or -1 with errno set.
  virtual ssize_t send_frame(std::span<const iovec> frame) = 0;
  // The queued frames, in order, until the descriptor would block: 0 or -errno.
  virtual int flush_queue(SendQueue& queue) = 0;
  // One frame in, into `buffer`: its length, or -1 with errno set.
  virtual ssize_t receive_frame(std::span<uint8_t> buffer) = 0;
  // The system calls' names, for log lines ("sendto", "recv"; "write", "read").
  virtual const char* send_call() const = 0;
  virtual const char* receive_call() const = 0;

 private:
  void update_watch();
  void on_ready(uint32_t events);
  void read_frames();

  EventLoop& loop_;
  int fd_ = -1;
  uint32_t watched_events_ = 0;
  bool reading_paused_ = false;
  bool busy_reported_ = false;
  SendQueue send_queue_;
  std::vector<uint8_t> buffer_;
};

}  // namespace ferry::net
