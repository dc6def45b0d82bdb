#include "hw/virtio/net/guest_announce.h"

namespace ferry::virtio::net {

namespace vn = spec::virtio_net;

bool guest_can_announce(uint64_t negotiated) {
  const uint64_t needed = vn::bit(vn::kFGuestAnnounce) | vn::bit(vn::kFCtrlVq);
  return (negotiated & needed) == needed;
}

std::optional<int64_t> start_guest_announce(NetDeviceState& state, uint64_t negotiated,
                                            const AnnounceParameters& params) {
  if (!guest_can_announce(negotiated) || params.rounds <= 0) return std::nullopt;
  state.announce_rounds = static_cast<uint32_t>(params.rounds);
  return 0;
}

void guest_announce_round(NetDeviceState& state) {
  if (state.announce_rounds > 0) --state.announce_rounds;
  state.status |= vn::kStatusAnnounce;
}

bool guest_announce_on_self_announce(NetDeviceState& state, uint64_t negotiated) {
  if (state.announce_rounds > 0 || !guest_can_announce(negotiated)) return false;
  state.status |= vn::kStatusAnnounce;
  return true;
}

}  // namespace ferry::virtio::net
