// The receive filter's pieces of QEMU 7.2's "virtio-net-device" (v11) section, as vmstate
// descriptions the device's own description nests in QEMU's order:
//
//   mac                      kRxFilterMacState       (first field of the section)
//   ... tx_waiting, mergeable_rx_bufs, status (the device's) ...
//   promisc, allmulti,       kRxFilterTablesState
//   mac_table.in_use (be32), in_use × 6 MAC bytes,
//   vlans (512 bytes: 128 u32 words in host order, written little-endian as x86 does)
//   ... has_vnet_hdr (the device's) ...
//   multi_overflow, uni_overflow, alluni, nomulti, nouni, nobcast   kRxFilterModesState
//
// Nested descriptions add no bytes, so the wire is QEMU's. Stricter than 7.2: an in_use
// above 64 is refused (7.2 skips the bytes and empties the table). first_multi is not on
// the wire; it is found again after the load. The VLAN table is kept as loaded (7.2 wipes
// it when the features are applied after a load).
#pragma once

#include <array>
#include <cstdint>

#include "hw/virtio/net/rx_filter.h"
#include "vmstate/vmstate.h"

namespace ferry::virtio::net {

// Wire views.
struct MacEntry {
  MacAddress bytes{};
};
struct MacTableWire {
  uint32_t in_use = 0;
  std::array<MacEntry, kMacTableEntries> macs{};
};
struct VlanTableWire {
  std::array<uint8_t, kMaxVlan / 8> bytes{};
};

Status fill_mac_table_wire(const RxFilter& filter, MacTableWire& wire);
Status apply_mac_table_wire(RxFilter& filter, const MacTableWire& wire);
Status fill_vlan_table_wire(const RxFilter& filter, VlanTableWire& wire);
Status apply_vlan_table_wire(RxFilter& filter, const VlanTableWire& wire);

inline constexpr auto kMacEntryState = vmstate::describe<MacEntry>(
    "virtio-net-mac", {.version = 1}, vmstate::buffer("mac", &MacEntry::bytes));

inline constexpr auto kMacTableWireState = vmstate::describe<MacTableWire>(
    "virtio-net-mac-table", {.version = 1},
    vmstate::field("in_use", &MacTableWire::in_use),
    vmstate::varray("macs", &MacTableWire::macs, &MacTableWire::in_use, kMacTableEntries,
                    kMacEntryState));

inline constexpr auto kVlanTableWireState = vmstate::describe<VlanTableWire>(
    "virtio-net-vlans", {.version = 1}, vmstate::buffer("vlans", &VlanTableWire::bytes));

inline constexpr auto kMacTableOverflowState = vmstate::describe<MacTable>(
    "virtio-net-mac-overflow", {.version = 11},
    vmstate::field("multi_overflow", &MacTable::multi_overflow),
    vmstate::field("uni_overflow", &MacTable::uni_overflow));

inline constexpr auto kRxFilterMacState = vmstate::describe<RxFilter>(
    "virtio-net-rx-mac", {.version = 11}, vmstate::buffer("mac", &RxFilter::mac));

inline constexpr auto kRxFilterTablesState = vmstate::describe<RxFilter>(
    "virtio-net-rx-tables", {.version = 11},
    vmstate::field("promisc", &RxFilter::promisc),
    vmstate::field("allmulti", &RxFilter::allmulti),
    vmstate::with_tmp<RxFilter>("mac_table", kMacTableWireState, &fill_mac_table_wire,
                                &apply_mac_table_wire),
    vmstate::with_tmp<RxFilter>("vlans", kVlanTableWireState, &fill_vlan_table_wire,
                                &apply_vlan_table_wire));

inline constexpr auto kRxFilterModesState = vmstate::describe<RxFilter>(
    "virtio-net-rx-modes", {.version = 11},
    vmstate::field("mac_table", &RxFilter::mac_table, kMacTableOverflowState),
    vmstate::field("alluni", &RxFilter::alluni),
    vmstate::field("nomulti", &RxFilter::nomulti),
    vmstate::field("nouni", &RxFilter::nouni),
    vmstate::field("nobcast", &RxFilter::nobcast));

}  // namespace ferry::virtio::net
