// virtio-net's device configuration space as QEMU 7.2 presents it: its size follows the
// offered features, its bytes the device state (virtio_net_get_config), and a driver's
// write can change only the MAC, and only for a legacy driver without CTRL_MAC_ADDR
// (virtio_net_set_config). The transport keeps the buffer and its access rules (reads past
// the size are all ones, writes there are dropped).
#pragma once

#include <cstdint>
#include <span>

#include "hw/virtio/net/mac_address.h"

namespace ferry::virtio::net {

// Bytes of configuration for the features a device was created with (before the backend
// strips any): mac and status always (8), max_virtqueue_pairs with MQ (10), mtu with MTU
// (12), speed and duplex with SPEED_DUPLEX (17), the RSS fields with RSS or HASH_REPORT
// (24). Without STATUS, the MAC alone (6).
uint32_t net_config_size(uint64_t requested_features);

struct NetConfigFields {
  MacAddress mac{};
  uint16_t status = 0;
  uint16_t max_queue_pairs = 1;
  uint16_t mtu = 0;
  int32_t speed = -1;
  uint8_t duplex = 0xff;
  bool rss_offered = false;  // RSS among the offered features: a 128-entry table
};

// The whole structure, little-endian, cut to out.size() (the configuration size): fields
// past what the features cover are still filled, as QEMU copies them.
void fill_net_config(std::span<uint8_t> out, const NetConfigFields& fields);

// A driver wrote the configuration buffer `config` (at least the 6 MAC bytes): applies the
// MAC when a legacy driver that did not negotiate CTRL_MAC_ADDR wrote a different one.
// Returns whether `mac` changed.
bool apply_net_config_write(std::span<const uint8_t> config, uint64_t negotiated,
                            MacAddress& mac);

}  // namespace ferry::virtio::net
