// NetDriver: a virtio-net driver over VirtioPciDriver, as a guest OS runs one without
// offloads: it negotiates VERSION_1, MAC, STATUS, CTRL_VQ, CTRL_RX, CTRL_VLAN, CTRL_MAC_ADDR,
// GUEST_ANNOUNCE and EVENT_IDX, and by option MRG_RXBUF, MQ and RING_PACKED; reads the MAC,
// link status and queue pairs from the configuration; keeps every receive queue full of
// 2 KiB buffers; sends frames behind a zeroed 12-byte header; receives frames (joining a
// mergeable frame's buffers by num_buffers); sends control commands and returns the
// device's ack. Queues: rxN = 2N, txN = 2N + 1, control after the last pair the device has.
//
// The byte layouts (header, control commands) are free functions so they can be checked
// without a device.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/status.h"
#include "guest/dma_memory.h"
#include "guest/virtio/virtio_pci_driver.h"
#include "guest/virtio/virtqueue_driver.h"
#include "spec/virtio_net.h"

namespace ferry::guest::virtio {

using MacAddress = std::array<uint8_t, 6>;

// ---- byte layouts ------------------------------------------------------------------------------

// The 12-byte virtio_net_hdr_v1 a frame is sent behind: no checksum, no GSO, num_buffers 0.
std::array<uint8_t, spec::virtio_net::kHdrV1Size> net_tx_header();
// num_buffers of a received header (12 bytes); 0 when the header is short.
uint16_t net_rx_num_buffers(std::span<const uint8_t> header);

// A control-queue request: class and command (the first descriptor) and its data (a
// second descriptor, absent when empty: QEMU breaks the device on a zero-length one).
struct NetCtrlCommand {
  uint8_t cls = 0;
  uint8_t cmd = 0;
  std::vector<uint8_t> data;
};
NetCtrlCommand net_ctrl_rx(uint8_t command, bool on);
NetCtrlCommand net_ctrl_mac_table(std::span<const MacAddress> unicast,
                                  std::span<const MacAddress> multicast);
NetCtrlCommand net_ctrl_mac_addr_set(const MacAddress& mac);
NetCtrlCommand net_ctrl_vlan(bool add, uint16_t vid);
NetCtrlCommand net_ctrl_announce_ack();
NetCtrlCommand net_ctrl_mq_pairs(uint16_t pairs);

// ---- the driver --------------------------------------------------------------------------------

class NetDriver {
 public:
  // Each buffer slot: an RX buffer (header + frame, or a mergeable piece) or a TX frame.
  static constexpr uint32_t kBufferSize = 2048;
  // Largest frame sent or received without offloads: Ethernet with one VLAN tag, no FCS.
  static constexpr uint32_t kMaxFrame = 1518;

  struct Options {
    bool packed = false;      // ask for RING_PACKED
    bool mergeable = true;    // ask for MRG_RXBUF
    bool multiqueue = false;  // ask for MQ and use up to `queue_pairs` pairs
    uint16_t queue_pairs = 1;
    uint16_t queue_size = 0;  // entries per queue; 0: the device's maximum
    // MSI-X with vector v sending msi_data_base + v (config 0, queue q: q + 1, when the
    // table has room); without it every queue is polled.
    std::optional<uint32_t> msi_data_base;
    // How long a control command may take before it is an error.
    std::chrono::milliseconds ctrl_timeout{5000};
  };

  // Resets and starts the device behind `pci`; `dma` holds rings and buffers and must
  // outlive the driver.
  static Result<std::unique_ptr<NetDriver>> start(std::unique_ptr<VirtioPciDriver> pci,
                                                  DmaMemory& dma, const Options& options);
  ~NetDriver();
  // Forgets the device without touching it (the destructor otherwise resets it): for a
  // device a machine reset already put back, or code that may not reach it now (e.g. while
  // the machine lock is held on the thread that would need it). Only destruction may follow.
  void abandon() { pci_.reset(); }
  NetDriver(const NetDriver&) = delete;
  NetDriver& operator=(const NetDriver&) = delete;

  VirtioPciDriver& pci() { return *pci_; }
  uint64_t features() const { return pci_->features(); }
  const MacAddress& mac() const { return mac_; }
  uint16_t max_queue_pairs() const { return max_pairs_; }
  uint16_t queue_pairs() const { return pairs_; }
  bool mergeable() const { return mergeable_; }
  // The link as the configuration says now (up when the device has no STATUS).
  Result<bool> link_up();
  // The configuration's ANNOUNCE bit: the device asks for a gratuitous announcement.
  Result<bool> announce_requested();

  // Sends `frame` (without header; at most kMaxFrame bytes) on pair `pair`. Refused when
  // every TX slot is still in flight after taking back what the device finished. With
  // `kick` false the device is not told yet: a burst ends with one kick_tx (each
  // notification is a register write, which costs far more than a ring entry).
  Status send(std::span<const uint8_t> frame, uint16_t pair = 0, bool kick = true);
  Status kick_tx(uint16_t pair = 0);
  // Takes back finished TX chains; how many.
  Result<unsigned> reclaim_tx(uint16_t pair = 0);
  // The next received frame of `pair` (header stripped), or nothing; its buffers are
  // posted again.
  Result<std::optional<std::vector<uint8_t>>> receive(uint16_t pair = 0);
  // RX buffers posted and not yet returned, on `pair`.
  uint16_t rx_posted(uint16_t pair = 0) const;
  // TX slots not in flight on `pair`, as of the last reclaim_tx or send.
  uint16_t tx_free(uint16_t pair = 0) const {
    return pair < tx_.size() ? static_cast<uint16_t>(tx_[pair].free.size()) : 0;
  }

  // Sends a control command and waits for the device's ack (kCtrlOk / kCtrlErr).
  Result<uint8_t> control(const NetCtrlCommand& command);
  Result<uint8_t> set_rx_mode(uint8_t command, bool on) { return control(net_ctrl_rx(command, on)); }
  Result<uint8_t> set_mac_table(std::span<const MacAddress> unicast,
                                std::span<const MacAddress> multicast) {
    return control(net_ctrl_mac_table(unicast, multicast));
  }
  Result<uint8_t> set_mac_address(const MacAddress& mac);
  Result<uint8_t> vlan_add(uint16_t vid) { return control(net_ctrl_vlan(true, vid)); }
  Result<uint8_t> vlan_del(uint16_t vid) { return control(net_ctrl_vlan(false, vid)); }
  Result<uint8_t> announce_ack() { return control(net_ctrl_announce_ack()); }
  // MQ: how many pairs the device should steer to; the driver uses that many afterwards.
  Result<uint8_t> set_queue_pairs(uint16_t pairs);

 private:
  // One RX or TX queue and its buffer slots (one DMA block, kBufferSize each).
  struct Pool {
    VirtqueueDriver* queue = nullptr;
    uint64_t memory = 0;
    uint16_t slots = 0;
    std::vector<uint16_t> free;  // TX: slots not in flight
    uint16_t posted = 0;         // RX: buffers the device holds
  };

  NetDriver(std::unique_ptr<VirtioPciDriver> pci, DmaMemory& dma) : pci_(std::move(pci)), dma_(&dma) {}
  Status init(const Options& options);
  Result<Pool> make_pool(uint16_t queue_index, uint16_t size, uint16_t vector);
  Status post_rx(Pool& pool, uint16_t slot);
  Status check_pair(uint16_t pair) const;
  uint16_t vector_for(uint16_t queue_index) const;

  std::unique_ptr<VirtioPciDriver> pci_;
  DmaMemory* dma_;
  MacAddress mac_{};
  uint16_t max_pairs_ = 1;
  uint16_t pairs_ = 1;
  bool mergeable_ = false;
  std::vector<Pool> rx_;
  std::vector<Pool> tx_;
  VirtqueueDriver* ctrl_ = nullptr;
  uint64_t ctrl_memory_ = 0;  // one page: header, data, ack
  std::chrono::milliseconds ctrl_timeout_{5000};
  std::vector<uint64_t> allocations_;
};

}  // namespace ferry::guest::virtio
