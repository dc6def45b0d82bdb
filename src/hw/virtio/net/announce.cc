#include "hw/virtio/net/announce.h"

#include <algorithm>

#include "base/byte_order.h"

namespace ferry::virtio::net {
namespace {

constexpr uint16_t kEthertypeRarp = 0x8035;
constexpr uint16_t kArpHardwareEthernet = 1;
constexpr uint16_t kArpProtocolIpv4 = 0x0800;
constexpr uint16_t kArpOpRequestReverse = 3;

}  // namespace

std::array<uint8_t, kAnnounceFrameSize> rarp_announce_frame(const MacAddress& mac) {
  std::array<uint8_t, kAnnounceFrameSize> frame{};
  std::fill_n(frame.begin(), kMacSize, 0xff);                 // destination: broadcast
  std::copy(mac.begin(), mac.end(), frame.begin() + 6);       // source
  store_be<uint16_t>(frame.data() + 12, kEthertypeRarp);
  store_be<uint16_t>(frame.data() + 14, kArpHardwareEthernet);
  store_be<uint16_t>(frame.data() + 16, kArpProtocolIpv4);
  frame[18] = kMacSize;                                       // hardware address length
  frame[19] = 4;                                              // protocol address length
  store_be<uint16_t>(frame.data() + 20, kArpOpRequestReverse);
  std::copy(mac.begin(), mac.end(), frame.begin() + 22);      // sender hardware address
  std::copy(mac.begin(), mac.end(), frame.begin() + 32);      // target hardware address
  return frame;  // protocol addresses and padding stay zero
}

int64_t announce_delay_ms(const AnnounceParameters& params, int64_t rounds_left) {
  const int64_t delay = params.initial_ms + (params.rounds - rounds_left - 1) * params.step_ms;
  return delay < 0 || delay > params.max_ms ? params.max_ms : delay;
}

}  // namespace ferry::virtio::net
