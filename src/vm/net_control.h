// The VM's network cards as QMP reaches them (QEMU 7.2's net/net.c and net/announce.c):
// - set_link NAME: NAME is a netdev or a NIC, netdevs first (they are created first, and
//   QEMU takes the first net client of that name). A netdev's own link goes down and so
//   does its NIC's; a NIC's goes down alone (a backend is never changed through its NIC).
//   Neither: "Device 'NAME' not found", class DeviceNotFound.
// - announce-self: rounds of a RARP per NIC (interfaces= limits it to those NIC names,
//   unknown ones ignored) followed by the NIC's own announce, the first at once and the
//   rest on QEMU's schedule (net/announce.h) on the real clock. A new announce-self with
//   the same id replaces the old one's remaining rounds; other ids run side by side.
// - query-rx-filter [NAME]: each NIC's receive filter in creation order; NAME a netdev:
//   "net client(NAME) isn't a NIC"; unknown: "invalid net client name: NAME".
// - after an incoming migration: the same rounds with the migration's announce-*
//   parameters, under a timer of their own.
// Every NIC type registers through hw::NicRegistrar; nothing here knows a model. Main loop.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/event_loop.h"
#include "hw/core/nic.h"
#include "net/announce.h"
#include "vm/backend_registry.h"
#include "vm/qmp_server.h"

namespace ferry::vm {

class NetControl final : public hw::NicRegistrar {
 public:
  // `clock`: announce rounds run on real time (QEMU's QEMU_CLOCK_REALTIME).
  NetControl(EventLoop& loop, const Clock& clock, BackendRegistry& backends)
      : loop_(loop), clock_(clock), backends_(backends) {}
  ~NetControl() override;
  NetControl(const NetControl&) = delete;
  NetControl& operator=(const NetControl&) = delete;

  // hw::NicRegistrar
  std::string add_nic(const hw::DeviceOptions& device, hw::Nic& nic,
                      net::NetBackend* peer) override;

  // QMP set_link.
  Status set_link(std::string_view name, bool up);
  // QMP query-rx-filter: every NIC's filter, or the one named (QEMU 7.2's errors for a
  // netdev's name, a NIC without a filter, an unknown name).
  Result<Json> query_rx_filter(const std::optional<std::string>& name);
  // QMP announce-self; `interfaces` (nullopt: every NIC) names NICs.
  void announce_self(const std::string& id, const net::AnnounceParameters& params,
                     std::optional<std::vector<std::string>> interfaces);
  // An incoming migration completed: announce with the migration parameters.
  void announce_after_incoming(const net::AnnounceParameters& params);
  // Rounds still to come under `id` (nullopt: the incoming migration's), for tests.
  int64_t rounds_pending(const std::optional<std::string>& id) const;

  Status register_qmp_commands(QmpServer& qmp);

 private:
  struct NicEntry {
    std::string name;
    std::string driver;
    hw::Nic* nic;
    net::NetBackend* peer;
  };
  // One announcement in progress (QEMU's AnnounceTimer).
  struct AnnounceRun {
    net::AnnounceParameters params;
    std::optional<std::vector<std::string>> interfaces;
    int64_t rounds_left = 0;
    EventLoop::TimerId timer = 0;
  };
  // nullopt: the incoming migration's timer; else announce-self's id.
  using RunKey = std::optional<std::string>;

  void start(const RunKey& key, const net::AnnounceParameters& params,
             std::optional<std::vector<std::string>> interfaces);
  // Sends one round, then schedules the next or ends the run.
  void round(const RunKey& key);
  void cancel(const RunKey& key);

  EventLoop& loop_;
  const Clock& clock_;
  BackendRegistry& backends_;
  std::vector<NicEntry> nics_;  // in creation order, as QEMU walks its NICs
  std::map<RunKey, AnnounceRun> runs_;
};

}  // namespace ferry::vm
