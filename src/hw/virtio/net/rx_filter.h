// virtio-net's receive filter: the RX modes, the MAC table and the VLAN table a driver sets
// through the control queue, and the decision QEMU 7.2's receive_filter makes for each
// incoming frame. The members are the migrated state, under QEMU's names, so the device's
// VMState description can name them.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "hw/virtio/net/mac_address.h"

namespace ferry::virtio::net {

inline constexpr uint32_t kMacTableEntries = 64;  // QEMU's MAC_TABLE_ENTRIES
inline constexpr uint32_t kMaxVlan = 4096;        // 802.1Q VIDs
inline constexpr size_t kVlanWords = kMaxVlan / 32;

// The driver's MAC filter: unicast entries first, then multicast from `first_multi`.
struct MacTable {
  uint32_t in_use = 0;
  uint32_t first_multi = 0;
  // More entries than fit were set: every frame of that kind is accepted.
  uint8_t uni_overflow = 0;
  uint8_t multi_overflow = 0;
  std::array<uint8_t, kMacTableEntries * kMacSize> macs{};

  std::span<const uint8_t, kMacSize> entry(uint32_t index) const {
    return std::span<const uint8_t, kMacSize>(macs.data() + size_t{index} * kMacSize, kMacSize);
  }
  bool contains(std::span<const uint8_t> mac, uint32_t begin, uint32_t end) const;
  // first_multi is not migrated: after a load it is the first group address, as QEMU 7.2's
  // post_load finds it.
  void derive_first_multi();
};

struct RxFilter {
  MacAddress mac{};  // the device's current address (the driver may change it)
  // RX modes. Bytes, not bools: QEMU stores the driver's "on" byte as sent and migrates
  // it as a u8, so 2 stays 2.
  uint8_t promisc = 1;  // QEMU's reset value, "for compatibility"
  uint8_t allmulti = 0;
  uint8_t alluni = 0;
  uint8_t nomulti = 0;
  uint8_t nouni = 0;
  uint8_t nobcast = 0;
  MacTable mac_table;
  // VLAN v is bit v&31 of word v>>5 (QEMU migrates the words in host byte order).
  std::array<uint32_t, kVlanWords> vlans{};

  // Device reset: promiscuous, empty MAC table, the configured address back. Every VLAN
  // passes until a driver negotiates CTRL_VLAN: QEMU 7.2 empties the table, then clears the
  // features, which fills it (observed: query-rx-filter lists all 4096 after reset).
  void reset(const MacAddress& configured_mac);
  // The driver's features were accepted: with CTRL_VLAN it filters VLANs from an empty
  // table, without it every VLAN passes (QEMU 7.2's set_features). Not called when
  // migration loads features: Ferry keeps the migrated table (7.2 loses it there).
  void features_negotiated(bool ctrl_vlan);

  bool vlan_allowed(uint16_t vid) const;  // vid < kMaxVlan
  void set_vlan(uint16_t vid, bool allowed);

  // Whether a frame from the backend (Ethernet header first, no vnet header) reaches the
  // guest. QEMU 7.2's order: promiscuous passes all; a VLAN-tagged frame (0x8100) whose VID
  // is not in the table is dropped; broadcast unless nobcast; other multicast: nomulti
  // drops, allmulti or overflow passes, else the table; unicast: nouni drops, alluni or
  // overflow passes, else the device's address or the table.
  // Frames shorter than the bytes examined: QEMU 7.2 reads past the frame (stale buffer
  // bytes decide); Ferry decides as if the frame were zero-padded to the 60-byte minimum,
  // as QEMU's padding backends (tap, user) would have delivered it.
  bool accepts(std::span<const uint8_t> frame) const;
};

}  // namespace ferry::virtio::net
