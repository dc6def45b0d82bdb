#include "hw/virtio/net/rx_filter.h"

#include <algorithm>

namespace ferry::virtio::net {
namespace {

// The first 16 bytes of a frame (all the filter examines: destination, ethertype, VLAN
// tag), zero-padded as a padding backend would have padded a short frame to 60 bytes.
std::array<uint8_t, 16> filter_window(std::span<const uint8_t> frame) {
  std::array<uint8_t, 16> window{};
  std::copy_n(frame.begin(), std::min(frame.size(), window.size()), window.begin());
  return window;
}

bool is_broadcast(std::span<const uint8_t> mac) {
  return std::all_of(mac.begin(), mac.begin() + kMacSize, [](uint8_t b) { return b == 0xff; });
}

}  // namespace

bool MacTable::contains(std::span<const uint8_t> mac, uint32_t begin, uint32_t end) const {
  end = std::min(end, kMacTableEntries);
  for (uint32_t i = begin; i < end; ++i) {
    if (std::equal(mac.begin(), mac.begin() + kMacSize, entry(i).begin())) return true;
  }
  return false;
}

void MacTable::derive_first_multi() {
  const uint32_t used = std::min(in_use, kMacTableEntries);
  uint32_t i = 0;
  while (i < used && (macs[size_t{i} * kMacSize] & 1) == 0) ++i;
  first_multi = i;
}

void RxFilter::reset(const MacAddress& configured_mac) {
  promisc = 1;
  allmulti = alluni = nomulti = nouni = nobcast = 0;
  mac_table = MacTable{};
  mac = configured_mac;
  vlans.fill(0xffffffffu);
}

void RxFilter::features_negotiated(bool ctrl_vlan) { vlans.fill(ctrl_vlan ? 0u : 0xffffffffu); }

bool RxFilter::vlan_allowed(uint16_t vid) const {
  return vid < kMaxVlan && (vlans[vid >> 5] & (1u << (vid & 31))) != 0;
}

void RxFilter::set_vlan(uint16_t vid, bool allowed) {
  if (vid >= kMaxVlan) return;
  if (allowed) {
    vlans[vid >> 5] |= 1u << (vid & 31);
  } else {
    vlans[vid >> 5] &= ~(1u << (vid & 31));
  }
}

bool RxFilter::accepts(std::span<const uint8_t> frame) const {
  if (promisc) return true;
  const auto head = filter_window(frame);
  const std::span<const uint8_t> dest(head.data(), kMacSize);

  if (head[12] == 0x81 && head[13] == 0x00) {
    const uint16_t vid = static_cast<uint16_t>(((head[14] << 8) | head[15]) & 0xfff);
    if (!vlan_allowed(vid)) return false;
  }

  if (dest[0] & 1) {  // group address
    if (is_broadcast(dest)) return !nobcast;
    if (nomulti) return false;
    if (allmulti || mac_table.multi_overflow) return true;
    return mac_table.contains(dest, mac_table.first_multi, mac_table.in_use);
  }
  if (nouni) return false;
  if (alluni || mac_table.uni_overflow) return true;
  if (std::equal(mac.begin(), mac.end(), dest.begin())) return true;
  return mac_table.contains(dest, 0, mac_table.first_multi);
}

}  // namespace ferry::virtio::net
