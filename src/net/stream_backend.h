// `-netdev stream` (QEMU 7.2) and the stream half of `-netdev socket` (listen=/connect=):
// frames over one stream socket in be32-length framing (frame_codec.h).
//
// Server: listens, accepts one client at a time (the listening socket is not watched while
// a client is connected, so a second one waits in the backlog) and accepts the next after
// the first leaves. Client: connects without blocking; with a reconnect delay it connects
// again that long after a failure or a hang-up (QEMU 8.0's `reconnect=`), so a migrated VM's
// destination takes the link over once the source's connection closes.
//
// The link is up only while a peer is connected; frames sent without one are dropped. A
// peer announcing an oversized frame is cut off with QEMU's message (logged, and kept in
// last_error()). `stream` reports connections as NETDEV_STREAM_CONNECTED/DISCONNECTED
// through NetEvents; `socket` has no events in QEMU, so none are given to it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/event_loop.h"
#include "net/frame_codec.h"
#include "net/net_backend.h"
#include "net/send_queue.h"
#include "net/socket_address.h"

namespace ferry::net {

struct StreamOptions {
  SocketAddress address;
  bool server = false;
  // Client only: wait this long, then connect again after a failed connect or a hang-up;
  // 0: never (QEMU 7.2's only behaviour).
  uint32_t reconnect_ms = 0;
  size_t send_queue_limit = SendQueue::kDefaultLimit;
};

class StreamBackend final : public NetBackend {
 public:
  // `type`: "stream" or "socket". `events` may be null (no events). A server listens before
  // this returns (errors name the address); a client starts connecting.
  static Result<std::unique_ptr<StreamBackend>> create(EventLoop& loop, std::string id,
                                                       std::string_view type,
                                                       StreamOptions options, NetEvents* events);
  ~StreamBackend() override;

  SendResult transmit(std::span<const iovec> frame) override;
  void receive_ready() override;

  bool connected() const { return conn_fd_ >= 0; }
  // Server: where it listens (port 0 resolved to the port the kernel chose).
  const std::optional<SocketAddress>& listening_address() const { return listening_; }
  // The last reason a connection ended or failed, empty if none.
  const std::string& last_error() const { return last_error_; }
  // Bytes accepted but not yet written to the socket.
  size_t queued_bytes() const { return send_queue_.bytes(); }

 private:
  StreamBackend(EventLoop& loop, std::string id, std::string_view type, StreamOptions options,
                NetEvents* events);
  Status start_listening();
  void watch_listener(bool on);
  void on_listener_ready();
  void connect_now();
  void on_connect_ready(uint32_t events);
  void connection_up(int fd);
  void connection_down(std::string reason);
  void arm_reconnect();
  void update_watch();
  void on_connection_ready(uint32_t events);
  // Delivers frames from what was read while the NIC takes them; false when it stopped.
  bool deliver_pending();
  void read_socket();
  void flush_send_queue();

  EventLoop& loop_;
  StreamOptions options_;
  NetEvents* events_;
  MonotonicClock clock_;
  std::optional<ResolvedAddress> resolved_;  // client
  std::optional<SocketAddress> listening_;   // server
  int listen_fd_ = -1;
  bool listener_watched_ = false;
  int connecting_fd_ = -1;
  int conn_fd_ = -1;
  uint32_t watched_events_ = 0;
  bool fd_watched_ = false;
  bool reading_paused_ = false;  // the NIC said no: the socket is not read
  bool peer_hung_up_ = false;   // seen while paused: the rest is read on resume
  std::optional<EventLoop::TimerId> reconnect_timer_;
  FrameDecoder decoder_;
  std::vector<uint8_t> read_buffer_;
  size_t read_start_ = 0;  // bytes before this were decoded
  size_t read_end_ = 0;
  SendQueue send_queue_;
  bool busy_reported_ = false;
  bool delivering_ = false;
  std::string last_error_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for bottom halves
};

}  // namespace ferry::net
