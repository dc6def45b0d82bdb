// VirtioNet: the virtio-net device (QEMU 7.2's virtio-net-device) that joins the virtqueues,
// the ring-free net logic beside it (config, features, control commands, RX filter) and a
// network backend. Queues in QEMU's order: RX0, TX0, RX1, TX1, ..., ctrl last.
//
// Receive: the backend asks can_receive() before each frame. The answer is no while the VM
// is stopped, the driver is not ready, RX0 is broken or empty, or a frame still waits
// inside the device; the backend then keeps frames in its socket, and the device calls
// receive_ready() when the driver adds RX buffers or the VM runs again, so nothing is lost
// while the connection lives. A frame the filter refuses is dropped, as QEMU does. With
// MRG_RXBUF a frame spans several chains (num_buffers in the first header); when the
// chains run out mid-frame, they go back to the ring and the frame waits in the device.
//
// Transmit: on a kick (or resume) chains are popped, the header stripped, the frame sent;
// each chain goes back used with length 0. A backend answering busy keeps the chain on the
// ring until send_ready().
//
// Hostile chains: the virtqueue's error (or a chain virtio-net cannot use) is logged with
// the reason, the device asks for NEEDS_RESET (plus the configuration interrupt) and stops
// processing until the driver resets it.
//
// Differences from QEMU 7.2: one backend feeds RX0 only (no RSS steering across pairs);
// the backend's link does not change the guest-visible link status (QEMU 7.2 neither: a
// stream netdev without a peer drops frames silently), set_link() does, as QMP set_link.
//
// Link down (QMP set_link, QEMU 7.2's link_down): LINK_UP clear in the config status,
// frames from the backend dropped, TX chains taken and given back used (length 0) without
// being sent, announce frames dropped; a change raises the configuration interrupt (QEMU
// does so whether or not STATUS was negotiated; the transport needs DRIVER_OK).
//
// Migration: virtio_net_migration.h (the section, its checks, quiesce and post-load).
//
// Threading: none inside; every call runs under the machine lock on the main loop.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/event_loop.h"
#include "base/status.h"
#include "hw/core/nic.h"
#include "hw/virtio/net/announce.h"
#include "hw/virtio/net/net_features.h"
#include "hw/virtio/net/net_state.h"
#include "hw/virtio/net/rx_filter_event.h"
#include "hw/virtio/ring_memory.h"
#include "hw/virtio/virtio_device.h"
#include "hw/virtio/virtqueue.h"
#include "net/net_backend.h"

namespace ferry::virtio::net {

struct VirtioNetMigration;       // virtio_net_migration.h
struct VirtioNetMigrationState;  // virtio_net_migration.h

// What the device tells the machine (QMP events).
class VirtioNetEvents {
 public:
  virtual ~VirtioNetEvents() = default;
  // NIC_RX_FILTER_CHANGED, already gated (once until the next query-rx-filter).
  virtual void rx_filter_changed() = 0;
};

struct VirtioNetOptions {
  MacAddress mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  uint64_t property_features = default_property_features();
  NetProperties properties;
};

class VirtioNet final : public VirtioDevice,
                        public ::ferry::net::NicPort,
                        public ::ferry::hw::Nic {
 public:
  // `backend` (may be null: no netdev) and `events` (may be null) are not owned and must
  // outlive the device. `backend_queues` is the netdev's queue count (0 or 1: one pair).
  static Result<std::unique_ptr<VirtioNet>> create(const VirtioNetOptions& options,
                                                   ::ferry::net::NetBackend* backend,
                                                   uint32_t backend_queues,
                                                   VirtioNetEvents* events = nullptr);
  ~VirtioNet() override;

  // ---- VirtioDevice ----
  uint16_t device_id() const override;
  VirtioPciIdentity pci_identity() const override;
  uint64_t host_features() const override { return host_features_; }
  uint64_t legacy_only_features() const override;
  uint16_t num_queues() const override { return static_cast<uint16_t>(2 * max_pairs() + 1); }
  uint16_t queue_max_size(uint16_t index) const override;
  uint32_t config_size() const override { return config_size_; }
  void get_config(std::span<uint8_t> out) override;
  void set_config(std::span<const uint8_t> in) override;
  void attach(VirtioTransport& transport) override;
  Status features_negotiated(uint64_t features) override;
  void queue_enabled(uint16_t index, const QueueLayout& layout, uint64_t features) override;
  void queue_notify(uint16_t index) override;
  void queue_reset(uint16_t index) override;
  void status_changed(uint8_t status) override;
  void reset() override;

  // ---- NicPort ----
  bool can_receive() override;
  void receive(std::span<const uint8_t> frame) override;
  void send_ready() override;
  void link_changed(bool up) override { (void)up; }

  // ---- the machine ----
  // VM run state (through VirtioPci's quiesce/resume): no RX or TX processing while
  // stopped (QEMU checks vm_running); resuming looks at every queue again.
  void set_running(bool running) override;
  // ---- hw::Nic (QMP set_link, announce-self) ----
  // LINK_UP in the status field and a configuration interrupt on a change.
  void set_link(bool up) override;
  std::array<uint8_t, kMacSize> current_mac() const override { return state_.rx.mac; }
  // Held while the VM is stopped and sent when it runs, as QEMU's net queue does.
  void send_raw(std::span<const uint8_t> frame) override;
  // Asks the guest to announce (ANNOUNCE + configuration interrupt) when it can and no
  // post-migration guest rounds are under way (QEMU's virtio_net_announce).
  void announce() override;
  bool link_up() const { return (state_.status & ::ferry::spec::virtio_net::kStatusLinkUp) != 0; }
  // After an incoming migration, with GUEST_ANNOUNCE and CTRL_VQ: `params.rounds` rounds
  // asking the guest (ANNOUNCE + configuration interrupt), the first at once, each next
  // one when the guest acknowledges, after QEMU's delay (QEMU 7.2's post_load timer, on
  // the VM clock: none fires while the VM is stopped).
  void incoming_migration_done(const AnnounceParameters& params) override;
  // The loop and VM clock the guest announce timer runs on (the factory's; without them
  // no timer is armed).
  void attach_timers(EventLoop& loop, const Clock& clock) {
    loop_ = &loop;
    clock_ = &clock;
  }
  // Gives the device its event sink to own (the factory's adapter to QMP).
  void own_events(std::unique_ptr<VirtioNetEvents> events) {
    owned_events_ = std::move(events);
    events_ = owned_events_.get();
  }
  // QEMU 7.2's RxFilterInfo (query_rx_filter.h); the next filter change is reported again.
  std::optional<nlohmann::ordered_json> query_rx_filter(std::string_view name) override;

  // ---- state, for queries, migration and tests ----
  const NetDeviceState& state() const { return state_; }
  NetDeviceState& mutable_state() { return state_; }
  const MacAddress& configured_mac() const { return options_.mac; }
  uint16_t max_pairs() const { return configuration_.max_queue_pairs; }
  uint16_t ctrl_queue() const { return static_cast<uint16_t>(2 * max_pairs()); }
  Virtqueue& queue(uint16_t index) { return *queues_.at(index); }
  bool running() const { return running_; }
  bool broken() const { return broken_; }
  // A frame taken from the backend that waits for RX buffers.
  bool frame_waiting() const { return waiting_frame_.has_value(); }
  // Bytes of the virtio-net header the driver expects before each frame.
  uint32_t header_size() const;

 private:
  // The section's description and hooks (virtio_net_migration.h) reach the state below.
  friend struct VirtioNetMigration;

  VirtioNet(const VirtioNetOptions& options, const NetConfiguration& configuration,
            uint64_t host_features, ::ferry::net::NetBackend* backend,
            VirtioNetEvents* events);

  bool driver_ok() const;
  bool is_rx(uint16_t index) const { return index < ctrl_queue() && index % 2 == 0; }
  bool is_tx(uint16_t index) const { return index < ctrl_queue() && index % 2 == 1; }
  // Stops the device: logs `error`, NEEDS_RESET and the configuration interrupt.
  void fail(const Status& error);
  // Whether RX0 holds a chain now; re-enables notification when empty (and looks again).
  bool rx_has_buffers();
  // Places one frame into RX0's chains. kWaiting: not enough chains (given back).
  enum class RxResult { kDone, kWaiting, kFailed };
  RxResult place_frame(std::span<const uint8_t> frame);
  // Delivers the frame waiting in the device, then lets the backend read on.
  void flush_rx();
  void process_tx(uint16_t index);
  void process_ctrl();
  void notify(Virtqueue& queue);
  // The guest announce timer: armed `delay_ms` from now, and what it does when it fires.
  void arm_guest_announce(int64_t delay_ms);
  void guest_announce_fired();
  void cancel_guest_announce();
  // Writes `data` into `ranges` starting `skip` bytes in.
  Status write_ranges(std::span<const memory::GuestRange> ranges, uint64_t skip,
                      std::span<const uint8_t> data);

  VirtioNetOptions options_;
  NetConfiguration configuration_;
  uint64_t host_features_;
  uint32_t config_size_;
  ::ferry::net::NetBackend* backend_;
  std::unique_ptr<VirtioNetEvents> owned_events_;
  VirtioNetEvents* events_;
  VirtioTransport* transport_ = nullptr;
  std::unique_ptr<DmaRingMemory> ring_memory_;
  std::vector<std::unique_ptr<Virtqueue>> queues_;
  NetDeviceState state_;
  RxFilterEventGate rx_event_gate_;
  uint64_t features_ = 0;
  uint8_t status_ = 0;
  bool running_ = true;
  bool broken_ = false;
  std::vector<bool> tx_waiting_;  // per pair: the backend was busy
  std::optional<std::vector<uint8_t>> waiting_frame_;
  EventLoop* loop_ = nullptr;
  const Clock* clock_ = nullptr;
  AnnounceParameters announce_params_;
  EventLoop::TimerId announce_timer_ = 0;
  bool announce_due_ = false;  // the timer fired while the VM was stopped
  // Announce frames sent while the VM was stopped: they go out when it runs (QEMU).
  static constexpr size_t kHeldRawLimit = 10000;
  std::deque<std::vector<uint8_t>> held_raw_;
  // Reused per frame / request, so the data path does not allocate once warm.
  std::vector<VirtqueueElement> rx_elems_;
  VirtqueueElement elem_;
  std::vector<iovec> out_iov_;
  std::vector<iovec> in_iov_;
  std::vector<uint8_t> scratch_;
  // Migration: the wire-shaped state a save fills and a load stages (allocated on first use).
  std::unique_ptr<VirtioNetMigrationState> migration_;
};

}  // namespace ferry::virtio::net
