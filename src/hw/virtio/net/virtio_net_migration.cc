// Hooks and load checks of virtio-net-pci's section (the story is in the header).
#include "hw/virtio/net/virtio_net_migration.h"

#include <algorithm>
#include <bit>

#include "hw/virtio/net/guest_announce.h"
#include "hw/virtio/net/virtio_net.h"
#include "spec/virtio_net.h"
#include "spec/virtio_pci.h"

namespace ferry::virtio::net {

namespace vn = ::ferry::spec::virtio_net;
namespace vps = ::ferry::spec::virtio_pci;

// ---- field checks (QEMU 7.2's words where it has them) ---------------------------------------

namespace detail {

Status check_queue_count(const LegacyQueuesWire&, uint32_t count) {
  if (count > vps::kQueueMax)
    return Error(ErrorCode::kCorrupt, "Invalid number of virtqueues: 0x{:x}", count);
  return {};
}

Status check_max_pairs(const NetDeviceWire& w, uint16_t value) {
  if (value != w.local_max_pairs)
    return Error(ErrorCode::kCorrupt,
                 "{:x} != {:x} (this device has {} queue pairs, the stream {})",
                 w.local_max_pairs, value, w.local_max_pairs, value);
  return {};
}

Status check_curr_pairs(const NetDeviceWire& w, uint16_t value) {
  if (value > w.max_queue_pairs)
    return Error(ErrorCode::kCorrupt, "virtio-net: curr_queue_pairs {:x} > max_queue_pairs {:x}",
                 value, w.max_queue_pairs);
  if (value == 0)
    return Error(ErrorCode::kCorrupt, "virtio-net: curr_queue_pairs 0: at least one pair is active");
  return {};
}

Status check_vnet_hdr(const NetDeviceWire& w, uint32_t value) {
  if (value > 1) return Error(ErrorCode::kCorrupt, "has_vnet_hdr must be 0 or 1, found {}", value);
  if (value != 0 && !w.local_vnet_hdr)
    return Error(ErrorCode::kFailedPrecondition, "virtio-net: saved image requires vnet_hdr=on");
  return {};
}

Status check_ufo(const NetDeviceWire& w, uint8_t value) {
  if (value > 1) return Error(ErrorCode::kCorrupt, "has_ufo must be 0 or 1, found {}", value);
  if (value != 0 && !w.local_ufo)
    return Error(ErrorCode::kFailedPrecondition,
                 "virtio-net: saved image requires TUN_F_UFO support");
  return {};
}

Status check_indirections_len(const RssState&, uint16_t value) {
  if (value == 0 || value > kRssMaxTableLength || !std::has_single_bit(value))
    return Error(ErrorCode::kCorrupt,
                 "virtio-net: RSS indirections_len {} is not a power of two from 1 to {}", value,
                 kRssMaxTableLength);
  return {};
}

bool multiple_pairs(const NetDeviceWire& w) { return w.local_max_pairs > 1; }

bool offloads_negotiated(const NetDeviceWire& w) {
  return (w.guest_features & vn::bit(vn::kFCtrlGuestOffloads)) != 0;
}

bool records_have_vector(const LegacyQueuesWire& q) { return q.msix; }
bool records_lack_vector(const LegacyQueuesWire& q) { return !q.msix; }

}  // namespace detail

// ---- reaching the device ------------------------------------------------------------------------

// The section is registered only for virtio-net-pci functions (virtio_net_type.cc), so the
// function's device is a VirtioNet.
VirtioNet& VirtioNetMigration::net(VirtioPci& pci) { return static_cast<VirtioNet&>(pci.device()); }

VirtioNetMigrationState& VirtioNetMigration::staging(VirtioPci& pci) {
  VirtioNet& n = net(pci);
  if (n.migration_ == nullptr) n.migration_ = std::make_unique<VirtioNetMigrationState>();
  return *n.migration_;
}

LegacyQueuesWire& VirtioNetMigration::queues(VirtioPci& pci) {
  LegacyQueuesWire& q = staging(pci).queues;
  q.msix = VirtioPciMigration::has_msix(pci);
  return q;
}

// The local context the fields are judged against; at load the driver features are those
// loaded so far (the low half: CTRL_GUEST_OFFLOADS is bit 2), as QEMU tests them.
NetDeviceWire& VirtioNetMigration::device(VirtioPci& pci) {
  NetDeviceWire& w = staging(pci).device;
  const VirtioNet& n = net(pci);
  w.local_max_pairs = n.max_pairs();
  w.guest_features = pci.driver_features();
  w.local_vnet_hdr = n.state().has_vnet_hdr;
  w.local_ufo = n.state().has_ufo;
  return w;
}

bool VirtioNetMigration::has_64bit_features(const VirtioPci& pci) {
  return (pci.host_features() >> 32) != 0;
}

bool VirtioNetMigration::ringsize_needed(const VirtioPci& pci) {
  for (uint16_t i = 0; i < pci.num_queues(); ++i)
    if (pci.queue_layout(i).size != pci.modern_state().queue_max[i]) return true;
  return false;
}

bool VirtioNetMigration::broken_needed(const VirtioPci& pci) {
  return pci.broken() || static_cast<const VirtioNet&>(const_cast<VirtioPci&>(pci).device()).broken();
}

bool VirtioNetMigration::started_needed(const VirtioPci& pci) {
  return (pci.status() & vps::kStatusDriverOk) != 0;
}

bool VirtioNetMigration::packed_needed(const VirtioPci& pci) {
  return (pci.host_features() & vps::feature_bit(vps::kFeatureRingPacked)) != 0;
}

Status VirtioNetMigration::rings_loaded(VirtioPci& pci, int) {
  staging(pci).rings_loaded = true;
  return {};
}

Status VirtioNetMigration::packed_loaded(VirtioPci& pci, int) {
  staging(pci).packed_loaded = true;
  return {};
}

// ---- save ------------------------------------------------------------------------------------

Status VirtioNetMigration::pre_save(VirtioPci& pci) {
  VirtioNet& n = net(pci);
  // Quiesced: RX and TX stopped with the VM, so no chain is half processed.
  if (n.running_)
    return Error(ErrorCode::kFailedPrecondition,
                 "virtio-net at {}: saved while the VM runs (the device must be quiesced)",
                 pci.address() ? pci.address()->to_bdf() : std::string("?"));
  VirtioNetMigrationState& s = staging(pci);
  s = VirtioNetMigrationState{};

  s.config.len = n.config_size();
  const std::span<const uint8_t> buffer = pci.config_buffer();
  s.config.bytes.assign(s.config.len, 0);
  std::copy_n(buffer.begin(), std::min<size_t>(buffer.size(), s.config.len), s.config.bytes.begin());

  const uint16_t count = pci.num_queues();
  s.queues.count = count;
  s.queues.vqs.resize(count);
  for (uint16_t i = 0; i < count; ++i) {
    const QueueLayout& layout = pci.queue_layout(i);
    const VirtqueueState state = n.queue(i).state();
    LegacyQueueRecord& rec = s.queues.vqs[i];
    rec.num = layout.size;
    rec.desc = layout.enabled ? layout.desc : 0;
    rec.last_avail_idx = state.last_avail_idx;
    rec.vector = pci.queue_vector(i);
    if (layout.enabled) s.rings.vqs[i] = {.avail = layout.driver, .used = layout.device};
    s.ring_sizes.num_default[i] = n.queue_max_size(i);
    s.packed.vqs[i] = {.last_avail_idx = state.last_avail_idx,
                       .last_avail_wrap = state.last_avail_wrap,
                       .used_idx = state.used_idx,
                       .used_wrap = state.used_wrap,
                       .inuse = state.inuse};
  }

  NetDeviceWire& w = s.device;
  const NetDeviceState& st = n.state_;
  w.rx = st.rx;
  w.tx_waiting = n.tx_waiting_[0] ? 1 : 0;
  w.mergeable_rx_bufs = st.mergeable_rx_bufs;
  w.status = st.status;
  w.has_vnet_hdr = st.has_vnet_hdr ? 1 : 0;
  w.has_ufo = st.has_ufo ? 1 : 0;
  w.max_queue_pairs = st.queue_pairs.max;
  w.curr_queue_pairs = st.queue_pairs.curr;
  w.tx_waiting_tail.clear();
  for (uint16_t pair = 1; pair < st.queue_pairs.curr; ++pair)
    w.tx_waiting_tail.push_back(n.tx_waiting_[pair] ? 1 : 0);
  w.curr_guest_offloads = st.offloads.curr;
  w.rss = st.rss;
  w.rss.indirections_table.resize(w.rss.indirections_len, 0);

  s.flags.broken = pci.broken() || n.broken_;
  s.flags.started = (pci.status() & vps::kStatusDriverOk) != 0;
  return {};
}

// ---- load ------------------------------------------------------------------------------------

Status VirtioNetMigration::pre_load(VirtioPci& pci) {
  staging(pci) = VirtioNetMigrationState{};
  return {};
}

namespace {

uint64_t join_dwords(const std::array<uint32_t, 2>& v) {
  return uint64_t{v[0]} | uint64_t{v[1]} << 32;
}

// Everything the loaded device fields must satisfy against the negotiated features and
// this device, before anything is applied.
Status check_device_fields(const NetDeviceWire& w, uint64_t features, uint16_t max_pairs) {
  auto has = [features](unsigned bit) { return (features & vn::bit(bit)) != 0; };
  constexpr uint16_t kStatusBits = vn::kStatusLinkUp | vn::kStatusAnnounce;
  if (w.status & ~kStatusBits)
    return Error(ErrorCode::kCorrupt,
                 "virtio-net-device/status: 0x{:x} has bits other than LINK_UP and ANNOUNCE",
                 w.status);
  const uint32_t mergeable = has(vn::kFMrgRxbuf) ? 1 : 0;
  if (w.mergeable_rx_bufs != mergeable)
    return Error(ErrorCode::kCorrupt,
                 "virtio-net-device/mergeable_rx_bufs: found {}, but the driver {} MRG_RXBUF",
                 w.mergeable_rx_bufs, mergeable ? "negotiated" : "did not negotiate");
  if (w.tx_waiting > 1)
    return Error(ErrorCode::kCorrupt, "virtio-net-device/tx_waiting: must be 0 or 1, found {}",
                 w.tx_waiting);
  for (size_t i = 0; i < w.tx_waiting_tail.size(); ++i)
    if (w.tx_waiting_tail[i] > 1)
      return Error(ErrorCode::kCorrupt,
                   "virtio-net-device/tx_waiting_tail[{}]: must be 0 or 1, found {}", i,
                   w.tx_waiting_tail[i]);
  const bool multiqueue = has(vn::kFMq) || has(vn::kFRss);
  if (max_pairs > 1 && w.curr_queue_pairs > 1 && !multiqueue)
    return Error(ErrorCode::kCorrupt,
                 "virtio-net-device/curr_queue_pairs: {} pairs, but the driver negotiated "
                 "neither MQ nor RSS",
                 w.curr_queue_pairs);
  if (has(vn::kFCtrlGuestOffloads) && (w.curr_guest_offloads & ~(features & kGuestOffloadsMask)))
    return Error(ErrorCode::kCorrupt,
                 "virtio-net-device/curr_guest_offloads: 0x{:x} has offloads the driver did not "
                 "negotiate (negotiated 0x{:x})",
                 w.curr_guest_offloads, features & kGuestOffloadsMask);
  const RssState& rss = w.rss;
  if (rss.enabled) {
    if (rss.default_queue >= max_pairs)
      return Error(ErrorCode::kCorrupt,
                   "virtio-net-device/rss/default_queue: {} is not below the {} queue pairs",
                   rss.default_queue, max_pairs);
    for (size_t i = 0; i < rss.indirections_table.size(); ++i)
      if (rss.indirections_table[i] >= max_pairs)
        return Error(ErrorCode::kCorrupt,
                     "virtio-net-device/rss/indirections_table[{}]: {} is not below the {} queue "
                     "pairs",
                     i, rss.indirections_table[i], max_pairs);
    if (rss.redirect && !has(vn::kFRss))
      return Error(ErrorCode::kCorrupt,
                   "virtio-net-device/rss/redirect: set, but the driver did not negotiate RSS");
    if (rss.populate_hash && !has(vn::kFHashReport))
      return Error(ErrorCode::kCorrupt,
                   "virtio-net-device/rss/populate_hash: set, but the driver did not negotiate "
                   "HASH_REPORT");
    if (rss.hash_types & ~kRssSupportedHashTypes)
      return Error(ErrorCode::kCorrupt,
                   "virtio-net-device/rss/hash_types: 0x{:x} has types outside the supported 0x{:x}",
                   rss.hash_types, kRssSupportedHashTypes);
  }
  return {};
}

}  // namespace

Status VirtioNetMigration::post_load(VirtioPci& pci, int) {
  VirtioNet& n = net(pci);
  VirtioNetMigrationState& s = staging(pci);
  const std::string where =
      fmt::format("virtio-net at {}", pci.address() ? pci.address()->to_bdf() : std::string("?"));
  auto named = [&where](Status st) { return st.prepend_message(where); };

  // The transport: features within the offer (QEMU's words), modern queue state derived.
  if (Status st = pci.check_loaded_state(); !st.ok()) return named(std::move(st));
  const uint64_t features = pci.driver_features();

  // Queues: as many as this device has, each within its maximum, legacy and modern records
  // agreeing, rings known for every queue that has one.
  const uint16_t count = pci.num_queues();
  if (s.queues.count != count)
    return named(Error(ErrorCode::kCorrupt,
                       "virtio/queues/num_queues: the stream has {} virtqueues, this device {}",
                       s.queues.count, count));
  const bool packed = (features & vps::feature_bit(vps::kFeatureRingPacked)) != 0;
  std::vector<QueueLayout> layouts(count);
  std::vector<VirtqueueState> states(count);
  for (uint16_t i = 0; i < count; ++i) {
    const LegacyQueueRecord& rec = s.queues.vqs[i];
    const uint16_t max = n.queue_max_size(i);
    if (rec.num > max || rec.num == 0)
      return named(Error(ErrorCode::kCorrupt,
                         "virtio/queues/vqs[{}]/num: VQ {} size 0x{:x} is not within 1..0x{:x}", i,
                         i, rec.num, max));
    if (s.ring_sizes.num_default[i] != 0 && s.ring_sizes.num_default[i] != max)
      return named(Error(ErrorCode::kCorrupt,
                         "virtio/ringsize/num_default[{}]: {} in the stream, {} on this device", i,
                         s.ring_sizes.num_default[i], max));
    const ModernQueueState& modern = pci.modern_state().vqs[i];
    if (modern.enabled && join_dwords(modern.desc) != rec.desc)
      return named(Error(ErrorCode::kCorrupt,
                         "virtio/queues/vqs[{}]/desc: 0x{:x}, but the modern state has 0x{:x}", i,
                         rec.desc, join_dwords(modern.desc)));
    if (rec.desc != 0 && !s.rings_loaded)
      return named(Error(ErrorCode::kCorrupt,
                         "virtio/virtqueues is missing, but VQ {} has a ring at 0x{:x}", i,
                         rec.desc));
    if (rec.desc == 0 && rec.last_avail_idx != 0)
      return named(Error(ErrorCode::kCorrupt,
                         "VQ {} address 0x0 inconsistent with Host index 0x{:x}", i,
                         rec.last_avail_idx));
    if (VirtioPciMigration::has_msix(pci)) {
      if (Status st = pci.restore_queue_vector(i, rec.vector); !st.ok())
        return named(st.prepend_path(fmt::format("virtio/queues/vqs[{}]/vector", i)));
    }
    layouts[i] = QueueLayout{.size = static_cast<uint16_t>(rec.num),
                             .enabled = rec.desc != 0,
                             .desc = rec.desc,
                             .driver = s.rings.vqs[i].avail,
                             .device = s.rings.vqs[i].used};
    VirtqueueState& state = states[i];
    state.last_avail_idx = rec.last_avail_idx;
    if (packed) {
      if (!s.packed_loaded && rec.desc != 0)
        return named(Error(ErrorCode::kCorrupt,
                           "virtio/packed_virtqueues is missing, but VQ {} is a packed ring", i));
      const PackedQueueWire& p = s.packed.vqs[i];
      if (rec.desc != 0 && p.last_avail_idx != rec.last_avail_idx)
        return named(Error(ErrorCode::kCorrupt,
                           "virtio/packed_virtqueues/vqs[{}]/last_avail_idx: 0x{:x}, but the queue "
                           "record has 0x{:x}",
                           i, p.last_avail_idx, rec.last_avail_idx));
      state.last_avail_wrap = p.last_avail_wrap;
      state.used_idx = p.used_idx;
      state.used_wrap = p.used_wrap;
      state.inuse = p.inuse;
    }
  }
  for (size_t i = count; i < vps::kQueueMax; ++i) {
    if (s.rings.vqs[i].avail != 0 || s.rings.vqs[i].used != 0)
      return named(Error(ErrorCode::kCorrupt,
                         "virtio/virtqueues/vqs[{}]: rings at 0x{:x}/0x{:x} for a queue this "
                         "device lacks",
                         i, s.rings.vqs[i].avail, s.rings.vqs[i].used));
  }

  NetDeviceWire& w = s.device;
  if (Status st = check_device_fields(w, features, n.max_pairs()); !st.ok())
    return named(std::move(st));

  // Apply the device state. set_features' derived state first, then what the stream says,
  // the receive filter whole: the VLAN table survives (QEMU 7.2 clears it here).
  n.features_ = features;
  n.status_ = pci.status();
  NetDeviceState& st = n.state_;
  st.features_negotiated(features);
  st.rx = w.rx;
  st.status = w.status;
  st.mergeable_rx_bufs = w.mergeable_rx_bufs;
  st.queue_pairs.curr = n.max_pairs() > 1 ? w.curr_queue_pairs : 1;
  if (detail::offloads_negotiated(w)) st.offloads.curr = w.curr_guest_offloads;
  if (w.rss.enabled) st.rss = w.rss;
  // The destination's backend has room: TX is looked at again when the VM runs.
  std::fill(n.tx_waiting_.begin(), n.tx_waiting_.end(), false);
  n.waiting_frame_.reset();
  n.broken_ = s.flags.broken;
  VirtioPciMigration::restore_config_buffer(pci, s.config.bytes);

  // Rings: layouts back into the transport, indices into the queues, checked against the
  // rings in guest RAM (loaded before the device sections). An inconsistent ring fails the
  // load here: the source keeps running (QEMU 7.2 would mark the device broken and run it).
  for (uint16_t i = 0; i < count; ++i) {
    if (Status st2 = pci.restore_queue_layout(i, layouts[i]); !st2.ok()) return named(st2);
    Virtqueue& queue = n.queue(i);
    if (Status st2 = queue.restore(layouts[i], features, states[i]); !st2.ok())
      return named(st2);
    if (queue.broken()) return named(queue.error());
  }

  // Asking the guest to announce (QEMU arms its timer in post_load) is not done here: the
  // machine calls incoming_migration_done on every NIC when the destination leaves
  // inmigrate, with the announce-* parameters in force then.
  return {};
}

}  // namespace ferry::virtio::net
