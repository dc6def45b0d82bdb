#include "hw/virtio/net/net_config.h"

#include <algorithm>
#include <array>

#include "base/byte_order.h"
#include "hw/virtio/net/net_state.h"
#include "spec/virtio_net.h"
#include "spec/virtio_ring.h"

namespace ferry::virtio::net {
namespace {

namespace vn = spec::virtio_net;

using spec::virtio::kFVersion1;

struct FeatureEnd {
  uint64_t features;
  uint32_t end;  // bytes up to and including the field the features make valid
};

constexpr FeatureEnd kFeatureEnds[] = {
    {vn::bit(vn::kFMac), vn::kCfgMac + 6},
    {vn::bit(vn::kFStatus), vn::kCfgStatus + 2},
    {vn::bit(vn::kFMq), vn::kCfgMaxVirtqueuePairs + 2},
    {vn::bit(vn::kFMtu), vn::kCfgMtu + 2},
    {vn::bit(vn::kFSpeedDuplex), vn::kCfgDuplex + 1},
    {vn::bit(vn::kFRss) | vn::bit(vn::kFHashReport), vn::kCfgSupportedHashTypes + 4},
};

}  // namespace

uint32_t net_config_size(uint64_t requested_features) {
  const uint64_t features = requested_features | vn::bit(vn::kFMac);
  uint32_t size = vn::kCfgMac + 6;
  for (const FeatureEnd& entry : kFeatureEnds) {
    if (features & entry.features) size = std::max(size, entry.end);
  }
  return size;
}

void fill_net_config(std::span<uint8_t> out, const NetConfigFields& fields) {
  std::array<uint8_t, vn::kConfigSize> config{};
  std::copy(fields.mac.begin(), fields.mac.end(), config.begin() + vn::kCfgMac);
  store_le<uint16_t>(config.data() + vn::kCfgStatus, fields.status);
  store_le<uint16_t>(config.data() + vn::kCfgMaxVirtqueuePairs, fields.max_queue_pairs);
  store_le<uint16_t>(config.data() + vn::kCfgMtu, fields.mtu);
  store_le<int32_t>(config.data() + vn::kCfgSpeed, fields.speed);
  config[vn::kCfgDuplex] = fields.duplex;
  config[vn::kCfgRssMaxKeySize] = kRssMaxKeySize;
  store_le<uint16_t>(config.data() + vn::kCfgRssMaxIndirectionTableLength,
                     fields.rss_offered ? kRssMaxTableLength : 1);
  store_le<uint32_t>(config.data() + vn::kCfgSupportedHashTypes, kRssSupportedHashTypes);
  std::copy_n(config.begin(), std::min(out.size(), config.size()), out.begin());
}

bool apply_net_config_write(std::span<const uint8_t> config, uint64_t negotiated,
                            MacAddress& mac) {
  if (config.size() < kMacSize) return false;
  // A modern driver sets the MAC through the control queue only.
  if (negotiated & (vn::bit(vn::kFCtrlMacAddr) | vn::bit(kFVersion1))) return false;
  if (std::equal(mac.begin(), mac.end(), config.begin())) return false;
  mac = mac_from(config);
  return true;
}

}  // namespace ferry::virtio::net
