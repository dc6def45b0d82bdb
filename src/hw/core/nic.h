// A network card as the machine's network commands reach it (QEMU's NIC net client): QMP
// set_link, announce-self, query-rx-filter, and the announcement after an incoming
// migration. A NIC model
// implements `Nic` and registers it through its context's `NicRegistrar`; the machine does
// the rest (names, netdev peers, announce timers) the same way for every NIC type.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "net/announce.h"
#include "net/net_backend.h"

namespace ferry::hw {

struct DeviceOptions;

class Nic {
 public:
  virtual ~Nic() = default;
  // QMP set_link reached this NIC (by its name, or its netdev's): while the link is down
  // the NIC neither sends nor takes frames (QEMU's link_down), and a model with a
  // guest-visible link status shows it.
  virtual void set_link(bool up) = 0;
  // The address an announcement carries: the guest's current one.
  virtual std::array<uint8_t, net::kEthernetAddressSize> current_mac() const = 0;
  // Sends `frame` to the backend as the NIC's own (QEMU's qemu_send_packet_raw): dropped
  // while the link is down or there is no backend.
  virtual void send_raw(std::span<const uint8_t> frame) = 0;
  // One announce round reached this NIC after its RARP: the model's own way of announcing
  // (QEMU's NetClientInfo::announce; virtio-net asks the guest). None by default.
  virtual void announce() {}
  // An incoming migration completed, before its announce rounds start (QEMU's virtio-net
  // arms its own guest announce rounds in its post_load, with the same parameters).
  virtual void incoming_migration_done(const net::AnnounceParameters& params) { (void)params; }
  // QMP query-rx-filter: the receive filter as QEMU's RxFilterInfo under the NIC's `name`,
  // or nullopt for a model that has none (QEMU: "doesn't support rx-filter querying").
  // Answering re-arms the model's NIC_RX_FILTER_CHANGED, as in QEMU.
  virtual std::optional<nlohmann::ordered_json> query_rx_filter(std::string_view name) {
    (void)name;
    return std::nullopt;
  }
};

// Where a NIC model registers its card (the machine's network commands find it there).
class NicRegistrar {
 public:
  virtual ~NicRegistrar() = default;
  // `nic` (owned by the device, which outlives the machine's use of it) for the -device
  // `device`, whose netdev is `peer` (null: none). Returns the NIC's name: the device id,
  // or QEMU's "TYPE.N" for a device without one.
  virtual std::string add_nic(const DeviceOptions& device, Nic& nic,
                              net::NetBackend* peer) = 0;
};

}  // namespace ferry::hw
