// The state of a virtio-net device that is not its rings: link status, receive filter,
// queue pairs, RSS, guest offloads and what the backend can do. Plain members under QEMU
// 7.2's names (VirtIONet), so the device's VMState description can name them; the rules
// that change them live beside (ctrl_commands.h, rx_filter.h).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "hw/virtio/net/rx_filter.h"
#include "spec/virtio_net.h"

namespace ferry::virtio::net {

inline constexpr uint32_t kRssMaxKeySize = 40;      // QEMU's VIRTIO_NET_RSS_MAX_KEY_SIZE
inline constexpr uint32_t kRssMaxTableLength = 128;  // VIRTIO_NET_RSS_MAX_TABLE_LEN
// The hash types QEMU 7.2 computes (config `supported_hash_types`).
inline constexpr uint32_t kRssSupportedHashTypes =
    spec::virtio_net::kHashTypeIpv4 | spec::virtio_net::kHashTypeTcpv4 |
    spec::virtio_net::kHashTypeUdpv4 | spec::virtio_net::kHashTypeIpv6 |
    spec::virtio_net::kHashTypeTcpv6 | spec::virtio_net::kHashTypeUdpv6 |
    spec::virtio_net::kHashTypeIpEx | spec::virtio_net::kHashTypeTcpEx |
    spec::virtio_net::kHashTypeUdpEx;

// The guest-offload bits QEMU 7.2 knows (virtio_net_guest_offloads_by_features).
inline constexpr uint64_t kGuestOffloadsMask =
    spec::virtio_net::bit(spec::virtio_net::kFGuestCsum) |
    spec::virtio_net::bit(spec::virtio_net::kFGuestTso4) |
    spec::virtio_net::bit(spec::virtio_net::kFGuestTso6) |
    spec::virtio_net::bit(spec::virtio_net::kFGuestEcn) |
    spec::virtio_net::bit(spec::virtio_net::kFGuestUfo);

struct RssState {
  bool enabled = false;
  bool redirect = false;       // RSS negotiated: steer by the table
  bool populate_hash = false;  // HASH_REPORT negotiated: report the hash in the header
  uint32_t hash_types = 0;
  uint16_t indirections_len = 0;
  uint16_t default_queue = 0;
  // Only the first hash_key_length bytes are rewritten by a command; the rest keep older
  // bytes and migrate with them, as in QEMU.
  std::array<uint8_t, kRssMaxKeySize> key{};
  std::vector<uint16_t> indirections_table;
};

struct QueuePairs {
  uint16_t max = 1;          // max_queue_pairs: the backend's queues (netdev queues=)
  uint16_t curr = 1;         // curr_queue_pairs: set by VQ_PAIRS_SET / RSS_CONFIG
  bool multiqueue = false;   // MQ or RSS negotiated
};

struct GuestOffloads {
  uint64_t curr = 0;         // curr_guest_offloads, feature-bit positions
  // RSC_EXT requested with TSO4/TSO6 in the last GUEST_OFFLOADS_SET (set even when the
  // command is then refused, as QEMU does).
  bool rsc4_enabled = false;
  bool rsc6_enabled = false;
};

struct NetDeviceState {
  uint16_t status = spec::virtio_net::kStatusLinkUp;  // config `status`
  RxFilter rx;
  QueuePairs queue_pairs;
  RssState rss;
  GuestOffloads offloads;
  uint32_t mergeable_rx_bufs = 0;
  // What the backend can do (checked against a migration stream by QEMU's load).
  bool has_vnet_hdr = false;
  bool has_ufo = false;
  // Guest announce rounds left (QEMU's announce_timer.round); not migrated.
  uint32_t announce_rounds = 0;

  // Device reset as QEMU 7.2 does it: virtio_net_reset (filters back to promiscuous, one
  // queue pair, no pending announce), then the features cleared through set_features(0)
  // (no multiqueue, no mergeable buffers, no RSS steering, every VLAN passes). Observed on
  // 7.2.22: an enabled RSS stays enabled (and migrates) with redirect off. Link status and
  // the backend's abilities stay.
  void reset(const MacAddress& configured_mac);
  // The driver's features were accepted (QEMU 7.2's virtio_net_set_features, minus what
  // the rings and the backend do).
  void features_negotiated(uint64_t features);
};

}  // namespace ferry::virtio::net
