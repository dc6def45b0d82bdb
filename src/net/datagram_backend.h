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
#include <vector>

#include "base/event_loop.h"
#include "net/net_backend.h"
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

class DatagramBackend final : public NetBackend {
 public:
  // Errors name the address (QEMU's wording for a group that is not multicast).
  static Result<std::unique_ptr<DatagramBackend>> create(EventLoop& loop, std::string id,
                                                         DatagramOptions options);
  ~DatagramBackend() override;

  SendResult transmit(std::span<const iovec> frame) override;
  void receive_ready() override;

  // Where the socket is bound (a port 0 resolved).
  const SocketAddress& bound_address() const { return bound_; }

 private:
  DatagramBackend(EventLoop& loop, std::string id, DatagramOptions options);
  Status open_socket();
  void update_watch();
  void on_ready(uint32_t events);
  void read_datagrams();

  EventLoop& loop_;
  DatagramOptions options_;
  int fd_ = -1;
  ResolvedAddress destination_;
  SocketAddress bound_;
  uint32_t watched_events_ = 0;
  bool reading_paused_ = false;
  bool busy_reported_ = false;
  SendQueue send_queue_;
  std::vector<uint8_t> buffer_;
};

}  // namespace ferry::net
