#include "hw/virtio/net/mac_address.h"

#include <fmt/format.h>

namespace ferry::virtio::net {

std::string format_mac(std::span<const uint8_t, kMacSize> mac) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0], mac[1], mac[2],
                     mac[3], mac[4], mac[5]);
}

}  // namespace ferry::virtio::net
