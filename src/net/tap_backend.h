// `-netdev tap,id=,ifname=,script=no,downscript=no` (QEMU 7.2): frames through a Linux tap
// device, one per read or write. Ferry runs no ifup/downscript (both must be `no`) and uses
// no vnet header: QEMU turns vnet_hdr on where the kernel has it, which lets virtio-net
// offer offloads; Ferry's tap refuses vnet_hdr=on for now. Creating a tap needs
// CAP_NET_ADMIN (tests make their own network namespace). Link always up; reading stops
// while the NIC cannot receive.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/event_loop.h"
#include "net/net_backend.h"
#include "net/send_queue.h"

namespace ferry::net {

struct TapOptions {
  std::string ifname;  // empty: the kernel names it (tapN)
  size_t send_queue_limit = SendQueue::kDefaultLimit;
};

class TapBackend final : public NetBackend {
 public:
  // Errors in QEMU's words ("could not configure /dev/net/tun (NAME): REASON").
  static Result<std::unique_ptr<TapBackend>> create(EventLoop& loop, std::string id,
                                                    TapOptions options);
  ~TapBackend() override;

  SendResult transmit(std::span<const iovec> frame) override;
  void receive_ready() override;

  // The interface's name (the kernel's choice when none was given).
  const std::string& ifname() const { return ifname_; }

 private:
  TapBackend(EventLoop& loop, std::string id, TapOptions options);
  void update_watch();
  void on_ready(uint32_t events);

  EventLoop& loop_;
  TapOptions options_;
  int fd_ = -1;
  std::string ifname_;
  uint32_t watched_events_ = 0;
  bool reading_paused_ = false;
  bool busy_reported_ = false;
  SendQueue send_queue_;
  std::vector<uint8_t> buffer_;
};

}  // namespace ferry::net
