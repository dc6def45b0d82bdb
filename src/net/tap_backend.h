// `-netdev tap,id=,ifname=,script=no,downscript=no` (QEMU 7.2): frames through a Linux tap
// device, one per read or write. Ferry runs no ifup/downscript (both must be `no`) and uses
// no vnet header: QEMU turns vnet_hdr on where the kernel has it, which lets virtio-net
// offer offloads; Ferry's tap refuses vnet_hdr=on for now. Creating a tap needs
// CAP_NET_ADMIN (tests make their own network namespace). Link always up; reading stops
// while the NIC cannot receive.
#pragma once

#include <memory>
#include <string>

#include "base/event_loop.h"
#include "net/message_fd_backend.h"
#include "net/send_queue.h"

namespace ferry::net {

struct TapOptions {
  std::string ifname;  // empty: the kernel names it (tapN)
  size_t send_queue_limit = SendQueue::kDefaultLimit;
};

class TapBackend final : public MessageFdBackend {
 public:
  // Errors in QEMU's words ("could not configure /dev/net/tun (NAME): REASON").
  static Result<std::unique_ptr<TapBackend>> create(EventLoop& loop, std::string id,
                                                    TapOptions options);

  // The interface's name (the kernel's choice when none was given).
  const std::string& ifname() const { return ifname_; }

 private:
  TapBackend(EventLoop& loop, std::string id, TapOptions options);

  ssize_t send_frame(std::span<const iovec> frame) override;
  int flush_queue(SendQueue& queue) override;
  ssize_t receive_frame(std::span<uint8_t> buffer) override;
  const char* send_call() const override { return "write"; }
  const char* receive_call() const override { return "read"; }

  std::string ifname_;
};

}  // namespace ferry::net
