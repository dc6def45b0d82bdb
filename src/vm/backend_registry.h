// The VM's backends (drives today, network backends next): it opens them from the command
// line, lends them to devices (hw::Backends: one user per drive, the image lock taken as
// the device claims it unless an incoming migration still owns the image), takes and
// releases the locks across a migration, and answers the backends' QMP commands
// (query-block, x-blkdebug-inject/-clear/-release/-query). Main loop only.
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
#include "vm/qmp_server.h"

namespace ferry::vm {

// -blkdebug: a fault rule for the drive named `drive`.
struct DriveFault {
  std::string drive;
  block::FaultRule rule;
};

class BackendRegistry final : public hw::Backends {
 public:
  using IoErrorListener =
      std::function<void(const block::BlockBackend&, const block::IoErrorReport&)>;

  // `incoming`: this VM awaits a migration, so claimed drives stay unlocked until
  // activate_claimed().
  BackendRegistry(EventLoop& loop, bool incoming) : loop_(loop), incoming_(incoming) {}

  // Opens every -drive (inactive until a device claims it) and adds the -blkdebug rules;
  // errors name the option. `listener` hears every drive's I/O errors.
  Status open(const std::vector<block::DriveConfig>& drives,
              const std::vector<DriveFault>& faults, IoErrorListener listener);

  // The drive with this id, or null.
  block::BlockBackend* find_drive(std::string_view id) const;

  // hw::Backends
  Result<block::BlockBackend*> claim_drive(const hw::DeviceOptions& device,
                                           std::string_view drive_id) override;

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
};

}  // namespace ferry::vm
