#include "hw/virtio/net/net_state.h"

namespace ferry::virtio::net {

namespace vn = spec::virtio_net;

void NetDeviceState::reset(const MacAddress& configured_mac) {
  rx.reset(configured_mac);
  queue_pairs.curr = 1;
  announce_rounds = 0;
  status &= static_cast<uint16_t>(~vn::kStatusAnnounce);
  features_negotiated(0);
}

void NetDeviceState::features_negotiated(uint64_t features) {
  auto has = [features](unsigned feature) { return (features & vn::bit(feature)) != 0; };
  queue_pairs.multiqueue = has(vn::kFMq) || has(vn::kFRss);
  mergeable_rx_bufs = has(vn::kFMrgRxbuf) ? 1 : 0;
  rss.populate_hash = has(vn::kFHashReport);
  rss.redirect = has(vn::kFRss);
  offloads.rsc4_enabled = has(vn::kFRscExt) && has(vn::kFGuestTso4);
  offloads.rsc6_enabled = has(vn::kFRscExt) && has(vn::kFGuestTso6);
  if (has_vnet_hdr) offloads.curr = features & kGuestOffloadsMask;
  rx.features_negotiated(has(vn::kFCtrlVlan));
}

}  // namespace ferry::virtio::net
