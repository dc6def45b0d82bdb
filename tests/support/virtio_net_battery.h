// The virtio-net battery: one fixed sequence of observations of a `virtio-net-pci`
// function (identity, capabilities, BARs, offered features, queue sizes, configuration
// bytes, the control queue's answer to every class and command, a few invalid ones
// included, the receive filter as frames see it, TX framing on the link, query-rx-filter),
// run by the guest virtio-net driver over any GuestBus with a test-held stream peer on
// the NIC's link. The same battery run against QEMU 7.2 and against Ferry is compared line
// by line (tests/virtio_net_qemu_diff_test.cc).
#pragma once

#include <string>
#include <vector>

#include "guest/guest_bus.h"
#include "client/qmp_client.h"
#include "support/observation.h"
#include "support/stream_peer.h"

namespace ferry::testing {

struct NetBatteryOptions {
  uint8_t slot = 4;                 // the NIC's PCI slot (addr=4 on both command lines)
  uint64_t ram_bytes = 256 << 20;   // DMA memory is [16 MiB, ram_bytes)
  std::string nic_id = "nic0";
};

// Runs every step; a failing step is recorded as its value ("error: ..."), and the battery
// goes on unless the driver cannot bring the device up at all.
std::vector<Observation> run_net_battery(guest::GuestBus& bus, StreamPeer& peer,
                                         client::QmpClient& qmp, const NetBatteryOptions& options);

}  // namespace ferry::testing
