// The device-free image of a virtio-net "virtio" field (see the header).
#include "hw/virtio/net/virtio_net_analyze.h"

#include <algorithm>
#include <memory>

#include "base/byte_order.h"
#include "base/byte_writer.h"
#include "hw/virtio/net/virtio_net_migration.h"

namespace ferry::virtio::net {

namespace analyze_image {

// vmstate_pci_device as QEMU writes it: version_id, 256 bytes of config, INTx levels.
struct PciWire {
  int32_t version_id = 0;
  std::array<uint8_t, 256> config{};
  std::array<int32_t, 4> irq_state{};
};

// msix_save: the table and pending bits, raw; then virtio-pci's config vector.
struct MsixWire {
  uint32_t table_len = 0;  // local: 16 bytes per vector the capability declares
  uint32_t pba_len = 0;
  bool present = false;
  std::vector<uint8_t> table;
  std::vector<uint8_t> pba;
  uint16_t config_vector = spec::virtio_pci::kNoVector;
};

enum Sub : size_t {
  kSubEndian,
  kSub64bit,
  kSubVirtqueues,
  kSubRingsize,
  kSubBroken,
  kSubExtra,
  kSubStarted,
  kSubPacked,
  kSubDisabled,
  kSubCount
};

struct Image {
  PciWire pci;
  MsixWire msix;
  TransportHeader header;
  ConfigWire config;
  LegacyQueuesWire queues;
  NetDeviceWire device;
  uint64_t features64 = 0;
  RingAddressesWire rings;
  RingSizesWire ring_sizes;
  ModernState modern;
  PackedQueuesWire packed;
  FlagsWire flags;
  std::array<bool, kSubCount> seen{};  // which subsections the bytes carried
};

// The MSI-X capability's table size, walking the capability list in the loaded config.
uint32_t msix_vectors(const std::array<uint8_t, 256>& config) {
  uint8_t at = config[0x34] & 0xfc;
  for (int hops = 0; at != 0 && hops < 48; ++hops) {
    if (at > 0xfc) return 0;
    if (config[at] == 0x11) return (load_le<uint16_t>(config.data() + at + 2) & 0x7ff) + 1u;
    at = config[at + 1] & 0xfc;
  }
  return 0;
}

MsixWire& msix_of(Image& im) {
  const uint32_t vectors = msix_vectors(im.pci.config);
  im.msix.present = vectors != 0;
  im.msix.table_len = 16 * vectors;
  im.msix.pba_len = (vectors + 7) / 8;
  im.msix.table.resize(im.msix.table_len);
  im.msix.pba.resize(im.msix.pba_len);
  return im.msix;
}
LegacyQueuesWire& queues_of(Image& im) {
  im.queues.msix = im.msix.present;
  return im.queues;
}
NetDeviceWire& device_of(Image& im) {
  NetDeviceWire& w = im.device;
  // Queues are RX/TX per pair, then ctrl: the pairs follow from the count already read.
  w.local_max_pairs = im.queues.count >= 3 ? static_cast<uint16_t>((im.queues.count - 1) / 2) : 1;
  w.guest_features = im.header.guest_features_low;
  w.local_vnet_hdr = true;  // a decoder refuses nothing a device could have
  w.local_ufo = true;
  return w;
}
ConfigWire& config_of(Image& im) { return im.config; }
RingAddressesWire& rings_of(Image& im) { return im.rings; }
RingSizesWire& ring_sizes_of(Image& im) { return im.ring_sizes; }
PackedQueuesWire& packed_of(Image& im) { return im.packed; }
FlagsWire& flags_of(Image& im) { return im.flags; }
ModernState& modern_of(Image& im) {
  // No device to bound the queues: every one of the 1024 may hold any size.
  im.modern.queue_max.assign(spec::virtio_pci::kQueueMax, 0xffff);
  return im.modern;
}
bool msix_present(const MsixWire& m) { return m.present; }

template <size_t K>
Status mark_seen(Image& im, int) {
  im.seen[K] = true;
  return {};
}
template <size_t K>
bool was_seen(const Image& im) {
  return im.seen[K];
}

constexpr auto kPciWireState = vmstate::describe<PciWire>(
    "PCIDevice", {.version = 2},
    vmstate::field("version_id", &PciWire::version_id)
        .validate([](int32_t v) { return v > 0 && v <= 2; }, "PCIDevice version_id must be 1 or 2"),
    vmstate::buffer("config", &PciWire::config),
    vmstate::field("irq_state", &PciWire::irq_state));

constexpr auto kMsixWireState = vmstate::describe<MsixWire>(
    "msix", {.version = 1},
    vmstate::config_buffer("table", &MsixWire::table, &MsixWire::table_len),
    vmstate::config_buffer("pba", &MsixWire::pba, &MsixWire::pba_len),
    migration_fields::when(&msix_present,
                           vmstate::field("config_vector", &MsixWire::config_vector)));

constexpr auto kImageEndian = vmstate::describe<Image>(
    "virtio/device_endian", {.version = 1, .post_load = &mark_seen<kSubEndian>},
    migration_fields::via("device_endian", kDeviceEndianState, &flags_of));
constexpr auto kImage64bit = vmstate::describe<Image>(
    "virtio/64bit_features", {.version = 1, .post_load = &mark_seen<kSub64bit>},
    vmstate::field("guest_features", &Image::features64));
constexpr auto kImageVirtqueues = vmstate::describe<Image>(
    "virtio/virtqueues", {.version = 1, .post_load = &mark_seen<kSubVirtqueues>},
    migration_fields::via("vqs", kRingAddressesState, &rings_of));
constexpr auto kImageRingsize = vmstate::describe<Image>(
    "virtio/ringsize", {.version = 1, .post_load = &mark_seen<kSubRingsize>},
    migration_fields::via("vqs", kRingSizesState, &ring_sizes_of));
constexpr auto kImageBroken = vmstate::describe<Image>(
    "virtio/broken", {.version = 1, .post_load = &mark_seen<kSubBroken>},
    migration_fields::via("broken", kBrokenState, &flags_of));
constexpr auto kImageExtra = vmstate::describe<Image>(
    "virtio/extra_state", {.version = 1, .post_load = &mark_seen<kSubExtra>},
    migration_fields::via("extra_state", ::ferry::virtio::detail::kVirtioPciDesc, &modern_of));
constexpr auto kImageStarted = vmstate::describe<Image>(
    "virtio/started", {.version = 1, .post_load = &mark_seen<kSubStarted>},
    migration_fields::via("started", kStartedState, &flags_of));
constexpr auto kImagePacked = vmstate::describe<Image>(
    "virtio/packed_virtqueues", {.version = 1, .post_load = &mark_seen<kSubPacked>},
    migration_fields::via("vqs", kPackedQueuesState, &packed_of));
constexpr auto kImageDisabled = vmstate::describe<Image>(
    "virtio/disabled", {.version = 1, .post_load = &mark_seen<kSubDisabled>},
    migration_fields::via("disabled", kDisabledState, &flags_of));

constexpr auto kImageState = vmstate::describe<Image>(
    "virtio", {.version = 1},
    vmstate::field("parent_obj", &Image::pci, kPciWireState),
    migration_fields::via("msix", kMsixWireState, &msix_of),
    vmstate::field("header", &Image::header, kTransportHeaderState),
    migration_fields::via("config", kConfigWireState, &config_of),
    migration_fields::via("queues", kLegacyQueuesState, &queues_of),
    migration_fields::via("virtio-net-device", kNetDeviceWireState, &device_of),
    vmstate::subsection(kImageEndian, &was_seen<kSubEndian>),
    vmstate::subsection(kImage64bit, &was_seen<kSub64bit>),
    vmstate::subsection(kImageVirtqueues, &was_seen<kSubVirtqueues>),
    vmstate::subsection(kImageRingsize, &was_seen<kSubRingsize>),
    vmstate::subsection(kImageBroken, &was_seen<kSubBroken>),
    vmstate::subsection(kImageExtra, &was_seen<kSubExtra>),
    vmstate::subsection(kImageStarted, &was_seen<kSubStarted>),
    vmstate::subsection(kImagePacked, &was_seen<kSubPacked>),
    vmstate::subsection(kImageDisabled, &was_seen<kSubDisabled>));

}  // namespace analyze_image

Result<vmstate::Json> describe_virtio_net_field(std::span<const uint8_t> bytes) {
  auto image = std::make_unique<analyze_image::Image>();
  ByteReader r(bytes);
  FERRY_RETURN_IF_ERROR(analyze_image::kImageState.load(*image, r));
  if (r.remaining() != 0)
    return Error(ErrorCode::kCorrupt,
                 "virtio: {} bytes follow the last subsection at offset {} of the field",
                 r.remaining(), bytes.size() - r.remaining());
  ByteWriter w;
  vmstate::Json desc = vmstate::Json::object();
  FERRY_RETURN_IF_ERROR(analyze_image::kImageState.save(*image, w, desc));
  const std::vector<uint8_t> again = w.to_vector();
  if (again.size() != bytes.size() || !std::equal(again.begin(), again.end(), bytes.begin())) {
    size_t at = 0;
    while (at < again.size() && at < bytes.size() && again[at] == bytes[at]) ++at;
    return Error(ErrorCode::kCorrupt,
                 "virtio: the layout does not re-encode the field (first difference at offset "
                 "{}; subsections out of QEMU's order?)",
                 at);
  }
  return desc;
}

}  // namespace ferry::virtio::net
