// The QMP query-rx-filter entry of one virtio-net NIC (QAPI RxFilterInfo), as QEMU 7.2's
// virtio_net_query_rxfilter fills it and prints it.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "hw/virtio/net/rx_filter.h"

namespace ferry::virtio::net {

// `name` is the NIC's net client name (the -device id). Members in the order QEMU 7.2
// prints them (observed). QEMU's quirks are kept:
// - "broadcast-allowed" is the nobcast flag itself (false while broadcasts pass);
// - the tables are listed last entry first (vlan-table in descending VID order);
// - "vlan" is "all" while CTRL_VLAN is not negotiated, and vlan-table then lists every VID
//   the table holds (all 4096 after reset).
// The caller also re-arms the NIC's RxFilterEventGate, as QEMU does on every query.
nlohmann::ordered_json query_rx_filter_info(std::string_view name, const RxFilter& filter,
                                            bool ctrl_vlan_negotiated);

}  // namespace ferry::virtio::net
