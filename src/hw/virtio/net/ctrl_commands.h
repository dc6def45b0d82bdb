// One control-queue request of virtio-net, executed as QEMU 7.2 does
// (virtio_net_handle_ctrl_iov): the ack it answers for every class and command, malformed
// ones included, and what changed, for the device to act on. No ring code: the caller
// gathers the request's readable bytes into one span and writes the ack byte back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "hw/virtio/net/net_state.h"

namespace ferry::virtio::net {

struct CtrlOutcome {
  // Fewer than 2 readable or 1 writable byte: QEMU 7.2 marks the device broken ("virtio-net
  // ctrl missing headers"), returns the element unanswered and stops processing the queue.
  bool missing_headers = false;
  uint8_t ack = spec::virtio_net::kCtrlErr;
  // Candidates for QMP NIC_RX_FILTER_CHANGED (RxFilterEventGate decides whether to emit):
  // any accepted RX, MAC or VLAN command, changed or not.
  bool rx_filter_changed = false;
  // VQ_PAIRS_SET or RSS_CONFIG accepted: state.queue_pairs.curr is the count to apply.
  bool queue_pairs_set = false;
  // GUEST_OFFLOADS_SET accepted: state.offloads.curr is to be applied to the backend.
  bool offloads_set = false;
  // ANNOUNCE_ACK accepted while announce rounds remain: the next round is to be scheduled.
  bool announce_step = false;
};

// `request` is the request's readable bytes, concatenated (class, command, data);
// `reply_capacity` the writable bytes the driver gave for the ack. `negotiated` is the
// driver's accepted feature word.
CtrlOutcome execute_ctrl_command(NetDeviceState& state, uint64_t negotiated,
                                 std::span<const uint8_t> request, size_t reply_capacity);

}  // namespace ferry::virtio::net
