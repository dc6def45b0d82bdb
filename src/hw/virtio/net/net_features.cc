#include "hw/virtio/net/net_features.h"

#include <bit>

#include "spec/virtio_pci.h"
#include "spec/virtio_ring.h"

namespace ferry::virtio::net {
namespace {

namespace vn = spec::virtio_net;

// Transport-independent feature bits (virtio 1.x §6) behind the virtio common properties.
using spec::virtio::kFAccessPlatform;
using spec::virtio::kFAnyLayout;
using spec::virtio::kFEventIdx;
using spec::virtio::kFIndirectDesc;
using spec::virtio::kFNotifyOnEmpty;
using spec::virtio::kFRingPacked;
constexpr unsigned kFRingReset = spec::virtio_pci::kFeatureRingReset;

constexpr uint16_t kMinQueueSize = 256;   // QEMU keeps what it always offered
constexpr uint16_t kMaxQueueSize = 1024;  // VIRTQUEUE_MAX_SIZE
constexpr uint32_t kMaxQueues = 1024;     // VIRTIO_QUEUE_MAX

constexpr FeatureProperty kProperties[] = {
    {"csum", vn::kFCsum, true},
    {"guest_csum", vn::kFGuestCsum, true},
    {"gso", vn::kFGso, true},
    {"guest_tso4", vn::kFGuestTso4, true},
    {"guest_tso6", vn::kFGuestTso6, true},
    {"guest_ecn", vn::kFGuestEcn, true},
    {"guest_ufo", vn::kFGuestUfo, true},
    {"guest_announce", vn::kFGuestAnnounce, true},
    {"host_tso4", vn::kFHostTso4, true},
    {"host_tso6", vn::kFHostTso6, true},
    {"host_ecn", vn::kFHostEcn, true},
    {"host_ufo", vn::kFHostUfo, true},
    {"mrg_rxbuf", vn::kFMrgRxbuf, true},
    {"status", vn::kFStatus, true},
    {"ctrl_vq", vn::kFCtrlVq, true},
    {"ctrl_rx", vn::kFCtrlRx, true},
    {"ctrl_vlan", vn::kFCtrlVlan, true},
    {"ctrl_rx_extra", vn::kFCtrlRxExtra, true},
    {"ctrl_mac_addr", vn::kFCtrlMacAddr, true},
    {"ctrl_guest_offloads", vn::kFCtrlGuestOffloads, true},
    {"mq", vn::kFMq, false},
    {"rss", vn::kFRss, false},
    {"hash", vn::kFHashReport, false},
    {"guest_rsc_ext", vn::kFRscExt, false},
    // virtio common properties
    {"indirect_desc", kFIndirectDesc, true},
    {"event_idx", kFEventIdx, true},
    {"notify_on_empty", kFNotifyOnEmpty, true},
    {"any_layout", kFAnyLayout, true},
    {"iommu_platform", kFAccessPlatform, false},
    {"packed", kFRingPacked, false},
    {"queue_reset", kFRingReset, true},
};

}  // namespace

std::span<const FeatureProperty> net_feature_properties() {
  return kProperties;
}

const FeatureProperty* find_feature_property(std::string_view name) {
  for (const FeatureProperty& property : net_feature_properties()) {
    if (property.name == name) return &property;
  }
  return nullptr;
}

uint64_t default_property_features() {
  uint64_t features = 0;
  for (const FeatureProperty& property : net_feature_properties()) {
    if (property.default_on) features |= vn::bit(property.bit);
  }
  return features;
}

uint64_t legacy_only_features() {
  return vn::bit(vn::kFGso) | vn::bit(kFNotifyOnEmpty) | vn::bit(kFAnyLayout);
}

Result<NetConfiguration> configure_net_device(uint64_t property_features,
                                              const NetProperties& properties,
                                              uint32_t backend_queues) {
  NetConfiguration config;
  config.requested_features = property_features;
  config.mtu = properties.host_mtu;
  if (properties.host_mtu != 0) config.requested_features |= vn::bit(vn::kFMtu);

  if (properties.duplex.has_value()) {
    if (*properties.duplex == "half") {
      config.duplex = vn::kDuplexHalf;
    } else if (*properties.duplex == "full") {
      config.duplex = vn::kDuplexFull;
    } else {
      return Error(ErrorCode::kInvalidArgument, "'duplex' must be 'half' or 'full'");
    }
    config.requested_features |= vn::bit(vn::kFSpeedDuplex);
  }
  if (properties.speed < vn::kSpeedUnknown) {
    return Error(ErrorCode::kInvalidArgument, "'speed' must be between 0 and INT_MAX");
  }
  config.speed = properties.speed;
  if (properties.speed >= 0) config.requested_features |= vn::bit(vn::kFSpeedDuplex);
  if (properties.failover) config.requested_features |= vn::bit(vn::kFStandby);

  const auto valid_size = [](uint16_t size) {
    return size >= kMinQueueSize && size <= kMaxQueueSize && std::has_single_bit(size);
  };
  if (!valid_size(properties.rx_queue_size)) {
    return Error(ErrorCode::kInvalidArgument,
                 "Invalid rx_queue_size (= {}), must be a power of 2 between {} and {}.",
                 properties.rx_queue_size, kMinQueueSize, kMaxQueueSize);
  }
  if (!valid_size(properties.tx_queue_size)) {
    return Error(ErrorCode::kInvalidArgument,
                 "Invalid tx_queue_size (= {}), must be a power of 2 between {} and {}",
                 properties.tx_queue_size, kMinQueueSize, kMaxQueueSize);
  }
  config.rx_queue_size = properties.rx_queue_size;
  config.tx_queue_size = kMinQueueSize;  // only vhost-user backends take larger TX rings

  const uint32_t pairs = backend_queues > 1 ? backend_queues : 1;
  if (pairs * 2 + 1 > kMaxQueues) {
    return Error(ErrorCode::kInvalidArgument,
                 "Invalid number of queue pairs (= {}), must be a positive integer less "
                 "than {}.",
                 pairs, (kMaxQueues - 1) / 2);
  }
  config.max_queue_pairs = static_cast<uint16_t>(pairs);
  return config;
}

uint64_t offered_net_features(uint64_t requested, const BackendCapabilities& backend) {
  uint64_t features = requested | vn::bit(vn::kFMac);
  if (!backend.vnet_hdr) {
    for (unsigned feature : {vn::kFCsum, vn::kFHostTso4, vn::kFHostTso6, vn::kFHostEcn,
                             vn::kFGuestCsum, vn::kFGuestTso4, vn::kFGuestTso6,
                             vn::kFGuestEcn, vn::kFHashReport}) {
      features &= ~vn::bit(feature);
    }
  }
  if (!backend.vnet_hdr || !backend.ufo) {
    features &= ~(vn::bit(vn::kFGuestUfo) | vn::bit(vn::kFHostUfo));
  }
  return features;
}

}  // namespace ferry::virtio::net
