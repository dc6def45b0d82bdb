// A network backend (QEMU's netdev): where a NIC's frames go and where its incoming
// frames come from. One NIC attaches to a backend; everything runs on the VM's main loop
// and nothing blocks it.
//
// Receiving has backpressure as QEMU's net layer does: before each frame the backend asks
// the NIC `can_receive()`; while the answer is no (no RX buffers, VM stopped) it stops
// reading its socket, so frames wait in the kernel instead of being dropped, and resumes
// when the NIC calls `receive_ready()` (QEMU's qemu_flush_queued_packets). A backend with
// no NIC attached reads and drops, as a QEMU netdev without a peer does.
//
// Sending: `send` writes what it can and keeps the rest in a bounded queue. When the queue
// is full it answers kBusy and takes nothing; the NIC stops taking frames from the guest
// until `send_ready()` (QEMU's sent callback, which stops virtio-net's TX queue). While
// the backend has no link (no peer connected) frames are dropped, as in QEMU.
//
// QMP set_link on the netdev takes its link down (QEMU's link_down of the netdev's net
// client): frames to it and from it are dropped until it is set up again.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "net/socket_address.h"

namespace ferry::net {

// The NIC side of a backend.
class NicPort {
 public:
  virtual ~NicPort() = default;
  // Whether the NIC can take a frame now.
  virtual bool can_receive() = 0;
  // One frame from the network; called only right after can_receive() said yes.
  virtual void receive(std::span<const uint8_t> frame) = 0;
  // After send() answered kBusy: the backend takes frames again.
  virtual void send_ready() {}
  // The backend's link (a connected peer) came or went.
  virtual void link_changed(bool up) { (void)up; }
};

// What a backend tells the machine (the QMP events of -netdev stream).
class NetEvents {
 public:
  virtual ~NetEvents() = default;
  virtual void connected(std::string_view netdev_id, const SocketAddress& address) = 0;
  virtual void disconnected(std::string_view netdev_id) = 0;
};

enum class SendResult {
  kSent,     // written or queued: it will go out in order
  kDropped,  // no link: the frame is gone, as in QEMU
  kBusy,     // the send queue is full: nothing taken; wait for NicPort::send_ready()
};

class NetBackend {
 public:
  NetBackend(std::string id, std::string_view type) : id_(std::move(id)), type_(type) {}
  virtual ~NetBackend() = default;
  NetBackend(const NetBackend&) = delete;
  NetBackend& operator=(const NetBackend&) = delete;

  const std::string& id() const { return id_; }
  // QEMU's netdev type name: "stream", "socket", "hubport".
  std::string_view type() const { return type_; }

  // Attaches the NIC (null detaches). Frames read from now on go to it.
  void attach(NicPort* nic);
  NicPort* nic() const { return nic_; }

  // One frame, gathered from `frame`; kDropped while set_link took the link down.
  SendResult send(std::span<const iovec> frame) {
    return link_down_ ? SendResult::kDropped : transmit(frame);
  }
  // The NIC has room again: deliver what waits and read on.
  virtual void receive_ready() = 0;

  bool link_up() const { return link_up_; }
  // QMP set_link on this netdev (not the peer connection link_up() reports).
  void set_link_down(bool down) { link_down_ = down; }
  bool link_down() const { return link_down_; }
  // What QEMU's `info network` shows: "listening", "connecting", the peer's URI...
  const std::string& info() const { return info_; }

 protected:
  // What send() does while the link is not set down.
  virtual SendResult transmit(std::span<const iovec> frame) = 0;
  // No NIC: frames are read and dropped.
  bool nic_can_receive() const { return nic_ == nullptr || nic_->can_receive(); }
  void deliver(std::span<const uint8_t> frame);
  void set_link(bool up);
  void set_info(std::string info) { info_ = std::move(info); }
  void notify_send_ready();

 private:
  std::string id_;
  std::string type_;  // owned: a caller's type may be a temporary
  NicPort* nic_ = nullptr;
  bool link_up_ = false;
  bool link_down_ = false;  // set_link ... up=false on this netdev
  std::string info_;
};

// The total length of a gathered frame.
size_t frame_size(std::span<const iovec> frame);

}  // namespace ferry::net
