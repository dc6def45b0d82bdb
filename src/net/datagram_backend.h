// The datagram half of `-netdev socket` (QEMU 7.2): one frame per UDP datagram, no length
// prefix. `udp=HOST:PORT,localaddr=HOST:PORT` binds the local address and sends to the
// remote one; `mcast=GROUP:PORT[,localaddr=IP]` joins the IPv4 group (loopback on, so VMs on
// one host hear each other; a VM hears its own frames, as in QEMU) and sends to it. The
// link is always up. Reading stops while the NIC cannot receive (datagrams then wait in the
// socket's buffer, and the kernel drops what overflows it, as a network may).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/event_loop.h"
#include "net/message_fd_backend.h"
#include "net/send_queue.h"
#include "net/socket_address.h"

namespace ferry::net {

struct DatagramOptions {
  enum class Mode { kUdp, kMulticast };
  Mode mode = Mode::kUdp;
  SocketAddress remote;  // udp: the peer; mcast: the group and port
  std::optional<SocketAddress> local;  // udp: required; mcast: the interface address (port ignored)
  size_t send_queue_limit = SendQueue::kDefaultLimit;
};

class DatagramBackend final : public MessageFdBackend {
 public:
  // Errors name the address (QEMU's wording for a group that is not multicast).
  static Result<std::unique_ptr<DatagramBackend>> create(EventLoop& loop, std::string id,
                                                         DatagramOptions options);

  // Where the socket is bound (a port 0 resolved).
  const SocketAddress& bound_address() const { return bound_; }

 private:
  DatagramBackend(EventLoop& loop, std::string id, DatagramOptions options);
  Status open_socket();

  ssize_t send_frame(std::span<const iovec> frame) override;
  int flush_queue(SendQueue& queue) override;
  ssize_t receive_frame(std::span<uint8_t> buffer) override;
  const char* send_call() const override { return "sendto"; }
  const char* receive_call() const override { return "recv"; }

  DatagramOptions options_;
  ResolvedAddress destination_;
  SocketAddress bound_;
};

}  // namespace ferry::net
