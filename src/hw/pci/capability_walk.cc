#include "hw/pci/capability_walk.h"

namespace ferry::pci {

namespace {
constexpr int kMaxStandardCapabilities = 48;   // (256 - 0x40) / 4
constexpr int kMaxExtendedCapabilities = 960;  // (4096 - 0x100) / 4
}  // namespace

std::vector<CapabilityEntry> walk_capabilities(const PciDevice& device) {
  std::vector<CapabilityEntry> out;
  // The guest's view (config_read), not the raw bytes: what a host discovers.
  if (device.config_read(kStatus, 2) & kStatusCapabilityList) {
    uint32_t at = device.config_read(kCapabilityPointer, 1) & ~3u;
    for (int hops = 0; at != 0 && hops < kMaxStandardCapabilities; ++hops) {
      out.push_back({false, static_cast<uint16_t>(device.config_read(at, 1)), at});
      at = device.config_read(at + 1, 1) & ~3u;
    }
  }
  if (device.config_size() > kConfigSize) {
    uint32_t at = kExtendedCapabilities;
    for (int hops = 0; at >= kExtendedCapabilities && hops < kMaxExtendedCapabilities;
         ++hops) {
      uint32_t header = device.config_read(at, 4);
      if (header == 0 || header == 0xffffffff) break;
      out.push_back({true, static_cast<uint16_t>(header & 0xffff), at});
      at = (header >> 20) & ~3u;
    }
  }
  return out;
}

}  // namespace ferry::pci
