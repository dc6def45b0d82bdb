// Asking the guest to announce itself (VIRTIO_NET_F_GUEST_ANNOUNCE): after an incoming
// migration, or when announce-self runs, the device sets the ANNOUNCE status bit and
// raises a configuration interrupt; the driver sends its gratuitous packets (it knows its
// VLANs and addresses, which the RARP cannot) and acknowledges with CTRL_ANNOUNCE_ACK.
// QEMU 7.2's rules (virtio_net_announce*, post_load); the timer itself is the device's.
#pragma once

#include <cstdint>
#include <optional>

#include "hw/virtio/net/announce.h"
#include "hw/virtio/net/net_state.h"

namespace ferry::virtio::net {

// Both GUEST_ANNOUNCE and CTRL_VQ negotiated: the guest can be asked.
bool guest_can_announce(uint64_t negotiated);

// An incoming migration finished loading: with the guest able to announce and rounds
// configured, arms `params.rounds` rounds and returns the delay of the first (0: at once);
// otherwise no round is armed.
std::optional<int64_t> start_guest_announce(NetDeviceState& state, uint64_t negotiated,
                                            const AnnounceParameters& params);

// The announce timer fired: one round used, ANNOUNCE set. The device then raises a
// configuration interrupt. The next round is scheduled when the guest acknowledges
// (CtrlOutcome::announce_step, delay announce_delay_ms(params, state.announce_rounds)).
void guest_announce_round(NetDeviceState& state);

// announce-self reached this NIC: asks the guest too, unless migration rounds are under
// way (they ask it themselves). Returns whether ANNOUNCE was set (raise the interrupt).
bool guest_announce_on_self_announce(NetDeviceState& state, uint64_t negotiated);

}  // namespace ferry::virtio::net
