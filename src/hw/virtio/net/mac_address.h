// A 48-bit Ethernet address and the forms QEMU prints it in.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace ferry::virtio::net {

inline constexpr size_t kMacSize = 6;
using MacAddress = std::array<uint8_t, kMacSize>;

// "52:54:00:12:34:56": lower-case hex, as query-rx-filter and `info network` show it.
std::string format_mac(std::span<const uint8_t, kMacSize> mac);

inline MacAddress mac_from(std::span<const uint8_t> bytes) {
  MacAddress mac{};
  for (size_t i = 0; i < kMacSize && i < bytes.size(); ++i) mac[i] = bytes[i];
  return mac;
}

}  // namespace ferry::virtio::net
