// QEMU's hub (`-netdev hubport,id=,hubid=`): a frame a port's NIC sends goes to every other
// port of the same hub. A port whose NIC cannot receive keeps frames for it in a queue
// bounded as QEMU's net queue is (10000 frames; beyond that they are dropped), delivered
// when the NIC calls receive_ready(). A port without a NIC drops what reaches it.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <vector>

#include "net/net_backend.h"

namespace ferry::net {

class HubPort;

class Hub {
 public:
  explicit Hub(uint32_t id) : id_(id) {}
  uint32_t id() const { return id_; }
  const std::vector<HubPort*>& ports() const { return ports_; }

 private:
  friend class HubPort;
  uint32_t id_;
  std::vector<HubPort*> ports_;
};

// The hubs of one machine, created by the first port naming them; they outlive the ports.
class Hubs {
 public:
  Hub& get(uint32_t id);

 private:
  std::map<uint32_t, std::unique_ptr<Hub>> hubs_;
};

class HubPort final : public NetBackend {
 public:
  // QEMU's net queue limit.
  static constexpr size_t kQueueLimit = 10000;

  HubPort(std::string id, Hub& hub);
  ~HubPort() override;

  SendResult transmit(std::span<const iovec> frame) override;
  void receive_ready() override;

  const Hub& hub() const { return hub_; }
  size_t queued_frames() const { return queue_.size(); }

 private:
  void offer(const std::vector<uint8_t>& frame);

  Hub& hub_;
  std::deque<std::vector<uint8_t>> queue_;
  bool delivering_ = false;
};

}  // namespace ferry::net
