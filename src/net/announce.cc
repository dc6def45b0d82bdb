#include "net/announce.h"

#include <algorithm>

#include "base/byte_order.h"

namespace ferry::net {
namespace {

constexpr uint16_t kEthertypeRarp = 0x8035;
constexpr uint16_t kArpHardwareEthernet = 1;
constexpr uint16_t kArpProtocolIpv4 = 0x0800;
constexpr uint16_t kArpOpRequestReverse = 3;

}  // namespace

std::array<uint8_t, kAnnounceFrameSize> rarp_announce_frame(
    std::span<const uint8_t, kEthernetAddressSize> mac) {
  std::array<uint8_t, kAnnounceFrameSize> frame{};
  std::fill_n(frame.begin(), kEthernetAddressSize, 0xff);  // destination: broadcast
  std::copy(mac.begin(), mac.end(), frame.begin() + 6);   // source
  store_be<uint16_t>(frame.data() + 12, kEthertypeRarp);
  store_be<uint16_t>(frame.data() + 14, kArpHardwareEthernet);
  store_be<uint16_t>(frame.data() + 16, kArpProtocolIpv4);
  frame[18] = static_cast<uint8_t>(kEthernetAddressSize);  // hardware address length
  frame[19] = 4;                                           // protocol address length
  store_be<uint16_t>(frame.data() + 20, kArpOpRequestReverse);
  std::copy(mac.begin(), mac.end(), frame.begin() + 22);  // sender hardware address
  std::copy(mac.begin(), mac.end(), frame.begin() + 32);  // target hardware address
  return frame;  // protocol addresses and padding stay zero
}

int64_t announce_delay_ms(const AnnounceParameters& params, int64_t rounds_left) {
  // announce-self takes any int64: a sum or product beyond int64 counts as out of range.
  int64_t index = 0, product = 0, delay = 0;
  if (__builtin_sub_overflow(params.rounds, rounds_left, &index) ||
      __builtin_sub_overflow(index, 1, &index) ||
      __builtin_mul_overflow(index, params.step_ms, &product) ||
      __builtin_add_overflow(params.initial_ms, product, &delay))
    return params.max_ms;
  return delay < 0 || delay > params.max_ms ? params.max_ms : delay;
}

}  // namespace ferry::net
