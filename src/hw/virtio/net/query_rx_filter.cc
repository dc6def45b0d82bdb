#include "hw/virtio/net/query_rx_filter.h"

#include <algorithm>
#include <string>

namespace ferry::virtio::net {
namespace {

const char* rx_state(bool none, bool all) {
  if (none) return "none";
  if (all) return "all";
  return "normal";
}

nlohmann::ordered_json mac_list(const MacTable& table, uint32_t begin, uint32_t end) {
  auto list = nlohmann::ordered_json::array();
  end = std::min(end, kMacTableEntries);
  for (uint32_t i = end; i > begin; --i) list.push_back(format_mac(table.entry(i - 1)));
  return list;
}

}  // namespace

nlohmann::ordered_json query_rx_filter_info(std::string_view name, const RxFilter& filter,
                                            bool ctrl_vlan_negotiated) {
  auto vlan_table = nlohmann::ordered_json::array();
  for (uint32_t vid = kMaxVlan; vid > 0; --vid) {
    if (filter.vlan_allowed(static_cast<uint16_t>(vid - 1))) vlan_table.push_back(vid - 1);
  }
  const char* vlan = "normal";
  if (!ctrl_vlan_negotiated) {
    vlan = "all";
  } else if (vlan_table.empty()) {
    vlan = "none";
  }
  const MacTable& table = filter.mac_table;
  const uint32_t first_multi = std::min(table.first_multi, kMacTableEntries);

  nlohmann::ordered_json info;
  info["promiscuous"] = filter.promisc != 0;
  info["name"] = std::string(name);
  info["main-mac"] = format_mac(filter.mac);
  info["unicast"] = rx_state(filter.nouni != 0, filter.alluni != 0);
  info["vlan"] = vlan;
  info["vlan-table"] = std::move(vlan_table);
  info["unicast-table"] = mac_list(table, 0, first_multi);
  info["multicast"] = rx_state(filter.nomulti != 0, filter.allmulti != 0);
  info["multicast-overflow"] = table.multi_overflow != 0;
  info["unicast-overflow"] = table.uni_overflow != 0;
  info["multicast-table"] = mac_list(table, first_multi, table.in_use);
  info["broadcast-allowed"] = filter.nobcast != 0;
  return info;
}

}  // namespace ferry::virtio::net
