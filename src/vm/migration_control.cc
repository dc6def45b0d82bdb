#include "vm/migration_control.h"

#include <chrono>
#include <cstdio>
#include <future>

#include <fmt/ranges.h>

#include "base/log.h"
#include "migration/buffer_channel.h"
#include "migration/channel.h"
#include "migration/stream.h"
#include "migration/stream_writer.h"
#include "vm/machine.h"
#include "vm/qmp_commands.h"

namespace ferry::vm {

MigrationControl::MigrationControl(Machine& machine, EventLoop& loop)
    : machine_(machine), loop_(loop) {}

MigrationControl::~MigrationControl() {
  // Threads blocked on the main loop give up once it is gone.
  shutting_down_.store(true, std::memory_order_release);
  if (source_) source_->cancel();
  source_.reset();
  destination_.reset();
}

Status MigrationControl::register_global_state() {
  return registry_.add("globalstate", vmstate::bind(kGlobalStateDesc, global_state_)).take_status();
}

bool MigrationControl::on_main_loop(const std::function<void()>& work) {
  // The loop is gone once the machine is being destroyed (quit): nothing would run this.
  if (shutting_down_.load(std::memory_order_acquire)) return false;
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  loop_.schedule([work, done] {
    work();
    done->set_value();
  });
  while (finished.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready) {
    if (shutting_down_.load(std::memory_order_acquire)) return false;
  }
  return true;
}

// ---- source hooks ------------------------------------------------------------------------

Result<migration::DeviceCapture> MigrationControl::capture_devices(bool early) {
  std::vector<migration::SectionSaveCost> costs;
  auto saved = migration::save_device_sections(
      registry_, early ? migration::SavePhase::kSetup : migration::SavePhase::kComplete, &costs);
  if (!saved.ok()) return saved.take_status();
  migration::DeviceCapture capture;
  capture.records = std::move(saved->records);
  capture.vmdesc_devices = std::move(saved->vmdesc_devices);
  for (const migration::SectionSaveCost& cost : costs) {
    migration::DeviceTiming timing{.idstr = cost.idstr, .save_ns = cost.save_ns,
                                   .bytes = cost.bytes};
    for (const Machine::QuiesceTiming& q : machine_.last_quiesce())
      if (!early && q.idstr == cost.idstr) {
        timing.quiesce_ns = q.ns;
        timing.drain_ns = q.drain_ns;
      }
    capture.timings.push_back(std::move(timing));
  }
  return capture;
}

Result<migration::DeviceCapture> MigrationControl::stop_and_capture() {
  Result<migration::DeviceCapture> result = Error(ErrorCode::kFailedPrecondition, "VM is shutting down");
  bool ran = on_main_loop([&] {
    was_running_ = is_running(machine_.run_state());
    // What the destination ends in: running, or the state that paused this VM.
    global_state_.store(was_running_ ? RunState::kRunning : machine_.run_state());
    if (was_running_) {
      Status st = machine_.set_run_state(RunState::kPaused);
      if (!st.ok()) {
        result = st;
        return;
      }
    }
    result = capture_devices(false);
    // The devices are stopped and drained: release the image locks before the device
    // state (and EOF) goes out, so the destination can take them at switchover.
    if (result.ok()) {
      Status released = machine_.inactivate_drives();
      if (!released.ok()) result = released;
    }
  });
  if (!ran) return Error(ErrorCode::kFailedPrecondition, "VM is shutting down");
  return result;
}

Result<migration::DeviceCapture> MigrationControl::capture_early_setup() {
  Result<migration::DeviceCapture> result = Error(ErrorCode::kFailedPrecondition, "VM is shutting down");
  if (!on_main_loop([&] { result = capture_devices(true); }))
    return Error(ErrorCode::kFailedPrecondition, "VM is shutting down");
  return result;
}

void MigrationControl::resume_after_failure() {
  on_main_loop([this] {
    // The images are ours again, unless someone took them meanwhile: then the VM stays
    // paused (`cont` tries again), as QEMU's failed bdrv_activate_all.
    Status locked = machine_.activate_drives();
    if (!locked.ok())
      log(LogLevel::kError, "migration failed and the drives cannot be taken back: {}",
          locked.to_string());
    if (locked.ok() && was_running_ && machine_.run_state() == RunState::kPaused)
      (void)machine_.set_run_state(RunState::kRunning);
    was_running_ = false;
  });
}

void MigrationControl::completed() {
  on_main_loop([this] {
    (void)machine_.set_run_state(RunState::kPostMigrate);
    was_running_ = false;  // this migration is over: a later one must not resume the VM
  });
}

void MigrationControl::status_changed(migration::MigrationStatus status) {
  std::string s(migration::qmp_name(status));
  loop_.schedule([this, s] {
    if (qmp_) qmp_->emit_event("MIGRATION", Json{{"status", s}});
  });
}

// ---- destination hooks -----------------------------------------------------------------------

std::string MigrationControl::loaded() {
  std::string state = "paused";
  on_main_loop([&] {
    // QEMU starts the VM after an incoming migration unless -S was given, or the source
    // was not running (its global state): then the VM stays paused, in io-error when a
    // block error paused it (`cont` retries the held requests here).
    // `cont` during the load counts as if -S was not given (autostart).
    RunState to = machine_.autostart() ? RunState::kRunning : RunState::kPaused;
    if (global_state_.received && *global_state_.received != RunState::kRunning)
      to = *global_state_.received == RunState::kIoError ? RunState::kIoError : RunState::kPaused;
    // Switchover: the source released the image locks before sending its device state.
    // If they cannot be taken, the VM must not write: it stays paused (QEMU's order).
    Status locked = machine_.activate_drives();
    if (!locked.ok()) {
      log(LogLevel::kError, "incoming migration: cannot activate the drives: {}",
          locked.to_string());
      to = RunState::kPaused;
    }
    if (machine_.set_run_state(to).ok())
      state = to == RunState::kRunning ? "running" : "paused";
    // Every error is dealt with and the VM lives here now: tell the network (QEMU
    // announces whether or not the VM starts).
    machine_.announce_after_incoming(announce_params_);
  });
  return state;
}

void MigrationControl::failed(const Status& error) {
  std::string message = error.to_string();
  on_main_loop([this, message] {
    std::fprintf(stderr, "ferry-vm: incoming migration failed: %s\n", message.c_str());
    machine_.request_exit(1);
  });
}

// ---- QMP -----------------------------------------------------------------------------------

Status MigrationControl::listen(const std::string& uri) {
  auto listener = migration::listen_incoming(uri);
  if (!listener.ok()) return listener.take_status().prepend_message("-incoming " + uri);
  std::vector<memory::RamBlock*> ram = machine_.memory().ram_blocks();
  destination_ = std::make_unique<migration::DestinationMigration>(
      std::move(listener).value(), std::string(kMachineType), registry_, std::move(ram), *this,
      params_.switchover_ack);
  destination_->start();
  return {};
}

Result<Json> MigrationControl::migrate(const Json& args) {
  QmpArgs a(args);
  auto uri = a.string("uri");
  if (!uri.ok()) return uri.take_status();
  (void)a.optional_boolean("detach");
  FERRY_RETURN_IF_ERROR(a.finish());
  if (!blockers_.empty())
    return Error(ErrorCode::kFailedPrecondition, "Migration is blocked: {}",
                 fmt::join(blockers_, "; "));
  if (source_ && !source_->finished())
    return Error(ErrorCode::kFailedPrecondition, "There's a migration process in progress");
  if (machine_.run_state() == RunState::kInMigrate)
    return Error(ErrorCode::kFailedPrecondition, "Guest is waiting for an incoming migration");
  // Only what cannot wait on a peer happens here (a bad URI, a missing or refusing unix
  // socket fail at once); the migration thread connects, and a cancel interrupts it.
  auto connector = migration::OutgoingConnector::start(*uri);
  if (!connector.ok()) return connector.take_status();
  source_.reset();  // a finished earlier attempt
  // Set again at stop-and-copy; until then a failure has no VM of its own to resume.
  was_running_ = false;
  source_ = std::make_unique<migration::SourceMigration>(
      std::move(connector).value(), std::string(kMachineType), registry_,
      machine_.memory().ram_blocks(), params_, *this);
  source_->start();
  return Json::object();
}

Json MigrationControl::query_migrate() const {
  Json blocked = Json::object();
  if (!blockers_.empty()) blocked = Json{{"blocked-reasons", blockers_}};
  if (destination_ && !source_)
    return Json{{"status", migration::qmp_name(destination_->status())}};
  if (!source_) return blocked;
  migration::MigrationStats s = source_->stats();
  Json reply = {{"status", migration::qmp_name(s.status)}};
  if (s.status == migration::MigrationStatus::kNone) return reply;
  reply["total-time"] = s.total_time_ms;
  reply["setup-time"] = s.setup_time_ms;
  if (s.status == migration::MigrationStatus::kCompleted) reply["downtime"] = s.downtime_ms;
  else reply["expected-downtime"] = s.expected_downtime_ms;
  reply["ram"] = {{"transferred", s.transferred},     {"remaining", s.ram_remaining},
                  {"total", s.ram_total},             {"normal", s.ram_normal_pages},
                  {"duplicate", s.ram_zero_pages},    {"dirty-sync-count", s.dirty_sync_count},
                  {"mbps", s.mbps},                   {"page-size", 4096},
                  {"dirty-pages-rate", s.dirty_pages_rate}};
  // Per device, in microseconds: quiesce (drain shown apart, and included), save, its
  // transfer-us, bytes, and the destination's load time once the return path reported it.
  // transfer-us is apportioned, not measured per device: the device records go out in one
  // write, timed from after the last RAM pass left (final-ram-us, apart) until the device
  // records, EOF and vmdesc are flushed; each device gets that time's share of its bytes.
  uint64_t device_bytes = 0;
  for (const migration::DeviceTiming& d : s.devices) device_bytes += d.bytes;
  Json devices = Json::array();
  for (const migration::DeviceTiming& d : s.devices) {
    int64_t transfer_ns =
        device_bytes == 0 ? 0
                          : static_cast<int64_t>(static_cast<double>(s.device_transfer_ns) *
                                                 static_cast<double>(d.bytes) /
                                                 static_cast<double>(device_bytes));
    Json dev = {{"name", d.idstr},         {"quiesce-us", d.quiesce_ns / 1000},
                {"drain-us", d.drain_ns / 1000}, {"save-us", d.save_ns / 1000},
                {"transfer-us", transfer_ns / 1000}, {"bytes", d.bytes}};
    if (d.load_ns >= 0) dev["load-us"] = d.load_ns / 1000;
    devices.push_back(std::move(dev));
  }
  reply["device-breakdown"] = {{"save-ms", s.device_save_ms},
                               {"final-ram-us", s.final_ram_ns / 1000},
                               {"transfer-us", s.device_transfer_ns / 1000},
                               {"devices", std::move(devices)}};
  if (!s.error.empty()) reply["error-desc"] = s.error;
  if (!blockers_.empty()) reply["blocked-reasons"] = blockers_;
  return reply;
}

Status MigrationControl::register_qmp_commands(QmpServer& qmp) {
  qmp_ = &qmp;
  FERRY_RETURN_IF_ERROR(qmp.add_command("migrate", [this](const Json& args) { return migrate(args); }));
  FERRY_RETURN_IF_ERROR(qmp.add_command("query-migrate", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    return query_migrate();
  }));
  FERRY_RETURN_IF_ERROR(qmp.add_command("migrate_cancel", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    if (source_) source_->cancel();
    return Json::object();
  }));
  FERRY_RETURN_IF_ERROR(qmp.add_command("migrate-incoming", [this](const Json& args) -> Result<Json> {
    QmpArgs a(args);
    auto uri = a.string("uri");
    if (!uri.ok()) return uri.take_status();
    FERRY_RETURN_IF_ERROR(a.finish());
    if (machine_.run_state() != RunState::kInMigrate)
      return Error(ErrorCode::kFailedPrecondition,
                   "'-incoming' was not specified on the command line");
    if (destination_)
      return Error(ErrorCode::kFailedPrecondition,
                   "The incoming migration has already been started");
    FERRY_RETURN_IF_ERROR(listen(*uri));
    return Json::object();
  }));
  FERRY_RETURN_IF_ERROR(qmp.add_command("migrate-set-parameters", [this](const Json& args) -> Result<Json> {
    return set_parameters(args);
  }));
  FERRY_RETURN_IF_ERROR(qmp.add_command("query-migrate-parameters", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    return Json{{"max-bandwidth", params_.max_bandwidth},
                {"downtime-limit", params_.downtime_limit_ms},
                {"announce-initial", announce_params_.initial_ms},
                {"announce-max", announce_params_.max_ms},
                {"announce-rounds", announce_params_.rounds},
                {"announce-step", announce_params_.step_ms}};
  }));
  FERRY_RETURN_IF_ERROR(qmp.add_command("migrate-set-capabilities", [this](const Json& args) -> Result<Json> {
    return set_capabilities(args);
  }));
  FERRY_RETURN_IF_ERROR(qmp.add_command("query-migrate-capabilities", [this](const Json& args) -> Result<Json> {
    FERRY_RETURN_IF_ERROR(QmpArgs(args).finish());
    Json caps = Json::array();
    for (const MigrationCapability& c : kCapabilities)
      caps.push_back({{"capability", c.name}, {"state", capability_state(c)}});
    return caps;
  }));
  return {};
}

// QEMU 7.2's migration capabilities, and 8.1's switchover-ack. MIGRATION events are always
// sent (on, fixed). return-path is on by default (QEMU's default is off): on a socket the
// source then opens QEMU's return path (OPEN_RETURN_PATH, PING) as QEMU does; turned off
// it sends neither, but Ferry's switchover handshake still runs on every socket, as it is
// what keeps two copies of the VM from both running. switchover-ack (needs return-path)
// keeps the source from stopping the VM before the destination's SWITCHOVER_ACK. The rest
// is what Ferry does not have: off, and refused when asked for. Setting a capability to
// the state it has is accepted.
const std::vector<MigrationControl::MigrationCapability> MigrationControl::kCapabilities = {
    {"xbzrle", false}, {"rdma-pin-all", false}, {"auto-converge", false},
    {"zero-blocks", false}, {"compress", false}, {"events", true}, {"postcopy-ram", false},
    {"x-colo", false}, {"release-ram", false}, {"block", false},
    {"return-path", true, /*settable=*/true}, {"pause-before-switchover", false},
    {"multifd", false}, {"dirty-bitmaps", false}, {"postcopy-blocktime", false},
    {"late-block-activate", false}, {"x-ignore-shared", false}, {"validate-uuid", false},
    {"background-snapshot", false}, {"zero-copy-send", false}, {"postcopy-preempt", false},
    {"switchover-ack", false, /*settable=*/true}};

bool MigrationControl::capability_state(const MigrationCapability& c) const {
  if (c.name == "return-path") return params_.return_path;
  if (c.name == "switchover-ack") return params_.switchover_ack;
  return c.state;
}

Result<Json> MigrationControl::set_parameters(const Json& args) {
  QmpArgs a(args);
  // QEMU's members in its order; all are checked before any changes.
  auto bandwidth = a.optional_uint64("max-bandwidth");
  if (!bandwidth.ok()) return bandwidth.take_status();
  auto downtime = a.optional_uint64("downtime-limit");
  if (!downtime.ok()) return downtime.take_status();
  struct AnnounceMember {
    const char* name;     // the QMP member
    const char* checked;  // the name QEMU's range check prints
    uint64_t min, max;    // QEMU's range (its message says 0 even where min is 1)
    int64_t net::AnnounceParameters::*field;
  };
  static constexpr AnnounceMember kAnnounce[] = {
      {"announce-initial", "announce_initial", 0, 100000, &net::AnnounceParameters::initial_ms},
      {"announce-max", "announce_max", 0, 100000, &net::AnnounceParameters::max_ms},
      {"announce-rounds", "announce_rounds", 0, 1000, &net::AnnounceParameters::rounds},
      {"announce-step", "announce_step", 1, 10000, &net::AnnounceParameters::step_ms},
  };
  std::optional<uint64_t> announce[std::size(kAnnounce)];
  for (size_t i = 0; i < std::size(kAnnounce); ++i) {
    auto value = a.optional_uint64(kAnnounce[i].name);
    if (!value.ok()) return value.take_status();
    announce[i] = *value;
  }
  FERRY_RETURN_IF_ERROR(a.finish());
  if (*downtime && **downtime > 2000000)
    return Error(ErrorCode::kInvalidArgument,
                 "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * "
                 "1000) ms");
  for (size_t i = 0; i < std::size(kAnnounce); ++i) {
    // A negative number arrives modulo 2^64, so it is out of range too (QEMU's words).
    const AnnounceMember& m = kAnnounce[i];
    if (announce[i] && (*announce[i] < m.min || *announce[i] > m.max))
      return Error(ErrorCode::kInvalidArgument, "Parameter '{}' expects a value between 0 and {}",
                   m.checked, m.max);
  }
  if (*bandwidth) params_.max_bandwidth = **bandwidth;
  if (*downtime) params_.downtime_limit_ms = **downtime;
  for (size_t i = 0; i < std::size(kAnnounce); ++i)
    if (announce[i]) announce_params_.*kAnnounce[i].field = static_cast<int64_t>(*announce[i]);
  return Json::object();
}

Result<Json> MigrationControl::set_capabilities(const Json& args) {
  QmpArgs a(args);
  auto list = a.optional_array("capabilities");
  if (!list.ok()) return list.take_status();
  FERRY_RETURN_IF_ERROR(a.finish());
  if (!*list) return Error(ErrorCode::kInvalidArgument, "Parameter 'capabilities' is missing");
  if (source_ && !source_->finished())
    return Error(ErrorCode::kFailedPrecondition,
                 "There's a migration process in progress");
  // Checked as a whole before anything changes.
  bool return_path = params_.return_path, switchover_ack = params_.switchover_ack;
  for (const Json& item : **list) {
    if (!item.is_object())
      return Error(ErrorCode::kInvalidArgument,
                   "Invalid parameter type for 'capabilities[0]', expected: object");
    QmpArgs entry(item);
    auto name = entry.string("capability");
    if (!name.ok()) return name.take_status();
    auto state = entry.boolean("state");
    if (!state.ok()) return state.take_status();
    FERRY_RETURN_IF_ERROR(entry.finish());
    const MigrationCapability* known = nullptr;
    for (const MigrationCapability& c : kCapabilities)
      if (c.name == *name) known = &c;
    if (!known)
      return Error(ErrorCode::kInvalidArgument, "Parameter 'capability' does not accept value '{}'",
                   *name);
    if (known->name == "return-path") {
      return_path = *state;
    } else if (known->name == "switchover-ack") {
      switchover_ack = *state;
    } else if (*state != known->state) {
      return Error(ErrorCode::kInvalidArgument,
                   "Migration capability '{}' is always {} in Ferry", *name,
                   known->state ? "on" : "off (not supported)");
    }
  }
  if (switchover_ack && !return_path)
    return Error(ErrorCode::kInvalidArgument,
                 "Capability 'switchover-ack' requires capability 'return-path'");
  params_.return_path = return_path;
  params_.switchover_ack = switchover_ack;
  // A destination still waiting for its source acks (or not) as set now.
  if (destination_ && !destination_->finished()) destination_->set_switchover_ack(switchover_ack);
  return Json::object();
}

}  // namespace ferry::vm
