#include "hw/virtio/net/rx_filter_vmstate.h"

#include <algorithm>

#include "base/byte_order.h"

namespace ferry::virtio::net {

Status fill_mac_table_wire(const RxFilter& filter, MacTableWire& wire) {
  const MacTable& table = filter.mac_table;
  if (table.in_use > kMacTableEntries) {
    return Error(ErrorCode::kInternal, "MAC table in_use {} exceeds {} entries", table.in_use,
                 kMacTableEntries);
  }
  wire.in_use = table.in_use;
  for (uint32_t i = 0; i < table.in_use; ++i) {
    const auto entry = table.entry(i);
    std::copy(entry.begin(), entry.end(), wire.macs[i].bytes.begin());
  }
  return {};
}

Status apply_mac_table_wire(RxFilter& filter, const MacTableWire& wire) {
  MacTable& table = filter.mac_table;
  table.macs.fill(0);
  table.in_use = wire.in_use;  // at most 64: the varray's bound refused more
  for (uint32_t i = 0; i < wire.in_use; ++i) {
    std::copy(wire.macs[i].bytes.begin(), wire.macs[i].bytes.end(),
              table.macs.begin() + size_t{i} * kMacSize);
  }
  table.derive_first_multi();
  return {};
}

Status fill_vlan_table_wire(const RxFilter& filter, VlanTableWire& wire) {
  for (size_t word = 0; word < filter.vlans.size(); ++word) {
    store_le<uint32_t>(wire.bytes.data() + 4 * word, filter.vlans[word]);
  }
  return {};
}

Status apply_vlan_table_wire(RxFilter& filter, const VlanTableWire& wire) {
  for (size_t word = 0; word < filter.vlans.size(); ++word) {
    filter.vlans[word] = load_le<uint32_t>(wire.bytes.data() + 4 * word);
  }
  return {};
}

}  // namespace ferry::virtio::net
