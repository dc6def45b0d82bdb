// virtio-net-pci's whole migration story, next to the device: the one description of the
// section "<pci address>/virtio-net" (version 11) in QEMU 7.2's byte order, the checks a
// stream must pass before the destination runs it, and what the destination does after.
//
// What travels, in this order (sizes for an idle default NIC: one queue pair, split rings,
// four MSI-X vectors; the body is 46,143 bytes, as QEMU 7.2 writes it):
//   virtio-net           the section: one field, "virtio", which is QEMU's virtio_save
//   virtio/pci ...       PCI config (version be32 + 256 bytes), INTx levels, MSI-X table and
//                        pending bits, config_vector (be16, only with MSI-X)
//   virtio/header        status, isr, queue_sel, the low 32 driver feature bits
//   virtio/config        config_len (be32) and the configuration as the guest last read it
//                        (QEMU's vdev->config; kept for the next save only: every guest
//                        read derives the configuration from the device state again)
//   virtio/queues        N (be32), then per queue: num (be32), desc (be64), last_avail_idx
//                        (be16), MSI-X vector (be16, only with MSI-X)
//   virtio/virtio-net-device   (v11) mac, tx_waiting, mergeable_rx_bufs, status, promisc,
//                        allmulti, the MAC table, the VLAN words, has_vnet_hdr, the overflow
//                        and extra mode bytes, has_ufo, max/curr queue pairs (only when the
//                        device has more than one pair), tx_waiting of pairs 1..curr-1 (no
//                        count on the wire), curr_guest_offloads (only when the driver
//                        negotiated CTRL_GUEST_OFFLOADS), subsection virtio-net-device/rss
//                        (when RSS is enabled)
//   virtio/... subsections in QEMU's order: device_endian (never needed on a
//                        little-endian host), 64bit_features (always: VERSION_1 is bit 32),
//                        virtqueues (always: 1024 × avail, used), ringsize (when a queue's
//                        size differs from its maximum), broken, extra_state (the modern
//                        proxy state, 1024 queue entries), started (DRIVER_OK), packed_
//                        virtqueues (when the device offers RING_PACKED), disabled (never)
// Every piece is a named field in Ferry's vmdesc (nested structs), not one opaque blob.
//
// Load checks (the stream is hostile; every error names the field and the value found):
// QEMU 7.2's, in its words where it has any — "Invalid number of virtqueues: 0x%x",
// "VQ %d address 0x0 inconsistent with Host index 0x%x", max_queue_pairs "%x != %x",
// "virtio-net: curr_queue_pairs %x > max_queue_pairs %x", "virtio-net: saved image requires
// vnet_hdr=on" (and TUN_F_UFO support), "Features 0x%x unsupported. Allowed features:
// 0x%llx", "VQ %d size 0x%x < last_avail_idx 0x%x - used_idx 0x%x", "VQ %d size 0x%x Guest
// index 0x%x inconsistent with Host index 0x%x: delta 0x%x" (QEMU marks the device broken
// and completes; Ferry fails the load, so the source keeps running) — plus the ones 7.2
// lacks: RSS indirections_len a power of two at most 128, its entries and default_queue
// below the queue pairs, status bits, mergeable_rx_bufs equal to what MRG_RXBUF implies,
// guest offloads among those negotiated, vectors below the MSI-X table size, the queue count
// equal to this device's, every queue within its maximum size, modern and legacy queue
// addresses agreeing, a MAC table of at most 64 entries (7.2 silently empties a larger one).
// Ring checks need guest RAM: they run in the section's post_load, which the destination
// runs after RAM has arrived; a failure fails the migration and the source runs on.
//
// Differences from 7.2, on purpose: the VLAN table survives (7.2 clears it when it applies
// the loaded features); the inconsistent-ring case above fails instead of breaking the
// device; a MAC table over 64 entries is refused instead of emptied.
//
// Quiesce: the VM is stopped before the save (VirtioPci::quiesce → VirtioNet::set_running
// false), so no RX or TX chain is half processed: the device pops, fills, pushes and
// flushes a chain within one call and never leaves staged used elements between calls.
// pre_save refuses a running device. A frame the backend delivered that still waits for
// RX buffers inside the device is not migrated (QEMU loses frames queued at its net layer
// the same way); frames still in the backend's socket go to whoever reads it next.
//
// After the load (post_load), the queues get their layouts and VirtqueueState back and are
// enabled as the driver left them, the link follows the status' LINK_UP bit, RSS and the
// filters apply, and with GUEST_ANNOUNCE and CTRL_VQ negotiated the guest is asked to
// announce at the first resume (QEMU arms its announce timer in post_load).
//
// Threading: pre_save runs on the source's main loop with the VM stopped; pre_load and
// post_load on the destination's incoming thread while the machine is `inmigrate`.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "hw/virtio/net/net_state.h"
#include "hw/virtio/net/rx_filter_vmstate.h"
#include "hw/virtio/virtio_pci.h"
#include "hw/virtio/virtio_pci_migration.h"
#include "vmstate/vmstate.h"

namespace ferry::virtio::net {

class VirtioNet;

// ---- field kinds this section needs beyond vmstate's -------------------------------------

namespace migration_fields {

// A nested description reached through a function of the parent (a sub-object or the
// migration staging), optionally present only when `present(parent)` holds. Shown in
// vmdesc as a struct.
template <typename Outer, typename Desc>
struct ViaField {
  using Object = Outer;
  using Inner = typename Desc::Object;
  std::string_view name;
  const Desc* desc;
  Inner& (*get)(Outer&);
  bool (*present)(const Outer&) = nullptr;
  int since_version = 0;

  template <typename D>
  Status save(Outer& o, ByteSink& w, D& d, std::string_view shown) const {
    if (present != nullptr && !present(o)) return {};
    d.field_begin(shown, "struct", vmstate::ArrayPos::none(), true);
    Status st = desc->save_body(get(o), w, d);
    d.field_end();
    return st;
  }
  bool load(Outer& o, ByteReader& r, Status& err) const {
    if (present != nullptr && !present(o)) return true;
    return desc->load_body(get(o), r, desc->version(), err);
  }
  constexpr bool can_compress() const { return false; }
  template <typename Owner>
  Status check(const Owner&, size_t) const {
    return desc->check();
  }
};

template <typename Outer, typename Desc>
constexpr auto via(std::string_view name, const Desc& desc,
                   typename Desc::Object& (*get)(Outer&),
                   bool (*present)(const Outer&) = nullptr) {
  return ViaField<Outer, Desc>{name, &desc, get, present};
}

// Any field, present on the wire only when `present(object)` holds (QEMU's field_exists).
template <typename F>
struct WhenField {
  using Object = typename F::Object;
  std::string_view name;
  F inner;
  bool (*present)(const Object&);
  int since_version = 0;

  template <typename D>
  Status save(Object& o, ByteSink& w, D& d, std::string_view shown) const {
    if (!present(o)) return {};
    return inner.save(o, w, d, shown);
  }
  bool load(Object& o, ByteReader& r, Status& err) const {
    if (!present(o)) return true;
    return inner.load(o, r, err);
  }
  constexpr bool can_compress() const { return false; }
  template <typename Owner>
  Status check(const Owner& owner, size_t index) const {
    return inner.check(owner, index);
  }
  template <typename M>
  bool stores(M Object::*m) const {
    if constexpr (requires { inner.stores(m); }) return inner.stores(m);
    else return false;
  }
};

template <typename F>
constexpr auto when(bool (*present)(const typename F::Object&), F inner) {
  return WhenField<F>{inner.name, inner, present};
}

// A big-endian integer whose loaded value `check(object, value)` judges with a message of
// its own (QEMU's wording where QEMU has one); stored only when it passes.
template <typename T, typename V>
struct CheckedField {
  using Object = T;
  std::string_view name;
  V T::*member;
  Status (*check_value)(const T&, V);
  int since_version = 0;

  template <typename D>
  Status save(T& obj, ByteSink& w, D& d, std::string_view shown) const {
    d.field_begin(shown, vmstate::wire_type_name<V>(), vmstate::ArrayPos::none(), false);
    w.put(obj.*member);
    d.field_end();
    return {};
  }
  bool load(T& obj, ByteReader& r, Status& err) const {
    V value;
    if (!r.get(value)) [[unlikely]] return vmstate::fail(err, r.truncated(sizeof(V)));
    Status st = check_value(obj, value);
    if (!st.ok()) [[unlikely]] return vmstate::fail(err, std::move(st));
    obj.*member = value;
    return true;
  }
  constexpr bool can_compress() const { return true; }
  template <typename Owner>
  Status check(const Owner&, size_t) const {
    return {};
  }
  template <typename M>
  bool stores(M T::*m) const {
    if constexpr (std::is_same_v<M, V>) return m == member;
    else return false;
  }
};

template <typename T, typename V>
constexpr auto checked(std::string_view name, V T::*member, Status (*check_value)(const T&, V)) {
  return CheckedField<T, V>{name, member, check_value};
}

}  // namespace migration_fields

// ---- wire-shaped staging (filled at save, loaded into, applied by post_load) ---------------

struct ConfigWire {
  uint32_t len = 0;
  std::vector<uint8_t> bytes;
};
// QEMU skips configuration bytes it does not know; Ferry bounds what it buffers.
inline constexpr uint32_t kMaxMigratedConfig = 4096;

struct LegacyQueueRecord {
  uint32_t num = 0;
  uint64_t desc = 0;
  uint16_t last_avail_idx = 0;
  uint16_t vector = spec::virtio_pci::kNoVector;
};

struct LegacyQueuesWire {
  uint32_t count = 0;
  std::vector<LegacyQueueRecord> vqs;
  bool msix = false;  // local: whether records carry a vector
};

struct NetDeviceWire {
  RxFilter rx;
  uint32_t tx_waiting = 0;  // pair 0
  uint32_t mergeable_rx_bufs = 0;
  uint16_t status = 0;
  uint32_t has_vnet_hdr = 0;
  uint8_t has_ufo = 0;
  uint16_t max_queue_pairs = 1;
  uint16_t curr_queue_pairs = 1;
  std::vector<uint32_t> tx_waiting_tail;  // pairs 1..curr-1
  uint64_t curr_guest_offloads = 0;
  RssState rss;
  // Local context, never sent: what decides which fields are present and what the loaded
  // values are checked against.
  uint16_t local_max_pairs = 1;
  uint64_t guest_features = 0;  // as far as loaded (the low half when these fields load)
  bool local_vnet_hdr = false;
  bool local_ufo = false;
};

struct RingAddressWire {
  uint64_t avail = 0;
  uint64_t used = 0;
};
struct RingAddressesWire {
  std::array<RingAddressWire, spec::virtio_pci::kQueueMax> vqs{};
};
struct RingSizesWire {
  std::array<uint32_t, spec::virtio_pci::kQueueMax> num_default{};
};
struct PackedQueueWire {
  uint16_t last_avail_idx = 0;
  bool last_avail_wrap = false;
  uint16_t used_idx = 0;
  bool used_wrap = false;
  uint32_t inuse = 0;
};
struct PackedQueuesWire {
  std::array<PackedQueueWire, spec::virtio_pci::kQueueMax> vqs{};
};
struct FlagsWire {
  uint8_t device_endian = 1;  // QEMU's VIRTIO_DEVICE_ENDIAN_LITTLE
  bool broken = false;
  bool started = false;
  bool disabled = false;
};

struct VirtioNetMigrationState {
  ConfigWire config;
  LegacyQueuesWire queues;
  NetDeviceWire device;
  RingAddressesWire rings;
  RingSizesWire ring_sizes;
  PackedQueuesWire packed;
  FlagsWire flags;
  bool rings_loaded = false;
  bool packed_loaded = false;
};

// ---- element descriptions ------------------------------------------------------------------

namespace detail {
Status check_queue_count(const LegacyQueuesWire&, uint32_t count);
Status check_max_pairs(const NetDeviceWire& w, uint16_t value);
Status check_curr_pairs(const NetDeviceWire& w, uint16_t value);
Status check_vnet_hdr(const NetDeviceWire& w, uint32_t value);
Status check_ufo(const NetDeviceWire& w, uint8_t value);
Status check_indirections_len(const RssState&, uint16_t value);
bool multiple_pairs(const NetDeviceWire& w);
bool offloads_negotiated(const NetDeviceWire& w);
bool records_have_vector(const LegacyQueuesWire& q);
bool records_lack_vector(const LegacyQueuesWire& q);

// The tx_waiting words of pairs 1..curr-1: no count on the wire (curr came before).
struct TxWaitingTailField {
  using Object = NetDeviceWire;
  std::string_view name;
  int since_version = 0;

  template <typename D>
  Status save(NetDeviceWire& w, ByteSink& out, D& d, std::string_view shown) const {
    if (!multiple_pairs(w)) return {};
    const size_t n = w.curr_queue_pairs > 0 ? w.curr_queue_pairs - 1u : 0;
    if (w.tx_waiting_tail.size() != n)
      return Error(ErrorCode::kInternal, "{} tx_waiting words for {} queue pairs",
                   w.tx_waiting_tail.size(), w.curr_queue_pairs);
    if (n == 0) return {};
    d.field_begin(shown, "uint32", n > 1 ? vmstate::ArrayPos::len(n) : vmstate::ArrayPos::none(),
                  false);
    for (uint32_t v : w.tx_waiting_tail) out.put_be32(v);
    d.field_end();
    return {};
  }
  bool load(NetDeviceWire& w, ByteReader& r, Status& err) const {
    if (!multiple_pairs(w)) return true;
    const size_t n = w.curr_queue_pairs > 0 ? w.curr_queue_pairs - 1u : 0;
    w.tx_waiting_tail.assign(n, 0);
    for (size_t i = 0; i < n; ++i) {
      if (!r.get_be32(w.tx_waiting_tail[i])) [[unlikely]] return vmstate::fail(err, r.truncated(4));
    }
    return true;
  }
  constexpr bool can_compress() const { return false; }
  template <typename Owner>
  Status check(const Owner&, size_t) const {
    return {};
  }
};
}  // namespace detail

inline constexpr auto kConfigWireState = vmstate::describe<ConfigWire>(
    "virtio-config", {.version = 1},
    vmstate::field("config_len", &ConfigWire::len),
    vmstate::vbuffer("config", &ConfigWire::bytes, &ConfigWire::len, kMaxMigratedConfig));

inline constexpr auto kLegacyQueueWithVectorState = vmstate::describe<LegacyQueueRecord>(
    "virtio-queue", {.version = 1},
    vmstate::field("num", &LegacyQueueRecord::num),
    vmstate::field("desc", &LegacyQueueRecord::desc),
    vmstate::field("last_avail_idx", &LegacyQueueRecord::last_avail_idx),
    vmstate::field("vector", &LegacyQueueRecord::vector));

inline constexpr auto kLegacyQueueState = vmstate::describe<LegacyQueueRecord>(
    "virtio-queue", {.version = 1},
    vmstate::field("num", &LegacyQueueRecord::num),
    vmstate::field("desc", &LegacyQueueRecord::desc),
    vmstate::field("last_avail_idx", &LegacyQueueRecord::last_avail_idx));

inline constexpr auto kLegacyQueuesState = vmstate::describe<LegacyQueuesWire>(
    "virtio-queues", {.version = 1},
    migration_fields::checked("num_queues", &LegacyQueuesWire::count, &detail::check_queue_count),
    migration_fields::when(&detail::records_have_vector,
                           vmstate::varray("vqs", &LegacyQueuesWire::vqs, &LegacyQueuesWire::count,
                                           spec::virtio_pci::kQueueMax,
                                           kLegacyQueueWithVectorState)),
    migration_fields::when(&detail::records_lack_vector,
                           vmstate::varray("vqs_without_msix", &LegacyQueuesWire::vqs,
                                           &LegacyQueuesWire::count, spec::virtio_pci::kQueueMax,
                                           kLegacyQueueState)));

inline constexpr auto kRssState = vmstate::describe<RssState>(
    "virtio-net-rss", {.version = 1},
    vmstate::field("enabled", &RssState::enabled),
    vmstate::field("redirect", &RssState::redirect),
    vmstate::field("populate_hash", &RssState::populate_hash),
    vmstate::field("hash_types", &RssState::hash_types),
    migration_fields::checked("indirections_len", &RssState::indirections_len,
                              &detail::check_indirections_len),
    vmstate::field("default_queue", &RssState::default_queue),
    vmstate::field("key", &RssState::key),
    vmstate::varray("indirections_table", &RssState::indirections_table,
                    &RssState::indirections_len, kRssMaxTableLength));

inline constexpr auto kNetRssSubsection = vmstate::describe<NetDeviceWire>(
    "virtio-net-device/rss", {.version = 1},
    vmstate::field("rss", &NetDeviceWire::rss, kRssState));

inline constexpr auto kNetDeviceWireState = vmstate::describe<NetDeviceWire>(
    "virtio-net-device", {.version = 11, .minimum_version = 11},
    vmstate::field("mac", &NetDeviceWire::rx, kRxFilterMacState),
    vmstate::field("tx_waiting", &NetDeviceWire::tx_waiting),
    vmstate::field("mergeable_rx_bufs", &NetDeviceWire::mergeable_rx_bufs),
    vmstate::field("status", &NetDeviceWire::status),
    vmstate::field("rx_tables", &NetDeviceWire::rx, kRxFilterTablesState),
    migration_fields::checked("has_vnet_hdr", &NetDeviceWire::has_vnet_hdr, &detail::check_vnet_hdr),
    vmstate::field("rx_modes", &NetDeviceWire::rx, kRxFilterModesState),
    migration_fields::checked("has_ufo", &NetDeviceWire::has_ufo, &detail::check_ufo),
    migration_fields::when(&detail::multiple_pairs,
                           migration_fields::checked("max_queue_pairs",
                                                     &NetDeviceWire::max_queue_pairs,
                                                     &detail::check_max_pairs)),
    migration_fields::when(&detail::multiple_pairs,
                           migration_fields::checked("curr_queue_pairs",
                                                     &NetDeviceWire::curr_queue_pairs,
                                                     &detail::check_curr_pairs)),
    detail::TxWaitingTailField{"tx_waiting_tail"},
    migration_fields::when(&detail::offloads_negotiated,
                           vmstate::field("curr_guest_offloads",
                                          &NetDeviceWire::curr_guest_offloads)),
    vmstate::subsection(kNetRssSubsection,
                        [](const NetDeviceWire& w) { return w.rss.enabled; }));

inline constexpr auto kRingAddressState = vmstate::describe<RingAddressWire>(
    "virtqueue_state", {.version = 1},
    vmstate::field("avail", &RingAddressWire::avail),
    vmstate::field("used", &RingAddressWire::used));
inline constexpr auto kRingAddressesState = vmstate::describe<RingAddressesWire>(
    "virtio-rings", {.version = 1},
    vmstate::field("vqs", &RingAddressesWire::vqs, kRingAddressState));
inline constexpr auto kRingSizesState = vmstate::describe<RingSizesWire>(
    "virtio-ringsize", {.version = 1},
    vmstate::field("num_default", &RingSizesWire::num_default));
inline constexpr auto kPackedQueueState = vmstate::describe<PackedQueueWire>(
    "packed_virtqueue_state", {.version = 1},
    vmstate::field("last_avail_idx", &PackedQueueWire::last_avail_idx),
    vmstate::field("last_avail_wrap_counter", &PackedQueueWire::last_avail_wrap),
    vmstate::field("used_idx", &PackedQueueWire::used_idx),
    vmstate::field("used_wrap_counter", &PackedQueueWire::used_wrap),
    vmstate::field("inuse", &PackedQueueWire::inuse));
inline constexpr auto kPackedQueuesState = vmstate::describe<PackedQueuesWire>(
    "virtio-packed-rings", {.version = 1},
    vmstate::field("vqs", &PackedQueuesWire::vqs, kPackedQueueState));
inline constexpr auto kDeviceEndianState = vmstate::describe<FlagsWire>(
    "virtio-device-endian", {.version = 1},
    vmstate::field("device_endian", &FlagsWire::device_endian)
        .validate([](uint8_t v) { return v == 1; },
                  "device_endian must be little (1) on this host"));
inline constexpr auto kBrokenState = vmstate::describe<FlagsWire>(
    "virtio-broken", {.version = 1}, vmstate::field("broken", &FlagsWire::broken));
inline constexpr auto kStartedState = vmstate::describe<FlagsWire>(
    "virtio-started", {.version = 1}, vmstate::field("started", &FlagsWire::started));
inline constexpr auto kDisabledState = vmstate::describe<FlagsWire>(
    "virtio-disabled", {.version = 1},
    vmstate::field("disabled", &FlagsWire::disabled)
        .validate([](bool v) { return !v; }, "a disabled virtio device cannot be loaded"));

// ---- the section ----------------------------------------------------------------------------

// A friend of VirtioNet and of the transport's migration helpers: reaches the device's
// private state through the function (VirtioPci) the section is registered for.
struct VirtioNetMigration {
  static VirtioNet& net(VirtioPci& pci);
  static VirtioNetMigrationState& staging(VirtioPci& pci);
  static ConfigWire& config(VirtioPci& pci) { return staging(pci).config; }
  static LegacyQueuesWire& queues(VirtioPci& pci);
  static NetDeviceWire& device(VirtioPci& pci);
  static RingAddressesWire& rings(VirtioPci& pci) { return staging(pci).rings; }
  static RingSizesWire& ring_sizes(VirtioPci& pci) { return staging(pci).ring_sizes; }
  static PackedQueuesWire& packed(VirtioPci& pci) { return staging(pci).packed; }
  static FlagsWire& flags(VirtioPci& pci) { return staging(pci).flags; }

  static Status pre_save(VirtioPci& pci);
  static Status pre_load(VirtioPci& pci);
  static Status post_load(VirtioPci& pci, int version);
  static Status rings_loaded(VirtioPci& pci, int);
  static Status packed_loaded(VirtioPci& pci, int);

  static bool has_64bit_features(const VirtioPci& pci);
  static bool ringsize_needed(const VirtioPci& pci);
  static bool broken_needed(const VirtioPci& pci);
  static bool started_needed(const VirtioPci& pci);
  static bool packed_needed(const VirtioPci& pci);
};

inline constexpr auto kDeviceEndianSubsection = vmstate::describe<VirtioPci>(
    "virtio/device_endian", {.version = 1},
    migration_fields::via("device_endian", kDeviceEndianState, &VirtioNetMigration::flags));
inline constexpr auto kVirtqueuesSubsection = vmstate::describe<VirtioPci>(
    "virtio/virtqueues", {.version = 1, .post_load = &VirtioNetMigration::rings_loaded},
    migration_fields::via("vqs", kRingAddressesState, &VirtioNetMigration::rings));
inline constexpr auto kRingsizeSubsection = vmstate::describe<VirtioPci>(
    "virtio/ringsize", {.version = 1},
    migration_fields::via("vqs", kRingSizesState, &VirtioNetMigration::ring_sizes));
inline constexpr auto kBrokenSubsection = vmstate::describe<VirtioPci>(
    "virtio/broken", {.version = 1},
    migration_fields::via("broken", kBrokenState, &VirtioNetMigration::flags));
inline constexpr auto kStartedSubsection = vmstate::describe<VirtioPci>(
    "virtio/started", {.version = 1},
    migration_fields::via("started", kStartedState, &VirtioNetMigration::flags));
inline constexpr auto kPackedSubsection = vmstate::describe<VirtioPci>(
    "virtio/packed_virtqueues", {.version = 1, .post_load = &VirtioNetMigration::packed_loaded},
    migration_fields::via("vqs", kPackedQueuesState, &VirtioNetMigration::packed));
inline constexpr auto kDisabledSubsection = vmstate::describe<VirtioPci>(
    "virtio/disabled", {.version = 1},
    migration_fields::via("disabled", kDisabledState, &VirtioNetMigration::flags));

// QEMU's virtio_save for a virtio-net-pci function, as one description.
inline constexpr auto kVirtioNetVirtioState = vmstate::describe<VirtioPci>(
    "virtio", {.version = 1},
    pci::PciDevice::vmstate_pci_device(), pci::PciDevice::vmstate_msix(),
    VirtioPciMigration::VectorsField{"config_vector"},
    vmstate::with_tmp<VirtioPci>("header", kTransportHeaderState, &VirtioPciMigration::fill_header,
                                 &VirtioPciMigration::apply_header),
    migration_fields::via("config", kConfigWireState, &VirtioNetMigration::config),
    migration_fields::via("queues", kLegacyQueuesState, &VirtioNetMigration::queues),
    migration_fields::via("virtio-net-device", kNetDeviceWireState, &VirtioNetMigration::device),
    vmstate::subsection(kDeviceEndianSubsection, [](const VirtioPci&) { return false; }),
    vmstate::subsection(k64bitFeaturesState, &VirtioNetMigration::has_64bit_features),
    vmstate::subsection(kVirtqueuesSubsection),
    vmstate::subsection(kRingsizeSubsection, &VirtioNetMigration::ringsize_needed),
    vmstate::subsection(kBrokenSubsection, &VirtioNetMigration::broken_needed),
    vmstate::subsection(kExtraStateState),
    vmstate::subsection(kStartedSubsection, &VirtioNetMigration::started_needed),
    vmstate::subsection(kPackedSubsection, &VirtioNetMigration::packed_needed),
    vmstate::subsection(kDisabledSubsection, [](const VirtioPci&) { return false; }));

inline VirtioPci& virtio_self(VirtioPci& pci) { return pci; }

// The section "<pci address>/virtio-net", version 11: one field, "virtio".
inline constexpr auto kVirtioNetState = vmstate::describe<VirtioPci>(
    "virtio-net",
    {.version = 11,
     .minimum_version = 11,
     .pre_save = &VirtioNetMigration::pre_save,
     .pre_load = &VirtioNetMigration::pre_load,
     .post_load = &VirtioNetMigration::post_load},
    migration_fields::via("virtio", kVirtioNetVirtioState, &virtio_self));

}  // namespace ferry::virtio::net
