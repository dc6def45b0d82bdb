// Frames and control requests for virtio-net's unit tests.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "hw/virtio/net/mac_address.h"

namespace ferry::virtio::net::testing {

// What a Linux driver negotiated with QEMU 7.2 over a stream backend (research §4.4):
// CTRL_GUEST_OFFLOADS, MAC, MRG_RXBUF, STATUS, CTRL_VQ/RX/VLAN/RX_EXTRA, GUEST_ANNOUNCE,
// CTRL_MAC_ADDR, VERSION_1.
inline constexpr uint64_t kStreamNegotiated = 0x1'00bf'8024;

inline constexpr MacAddress kDeviceMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
inline constexpr MacAddress kOtherUnicast{0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
inline constexpr MacAddress kMulticast{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};
inline constexpr MacAddress kOtherMulticast{0x01, 0x00, 0x5e, 0x00, 0x00, 0x02};
inline constexpr MacAddress kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// A 60-byte IPv4 frame to `dest`, 802.1Q-tagged with `vid` when vid >= 0.
inline std::vector<uint8_t> frame_to(const MacAddress& dest, int vid = -1) {
  std::vector<uint8_t> frame(dest.begin(), dest.end());
  const MacAddress source{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee};
  frame.insert(frame.end(), source.begin(), source.end());
  if (vid >= 0) {
    frame.insert(frame.end(), {0x81, 0x00, static_cast<uint8_t>((vid >> 8) & 0x0f),
                               static_cast<uint8_t>(vid & 0xff)});
  }
  frame.insert(frame.end(), {0x08, 0x00});
  frame.resize(60, 0x45);
  return frame;
}

// Little-endian appenders for building control requests.
inline void put_le16(std::vector<uint8_t>& out, uint16_t v) {
  out.insert(out.end(), {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)});
}
inline void put_le32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void put_le64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void put_mac(std::vector<uint8_t>& out, const MacAddress& mac) {
  out.insert(out.end(), mac.begin(), mac.end());
}

}  // namespace ferry::virtio::net::testing
