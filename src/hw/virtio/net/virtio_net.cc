#include "hw/virtio/net/virtio_net.h"

#include <algorithm>

#include "base/byte_order.h"
#include "base/log.h"
#include "hw/virtio/net/ctrl_commands.h"
#include "hw/virtio/net/guest_announce.h"
#include "hw/virtio/net/net_config.h"
#include "hw/virtio/net/query_rx_filter.h"
#include "hw/virtio/net/virtio_net_migration.h"
#include "spec/virtio_net.h"
#include "spec/virtio_pci.h"
#include "spec/virtio_ring.h"

namespace ferry::virtio::net {

namespace vn = ::ferry::spec::virtio_net;
namespace vp = ::ferry::spec::virtio_pci;
namespace vr = ::ferry::spec::virtio;

namespace {
// QEMU's control queue size (virtio_net_device_realize).
constexpr uint16_t kCtrlQueueSize = 64;
}  // namespace

Result<std::unique_ptr<VirtioNet>> VirtioNet::create(const VirtioNetOptions& options,
                                                    ::ferry::net::NetBackend* backend,
                                                    uint32_t backend_queues,
                                                    VirtioNetEvents* events) {
  auto configuration = configure_net_device(options.property_features, options.properties,
                                            backend_queues);
  if (!configuration.ok()) return configuration.status();
  // Stream, socket and hub backends carry no vnet header (QEMU's peer_has_vnet_hdr).
  const uint64_t offered =
      offered_net_features(configuration->requested_features, BackendCapabilities{});
  return std::unique_ptr<VirtioNet>(
      new VirtioNet(options, *configuration, offered, backend, events));
}

VirtioNet::VirtioNet(const VirtioNetOptions& options, const NetConfiguration& configuration,
                     uint64_t host_features, ::ferry::net::NetBackend* backend,
                     VirtioNetEvents* events)
    : options_(options),
      configuration_(configuration),
      host_features_(host_features),
      config_size_(net_config_size(configuration.requested_features)),
      backend_(backend),
      events_(events),
      tx_waiting_(configuration.max_queue_pairs, false) {
  state_.queue_pairs.max = configuration.max_queue_pairs;
  state_.reset(options_.mac);
  if (backend_ != nullptr) backend_->attach(this);
}

VirtioNet::~VirtioNet() {
  cancel_guest_announce();
  if (backend_ != nullptr && backend_->nic() == this) backend_->attach(nullptr);
}

uint16_t VirtioNet::device_id() const { return vp::kDeviceIdNet; }

VirtioPciIdentity VirtioNet::pci_identity() const {
  return {.pci_device_id = vp::kTransitionalNetDeviceId,
          .class_code = vp::kClassNetworkEthernet,
          .subsystem_id = vp::kDeviceIdNet};
}

uint64_t VirtioNet::legacy_only_features() const { return net::legacy_only_features(); }

uint16_t VirtioNet::queue_max_size(uint16_t index) const {
  if (index == ctrl_queue()) return kCtrlQueueSize;
  return index % 2 == 0 ? configuration_.rx_queue_size : configuration_.tx_queue_size;
}

void VirtioNet::get_config(std::span<uint8_t> out) {
  NetConfigFields fields;
  fields.mac = state_.rx.mac;
  fields.status = state_.status;
  fields.max_queue_pairs = max_pairs();
  fields.mtu = configuration_.mtu;
  fields.speed = configuration_.speed;
  fields.duplex = configuration_.duplex;
  fields.rss_offered = (host_features_ & vn::bit(vn::kFRss)) != 0;
  fill_net_config(out, fields);
}

void VirtioNet::set_config(std::span<const uint8_t> in) {
  if (in.size() < kMacSize) return;
  apply_net_config_write(in, features_, state_.rx.mac);
}

void VirtioNet::attach(VirtioTransport& transport) {
  transport_ = &transport;
  ring_memory_ = std::make_unique<DmaRingMemory>(transport.dma());
  queues_.clear();
  for (uint16_t i = 0; i < num_queues(); ++i)
    queues_.push_back(std::make_unique<Virtqueue>(i, *ring_memory_));
}

uint32_t VirtioNet::header_size() const {
  const bool v1 = (features_ & vr::feature(vr::kFVersion1)) != 0;
  return v1 || state_.mergeable_rx_bufs != 0 ? vn::kHdrV1Size : vn::kHdrLegacySize;
}

bool VirtioNet::driver_ok() const { return (status_ & vp::kStatusDriverOk) != 0; }

Status VirtioNet::features_negotiated(uint64_t features) {
  features_ = features;
  state_.features_negotiated(features);
  return {};
}

void VirtioNet::queue_enabled(uint16_t index, const QueueLayout& layout, uint64_t features) {
  if (transport_ == nullptr || index >= queues_.size()) return;
  Status configured = queues_[index]->configure(layout, features);
  if (!configured.ok()) {
    fail(configured);
    return;
  }
  if (index == 0) flush_rx();
}

void VirtioNet::queue_notify(uint16_t index) {
  if (transport_ == nullptr || index >= queues_.size() || broken_) return;
  if (is_rx(index)) {
    // The driver added buffers: what waits (in the device or the backend) can flow.
    if (index == 0) flush_rx();
  } else if (is_tx(index)) {
    process_tx(index);
  } else {
    process_ctrl();
  }
}

void VirtioNet::queue_reset(uint16_t index) {
  if (index < queues_.size()) queues_[index]->reset();
  if (is_tx(index)) tx_waiting_[index / 2] = false;
}

void VirtioNet::status_changed(uint8_t status) {
  const bool was_ok = driver_ok();
  status_ = status;
  if (!was_ok && driver_ok() && running_) {
    flush_rx();
    for (uint16_t i = 1; i < ctrl_queue(); i += 2) process_tx(i);
  }
}

void VirtioNet::reset() {
  for (auto& queue : queues_) queue->reset();
  std::fill(tx_waiting_.begin(), tx_waiting_.end(), false);
  features_ = 0;
  status_ = 0;
  broken_ = false;
  cancel_guest_announce();  // QEMU's reset drops pending rounds (state_.reset zeroes them)
  state_.reset(options_.mac);
}

void VirtioNet::set_running(bool running) {
  if (running_ == running) return;
  running_ = running;
  if (running) {
    std::deque<std::vector<uint8_t>> held;
    held.swap(held_raw_);
    for (const std::vector<uint8_t>& frame : held) send_raw(frame);
  }
  if (running && announce_due_) {
    announce_due_ = false;
    guest_announce_fired();
  }
  if (!running || !driver_ok() || broken_) return;
  // Resume: the kicks that came while stopped were ignored; look at every queue again.
  for (uint16_t i = 1; i < ctrl_queue(); i += 2) process_tx(i);
  flush_rx();
}

void VirtioNet::set_link(bool up) {
  const uint16_t before = state_.status;
  if (up)
    state_.status |= vn::kStatusLinkUp;
  else
    state_.status &= static_cast<uint16_t>(~vn::kStatusLinkUp);
  if (state_.status == before) return;
  // QEMU 7.2 notifies without looking at STATUS (the transport wants DRIVER_OK).
  if (transport_ != nullptr) transport_->notify_config();
  if (up) return;
  // A queue waiting for a busy backend is emptied now rather than later (QEMU drops it
  // when the link goes down under a waiting queue).
  for (uint16_t pair = 0; pair < max_pairs(); ++pair) {
    if (!tx_waiting_[pair]) continue;
    tx_waiting_[pair] = false;
    process_tx(static_cast<uint16_t>(2 * pair + 1));
  }
}

void VirtioNet::send_raw(std::span<const uint8_t> frame) {
  if (!link_up() || backend_ == nullptr) return;
  if (!running_) {
    // QEMU's net queue holds a stopped VM's frames (up to its 10,000) until it runs.
    if (held_raw_.size() < kHeldRawLimit) held_raw_.emplace_back(frame.begin(), frame.end());
    return;
  }
  const iovec piece{const_cast<uint8_t*>(frame.data()), frame.size()};
  // A full send queue loses the frame (QEMU would queue it): announce rounds repeat.
  (void)backend_->send(std::span<const iovec>(&piece, 1));
}

void VirtioNet::incoming_migration_done(const AnnounceParameters& params) {
  cancel_guest_announce();
  announce_params_ = params;
  const std::optional<int64_t> first = start_guest_announce(state_, features_, params);
  if (first.has_value()) arm_guest_announce(*first);
}

void VirtioNet::arm_guest_announce(int64_t delay_ms) {
  if (loop_ == nullptr || clock_ == nullptr) return;
  cancel_guest_announce();
  const int64_t now = clock_->now_ns();
  // Parameters come from migrate-set-parameters (at most 100 s): no overflow here.
  announce_timer_ = loop_->add_timer(*clock_, now + delay_ms * 1'000'000, [this] {
    announce_timer_ = 0;
    guest_announce_fired();
  });
}

void VirtioNet::guest_announce_fired() {
  if (!running_) {
    announce_due_ = true;  // the VM clock stands still while stopped, as QEMU's
    return;
  }
  if (state_.announce_rounds == 0) return;
  guest_announce_round(state_);
  if (transport_ != nullptr) transport_->notify_config();
}

void VirtioNet::cancel_guest_announce() {
  announce_due_ = false;
  if (announce_timer_ != 0 && loop_ != nullptr) loop_->cancel_timer(announce_timer_);
  announce_timer_ = 0;
}

std::optional<nlohmann::ordered_json> VirtioNet::query_rx_filter(std::string_view name) {
  rx_event_gate_.queried();
  return query_rx_filter_info(name, state_.rx, (features_ >> vn::kFCtrlVlan) & 1);
}

void VirtioNet::announce() {
  if (guest_announce_on_self_announce(state_, features_) && transport_ != nullptr)
    transport_->notify_config();
}

void VirtioNet::fail(const Status& error) {
  if (broken_) return;
  broken_ = true;
  log(LogLevel::kError, "virtio-net: {}; the device needs a reset", error.to_string());
  if (transport_ != nullptr) transport_->set_needs_reset();
}

void VirtioNet::notify(Virtqueue& queue) {
  auto wanted = queue.should_notify();
  if (!wanted.ok()) {
    fail(wanted.status());
    return;
  }
  if (*wanted) transport_->notify_queue(queue.index());
}

Status VirtioNet::write_ranges(std::span<const memory::GuestRange> ranges, uint64_t skip,
                               std::span<const uint8_t> data) {
  for (const memory::GuestRange& range : ranges) {
    if (data.empty()) break;
    if (skip >= range.len) {
      skip -= range.len;
      continue;
    }
    const uint64_t room = range.len - skip;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(room, data.size()));
    FERRY_RETURN_IF_ERROR(ring_memory_->write(range.addr + skip, data.first(n)));
    data = data.subspan(n);
    skip = 0;
  }
  return {};
}

// ---- receive ----------------------------------------------------------------------------

bool VirtioNet::rx_has_buffers() {
  Virtqueue& rx = *queues_[0];
  auto available = rx.available();
  if (!available.ok()) {
    fail(available.status());
    return false;
  }
  if (*available) {
    if (Status s = rx.set_notification(false); !s.ok()) fail(s);
    return !broken_;
  }
  // Ask for a kick when buffers arrive, then look again: one may have come meanwhile.
  if (Status s = rx.set_notification(true); !s.ok()) {
    fail(s);
    return false;
  }
  available = rx.available();
  if (!available.ok()) {
    fail(available.status());
    return false;
  }
  return *available;
}

bool VirtioNet::can_receive() {
  if (!running_ || broken_ || transport_ == nullptr || !driver_ok()) return false;
  if (queues_.empty() || !queues_[0]->ready() || queues_[0]->broken()) return false;
  if (waiting_frame_.has_value()) return false;
  return rx_has_buffers();
}

void VirtioNet::receive(std::span<const uint8_t> frame) {
  if (!link_up()) return;                 // link down: dropped, as in QEMU
  if (!state_.rx.accepts(frame)) return;  // filtered out: gone, as in QEMU
  if (place_frame(frame) == RxResult::kWaiting)
    waiting_frame_.emplace(frame.begin(), frame.end());
}

void VirtioNet::flush_rx() {
  if (!running_ || broken_ || transport_ == nullptr || !driver_ok()) return;
  if (waiting_frame_.has_value()) {
    if (place_frame(*waiting_frame_) == RxResult::kWaiting) return;
    waiting_frame_.reset();
  }
  if (backend_ != nullptr) backend_->receive_ready();
}

VirtioNet::RxResult VirtioNet::place_frame(std::span<const uint8_t> frame) {
  Virtqueue& rx = *queues_[0];
  const uint32_t header = header_size();
  const bool mergeable = state_.mergeable_rx_bufs != 0;
  uint8_t hdr[vn::kHdrV1Size] = {};  // no vnet header from the backend: no offload info
  const uint64_t total = header + frame.size();

  uint64_t offset = 0;  // bytes of header + frame placed
  uint16_t used = 0;
  while (offset < total) {
    if (rx_elems_.size() <= used) rx_elems_.resize(used + 1u);
    VirtqueueElement& elem = rx_elems_[used];
    auto popped = rx.pop(elem);
    if (!popped.ok()) {
      fail(popped.status());
      return RxResult::kFailed;
    }
    if (!*popped) {
      rx.discard_pushed();
      // Ask to be kicked when the driver adds buffers.
      if (Status s = rx.set_notification(true); !s.ok()) fail(s);
      return RxResult::kWaiting;
    }
    if (elem.in.empty()) {
      fail(Error(ErrorCode::kCorrupt,
                 "virtio-net receive queue contains no in buffers (chain {})", elem.id));
      return RxResult::kFailed;
    }
    if (used == 0 && elem.in_bytes < header) {
      fail(Error(ErrorCode::kCorrupt,
                 "virtio-net RX chain {} has {} writable bytes, fewer than the {}-byte header",
                 elem.id, elem.in_bytes, header));
      return RxResult::kFailed;
    }
    // The first chain starts with the header, written last (num_buffers is known then).
    const uint64_t skip = used == 0 ? header : 0;
    const uint64_t data_at = used == 0 ? 0 : offset - header;
    const uint64_t room = elem.in_bytes - skip;
    const uint64_t take = std::min<uint64_t>(room, frame.size() - data_at);
    if (Status s = write_ranges(elem.in, skip, frame.subspan(data_at, take)); !s.ok()) {
      fail(s);
      return RxResult::kFailed;
    }
    offset += skip + take;
    if (!mergeable && offset < total) {
      // QEMU 7.2 drops a frame too big for one chain without mergeable buffers.
      rx.unpop(elem);
      log(LogLevel::kWarn, "virtio-net truncated non-mergeable packet: i {} mergeable 0 offset {} size {}",
          used, offset, total);
      return RxResult::kDone;
    }
    if (Status s = rx.push(elem, static_cast<uint32_t>(skip + take)); !s.ok()) {
      fail(s);
      return RxResult::kFailed;
    }
    ++used;
  }
  if (mergeable) store_le<uint16_t>(hdr + vn::kHdrNumBuffers, used);
  if (Status s = write_ranges(rx_elems_[0].in, 0, std::span<const uint8_t>(hdr, header)); !s.ok()) {
    fail(s);
    return RxResult::kFailed;
  }
  if (Status s = rx.flush(); !s.ok()) {
    fail(s);
    return RxResult::kFailed;
  }
  notify(rx);
  return RxResult::kDone;
}

// ---- transmit ---------------------------------------------------------------------------

void VirtioNet::send_ready() {
  for (uint16_t pair = 0; pair < max_pairs(); ++pair) {
    if (!tx_waiting_[pair]) continue;
    tx_waiting_[pair] = false;
    process_tx(static_cast<uint16_t>(2 * pair + 1));
  }
}

void VirtioNet::process_tx(uint16_t index) {
  if (!running_ || broken_ || !driver_ok() || index >= queues_.size()) return;
  Virtqueue& tx = *queues_[index];
  if (!tx.ready() || tx.broken() || tx_waiting_[index / 2]) return;
  const uint32_t header = header_size();
  bool pushed = false;
  for (;;) {
    auto popped = tx.pop(elem_);
    if (!popped.ok()) {
      fail(popped.status());
      return;
    }
    if (!*popped) break;
    if (elem_.out.empty()) {
      fail(Error(ErrorCode::kCorrupt, "virtio-net header not in first element (chain {})",
                 elem_.id));
      return;
    }
    if (elem_.out_bytes < header) {
      fail(Error(ErrorCode::kCorrupt,
                 "virtio-net header incorrect: chain {} has {} readable bytes, the header {}",
                 elem_.id, elem_.out_bytes, header));
      return;
    }
    out_iov_.clear();
    in_iov_.clear();
    if (Status s = tx.map(elem_, out_iov_, in_iov_); !s.ok()) {
      fail(s);
      return;
    }
    // Strip the header: the backends carry bare Ethernet frames.
    size_t skip = header;
    size_t first = 0;
    while (first < out_iov_.size() && skip >= out_iov_[first].iov_len) {
      skip -= out_iov_[first].iov_len;
      ++first;
    }
    if (first < out_iov_.size()) {
      out_iov_[first].iov_base = static_cast<uint8_t*>(out_iov_[first].iov_base) + skip;
      out_iov_[first].iov_len -= skip;
    }
    const std::span<const iovec> frame(out_iov_.data() + first, out_iov_.size() - first);
    // Link down: the chain is used up unsent (QEMU's virtio_net_drop_tx_queue_data).
    if (backend_ != nullptr && link_up()) {
      if (backend_->send(frame) == ::ferry::net::SendResult::kBusy) {
        tx.unpop(elem_);
        tx_waiting_[index / 2] = true;
        break;
      }
    }
    if (Status s = tx.push(elem_, 0); !s.ok()) {
      fail(s);
      return;
    }
    pushed = true;
  }
  if (!pushed) return;
  if (Status s = tx.flush(); !s.ok()) {
    fail(s);
    return;
  }
  notify(tx);
}

// ---- control ----------------------------------------------------------------------------

void VirtioNet::process_ctrl() {
  if (!running_ || broken_ || !driver_ok()) return;
  Virtqueue& ctrl = *queues_[ctrl_queue()];
  if (!ctrl.ready() || ctrl.broken()) return;
  bool pushed = false;
  for (;;) {
    auto popped = ctrl.pop(elem_);
    if (!popped.ok()) {
      fail(popped.status());
      return;
    }
    if (!*popped) break;
    // Requests are a few bytes (a full MAC table is the largest): bounded by the chain.
    scratch_.resize(static_cast<size_t>(std::min<uint64_t>(elem_.out_bytes, 1u << 16)));
    size_t at = 0;
    for (const memory::GuestRange& range : elem_.out) {
      if (at == scratch_.size()) break;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(range.len, scratch_.size() - at));
      if (Status s = ring_memory_->read(range.addr, std::span(scratch_).subspan(at, n));
          !s.ok()) {
        fail(s);
        return;
      }
      at += n;
    }
    const CtrlOutcome outcome =
        execute_ctrl_command(state_, features_, scratch_, elem_.in_bytes);
    if (outcome.missing_headers) {
      ctrl.unpop(elem_);
      fail(Error(ErrorCode::kCorrupt, "virtio-net ctrl missing headers (chain {})", elem_.id));
      return;
    }
    const uint8_t ack = outcome.ack;
    if (Status s = write_ranges(elem_.in, 0, std::span<const uint8_t>(&ack, 1)); !s.ok()) {
      fail(s);
      return;
    }
    if (Status s = ctrl.push(elem_, 1); !s.ok()) {
      fail(s);
      return;
    }
    pushed = true;
    if (outcome.rx_filter_changed && events_ != nullptr && rx_event_gate_.take())
      events_->rx_filter_changed();
    // The guest acknowledged a round and more remain: the next after QEMU's delay.
    if (outcome.announce_step)
      arm_guest_announce(announce_delay_ms(announce_params_, state_.announce_rounds));
  }
  if (!pushed) return;
  if (Status s = ctrl.flush(); !s.ok()) {
    fail(s);
    return;
  }
  notify(ctrl);
}

}  // namespace ferry::virtio::net
