// Live migration as the VM process offers it: the QMP commands (migrate,
// migrate-incoming, migrate_cancel, query-migrate, migrate-set-parameters,
// query-migrate-parameters, with the announce-* parameters), the MIGRATION event, and the hooks through which the
// migration threads stop, capture, resume or start the machine. Work the threads ask of
// the machine is done on the main loop (bottom halves) and waited for.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "base/event_loop.h"
#include "migration/destination.h"
#include "migration/section_registry.h"
#include "migration/source.h"
#include "net/announce.h"
#include "vm/global_state.h"
#include "vm/qmp_server.h"

namespace ferry::vm {

class Machine;

class MigrationControl final : public migration::SourceHooks, public migration::DestinationHooks {
 public:
  MigrationControl(Machine& machine, EventLoop& loop);
  ~MigrationControl() override;

  migration::SectionRegistry& registry() { return registry_; }
  // Registers the "globalstate" section (the source's run state; vm/global_state.h).
  Status register_global_state();
  // A reason `migrate` must refuse (QEMU's migration blockers): a device or option that
  // cannot be migrated registers one.
  void add_blocker(std::string reason) { blockers_.push_back(std::move(reason)); }
  const std::vector<std::string>& blockers() const { return blockers_; }
  Status register_qmp_commands(QmpServer& qmp);
  // -incoming URI (not "defer"): bind now, receive on the incoming thread.
  Status listen(const std::string& uri);

  // SourceHooks (migration thread)
  Result<migration::DeviceCapture> capture_early_setup() override;
  Result<migration::DeviceCapture> stop_and_capture() override;
  void resume_after_failure() override;
  void completed() override;
  // DestinationHooks (incoming thread)
  std::string loaded() override;
  void failed(const Status& error) override;
  // both
  void status_changed(migration::MigrationStatus status) override;

 private:
  // Runs `work` on the main loop and waits for it; false when the loop is shutting down.
  bool on_main_loop(const std::function<void()>& work);
  Result<Json> migrate(const Json& args);
  Json query_migrate() const;
  Result<Json> set_parameters(const Json& args);
  Result<Json> set_capabilities(const Json& args);

  struct MigrationCapability {
    std::string name;
    bool state;             // the fixed state, or the default of a settable one
    bool settable = false;  // return-path and switchover-ack (kept in params_)
  };
  static const std::vector<MigrationCapability> kCapabilities;
  bool capability_state(const MigrationCapability& c) const;
  // The device sections' setup (`early`) or complete records, with their costs (main loop).
  Result<migration::DeviceCapture> capture_devices(bool early);

  Machine& machine_;
  EventLoop& loop_;
  migration::SectionRegistry registry_;
  migration::MigrationParams params_;
  // announce-initial/-max/-rounds/-step: the announcement after an incoming migration.
  net::AnnounceParameters announce_params_;
  std::unique_ptr<migration::SourceMigration> source_;
  std::unique_ptr<migration::DestinationMigration> destination_;
  std::vector<std::string> blockers_;
  bool was_running_ = false;  // main loop only
  GlobalState global_state_;  // saved at stop-and-copy (main loop), loaded by the incoming thread
  std::atomic<bool> shutting_down_{false};
  QmpServer* qmp_ = nullptr;
};

}  // namespace ferry::vm
