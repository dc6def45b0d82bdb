// The feature word a virtio-net-pci device offers, as QEMU 7.2 builds it: on/off
// properties (csum=, mq=, packed=, ...) select bits, the link properties (host_mtu=,
// speed=, duplex=, failover=) add theirs, and the backend takes away what it cannot do
// (virtio_net_get_features: without a vnet header no checksum or segmentation offload).
// The transport adds VERSION_1 and hides the legacy-only bits from modern drivers.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "spec/virtio_net.h"

namespace ferry::virtio::net {

// One on/off property that owns a feature bit, with QEMU 7.2's default.
struct FeatureProperty {
  std::string_view name;
  unsigned bit;
  bool default_on;
};

// virtio-net's own properties and the virtio common ones (indirect_desc, event_idx,
// notify_on_empty, any_layout, iommu_platform, packed, queue_reset), in QEMU's order.
std::span<const FeatureProperty> net_feature_properties();
const FeatureProperty* find_feature_property(std::string_view name);
// Every default-on property's bit.
uint64_t default_property_features();

// Bits a legacy driver sees and a modern one does not: GSO, NOTIFY_ON_EMPTY, ANY_LAYOUT.
uint64_t legacy_only_features();

// The properties that are not feature bits.
struct NetProperties {
  uint16_t host_mtu = 0;                // 0: MTU not offered
  int32_t speed = spec::virtio_net::kSpeedUnknown;
  std::optional<std::string> duplex;    // "half" or "full"
  bool failover = false;
  uint16_t rx_queue_size = 256;
  uint16_t tx_queue_size = 256;
};

// What a realized device offers and reports.
struct NetConfiguration {
  uint64_t requested_features = 0;      // properties plus MTU/SPEED_DUPLEX/STANDBY
  uint16_t mtu = 0;
  int32_t speed = spec::virtio_net::kSpeedUnknown;
  uint8_t duplex = spec::virtio_net::kDuplexUnknown;
  uint16_t rx_queue_size = 256;
  uint16_t tx_queue_size = 256;         // 256 at most without vhost-user, as QEMU clamps
  uint16_t max_queue_pairs = 1;
};

// QEMU 7.2's realize checks and additions, with its messages. `property_features` are the
// feature-property bits (default_property_features() with the command line's changes);
// `backend_queues` the netdev's queue count (0 or 1: one pair).
Result<NetConfiguration> configure_net_device(uint64_t property_features,
                                              const NetProperties& properties,
                                              uint32_t backend_queues);

// What the backend can do with packets.
struct BackendCapabilities {
  bool vnet_hdr = false;  // tap: offload metadata travels with each packet
  bool ufo = false;       // tap with TUN_F_UFO
};

// The host features offered (virtio_net_get_features for a backend without vhost): MAC is
// always on; without a vnet header CSUM, GUEST_CSUM, the TSO and ECN bits and HASH_REPORT
// go; without UFO support the UFO bits go. Legacy-only bits are included.
uint64_t offered_net_features(uint64_t requested, const BackendCapabilities& backend);

}  // namespace ferry::virtio::net
