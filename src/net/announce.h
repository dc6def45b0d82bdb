// Self-announcement (QEMU's net/announce.c): the RARP frame sent for a NIC so switches
// relearn where the guest's address lives, and the schedule of its rounds, shared by
// announce-self and the announcement after an incoming migration (the migration
// parameters announce-initial/-max/-rounds/-step).
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace ferry::net {

inline constexpr size_t kAnnounceFrameSize = 60;  // Ethernet minimum, no FCS
inline constexpr size_t kEthernetAddressSize = 6;

// Broadcast RARP "request reverse" (ethertype 0x8035, opcode 3) with `mac` as source,
// sender and target hardware address, zero protocol addresses, zero padding to 60 bytes.
// Ferry announces the guest's current address; QEMU 7.2 sends the configured one.
std::array<uint8_t, kAnnounceFrameSize> rarp_announce_frame(
    std::span<const uint8_t, kEthernetAddressSize> mac);

// migrate-set-parameters announce-initial/-max/-rounds/-step (milliseconds), QEMU's defaults.
struct AnnounceParameters {
  int64_t initial_ms = 50;
  int64_t max_ms = 550;
  int64_t rounds = 5;
  int64_t step_ms = 100;
};

// The wait before the next round when `rounds_left` remain after the one just sent
// (qemu_announce_timer_step): initial, then one step longer each round, at most max. The
// first round goes out at once, so QEMU's defaults send at 0, 50, 200, 450 and 800 ms.
// Computed without overflow: a sum beyond int64 counts as above max.
int64_t announce_delay_ms(const AnnounceParameters& params, int64_t rounds_left);

}  // namespace ferry::net
