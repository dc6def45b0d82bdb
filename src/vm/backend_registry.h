// The VM's backends, drives and network backends: it opens them from the command line,
// lends them to devices (hw::Backends: one user per drive or netdev, the image lock taken as
// the device claims it unless an incoming migration still owns the image), takes and
// releases the locks across a migration, and answers the backends' QMP commands
// (query-block, x-blkdebug-inject/-clear/-release/-query). Netdevs' connections become the
// QMP events NETDEV_STREAM_CONNECTED/DISCONNECTED (QEMU 7.2's), handed to the listener as
// JSON. QEMU 7.2 has no query-netdev (added in 6.0's cycle, reverted), so there is none.
// Main loop only.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/event_loop.h"
#include "block/block_backend.h"
#include "block/drive_config.h"
#include "block/fault_injector.h"
#include "hw/core/device_type.h"
#include "net/hub.h"
#include "net/net_backend.h"
#include "net/netdev_config.h"
#include "vm/qmp_server.h"

namespace ferry::vm {

// -blkdebug: a fault rule for the drive named `drive`.
struct DriveFault {
  std::string drive;
  block::FaultRule rule;
};

class BackendRegistry final : public hw::Backends, private net::NetEvents {
 public:
  using IoErrorListener =
      std::function<void(const block::BlockBackend&, const block::IoErrorReport&)>;
  // A QMP event: name and data.
  using EventListener = std::function<void(std::string_view name, const Json& data)>;

  // `incoming`: this VM awaits a migration, so claimed drives stay unlocked until
  // activate_claimed().
  BackendRegistry(EventLoop& loop, bool incoming) : loop_(loop), incoming_(incoming) {}

  // Opens every -drive (inactive until a device claims it) and adds the -blkdebug rules;
  // errors name the option. `listener` hears every drive's I/O errors.
  Status open(const std::vector<block::DriveConfig>& drives,
              const std::vector<DriveFault>& faults, IoErrorListener listener);

  // The drive with this id, or null.
  block::BlockBackend* find_drive(std::string_view id) const;

  // Creates every -netdev (ids are unique: the command line checked). Errors start
  // "-netdev TEXT:". `events` hears the stream netdevs' connections from now on.
  Status open_netdevs(const std::vector<net::NetdevConfig>& netdevs, EventListener events);
  // The netdev with this id, or null.
  net::NetBackend* find_netdev(std::string_view id) const;
  // QEMU's warning for each netdev no NIC claimed ("netdev n0 has no peer").
  void warn_unclaimed_netdevs() const;

  // hw::Backends
  Result<block::BlockBackend*> claim_drive(const hw::DeviceOptions& device,
                                           std::string_view drive_id) override;
  Result<net::NetBackend*> claim_netdev(const hw::DeviceOptions& device,
                                        std::string_view netdev_id,
                                        std::string_view property_owner) override;

  // The image locks of the drives devices use (QEMU's bdrv_activate_all /
  // bdrv_inactivate_all).
  Status activate_claimed();
  Status inactivate_all();
  // As QEMU's cont: every drive's I/O status starts over.
  void reset_io_status();

  Status register_qmp_commands(QmpServer& qmp);

 private:
  Result<block::BlockBackend*> named_drive(std::string_view id) const;
  Result<block::BlockBackend*> only_drive_argument(const Json& args) const;

  EventLoop& loop_;
  bool incoming_;
  std::map<std::string, std::unique_ptr<block::BlockBackend>, std::less<>> drives_;
  std::map<std::string, std::string, std::less<>> drive_users_;  // drive id -> device

  // net::NetEvents
  void connected(std::string_view netdev_id, const net::SocketAddress& address) override;
  void disconnected(std::string_view netdev_id) override;

  EventListener netdev_events_;
  // Hubs before the netdevs: ports leave their hub as they go.
  net::Hubs hubs_;
  std::map<std::string, std::unique_ptr<net::NetBackend>, std::less<>> netdevs_;
  std::map<std::string, std::string, std::less<>> netdev_users_;  // netdev id -> device
};

// QEMU's SocketAddress as QMP shows it: {"type": "inet", "host", "port", "ipv4": true} or
// {"type": "unix", "path"}.
Json socket_address_json(const net::SocketAddress& address);

}  // namespace ferry::vm
