#include "migration/destination.h"

#include <fmt/format.h>

#include "migration/ram_section.h"
#include "migration/return_path.h"
#include "migration/stream.h"
#include "migration/stream_reader.h"
#include "migration/wire.h"

namespace ferry::migration {

DestinationMigration::DestinationMigration(std::unique_ptr<Listener> listener,
                                           std::string machine_type, SectionRegistry& registry,
                                           std::vector<memory::RamBlock*> ram,
                                           DestinationHooks& hooks, bool switchover_ack)
    : listener_(std::move(listener)),
      machine_type_(std::move(machine_type)),
      registry_(registry),
      ram_(std::move(ram)),
      hooks_(hooks),
      switchover_ack_(switchover_ack) {}

DestinationMigration::~DestinationMigration() {
  stop();
  if (thread_.joinable()) thread_.join();
}

void DestinationMigration::stop() {
  std::lock_guard lock(mutex_);
  if (finished()) return;
  stopping_ = true;
  if (channel_) channel_->interrupt();
  else listener_->interrupt();
}

void DestinationMigration::start() {
  thread_ = std::thread([this] { run(); });
}

MigrationStatus DestinationMigration::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

void DestinationMigration::run() {
  auto channel = listener_->accept();
  Status st;
  if (!channel.ok()) {
    st = channel.take_status();
  } else {
    {
      std::lock_guard lock(mutex_);
      status_ = MigrationStatus::kActive;
      channel_ = channel->get();
      if (stopping_) channel_->interrupt();  // stop() came between accept and here
    }
    hooks_.status_changed(MigrationStatus::kActive);
    st = receive(**channel);
    std::lock_guard lock(mutex_);
    channel_ = nullptr;
    (void)(*channel)->close();
  }
  {
    std::lock_guard lock(mutex_);
    status_ = st.ok() ? MigrationStatus::kCompleted : MigrationStatus::kFailed;
  }
  hooks_.status_changed(st.ok() ? MigrationStatus::kCompleted : MigrationStatus::kFailed);
  if (!st.ok()) hooks_.failed(st);
  finished_.store(true, std::memory_order_release);
}

// The return path's commands in the stream (QEMU's OPEN_RETURN_PATH and PING), answered
// on the connection as QEMU's destination does.
class DestinationMigration::ReturnPathCommands final : public StreamCommandHandler {
 public:
  ReturnPathCommands(DestinationMigration& migration, Channel& channel)
      : migration_(migration), channel_(channel) {}

  bool handles(uint16_t cmd) const override {
    return cmd == wire::kCmdOpenReturnPath || cmd == wire::kCmdPing;
  }

  Status command(uint16_t cmd, std::span<const uint8_t> data, uint64_t at) override {
    auto value = check_return_path_command(cmd, data, at);
    if (!value.ok()) return value.take_status();
    if (cmd == wire::kCmdOpenReturnPath) {
      if (open_)
        return Error(ErrorCode::kCorrupt,
                     "OPEN_RETURN_PATH at offset {}: the return path is already open", at);
      open_ = true;
      // QEMU 8.1: with no section holding the switchover, the ack goes at once.
      if (migration_.switchover_ack_.load(std::memory_order_acquire)) {
        migration_.switchover_holds_ = migration_.hooks_.switchover_holds();
        return migration_.approve_switchover(channel_, /*hold_released=*/false);
      }
      return {};
    }
    if (!open_)  // QEMU's refusal, with the offset
      return Error(ErrorCode::kCorrupt,
                   "PING (0x{:x}) received with no return path (command at offset {})", *value,
                   at);
    return send_return_path_message(channel_, ReturnPathMessage::pong(*value))
        .prepend_message("return path: answering PING");
  }

 private:
  DestinationMigration& migration_;
  Channel& channel_;
  bool open_ = false;
};

Status DestinationMigration::approve_switchover() {
  Channel* channel = nullptr;
  {
    std::lock_guard lock(mutex_);
    channel = channel_;
  }
  if (!channel || !switchover_ack_.load(std::memory_order_acquire)) return {};
  return approve_switchover(*channel, /*hold_released=*/true);
}

Status DestinationMigration::approve_switchover(Channel& channel, bool hold_released) {
  if (hold_released && switchover_holds_ > 0) --switchover_holds_;
  if (switchover_holds_ > 0 || switchover_acked_) return {};
  switchover_acked_ = true;
  return send_return_path_message(channel, ReturnPathMessage::of(wire::kRpSwitchoverAck))
      .prepend_message("return path: sending SWITCHOVER_ACK");
}

Status DestinationMigration::receive(Channel& channel) {
  const bool socket = has_return_path(channel);
  StreamReader reader(channel);
  RamLoader ram(ram_);
  LoadReport report;
  ReturnPathCommands commands(*this, channel);
  Status st = load_stream(reader, machine_type_, registry_, ram, &report,
                          socket ? StreamEnd::kConnectionStaysOpen : StreamEnd::kEndOfInput,
                          socket ? &commands : nullptr);
  // Best effort: a cut connection is the source's news already.
  auto say = [&](const ReturnPathMessage& m) {
    if (socket) (void)send_return_path_message(channel, m);
  };
  if (!st.ok()) {
    say(ReturnPathMessage::load_failed(st.to_string()));
    say(ReturnPathMessage::shut(1));  // QEMU's end of the return path: the load failed
    return st;
  }
  for (const SectionLoadTime& t : report.device_load_times)
    say(ReturnPathMessage::load_time(t.idstr, t.ns));
  say(ReturnPathMessage::of(wire::kRpFerryLoaded));
  // The switchover handshake (source.cc, switch_over): nothing starts before the source's
  // FERRY_GO, which it sends only when it can no longer resume the VM itself.
  if (socket) FERRY_RETURN_IF_ERROR(await_go(reader));
  std::string state = hooks_.loaded();
  say(ReturnPathMessage::of(state == "running" ? wire::kRpFerryRunning : wire::kRpFerryPaused));
  say(ReturnPathMessage::shut(0));
  return {};
}

Status DestinationMigration::await_go(StreamReader& reader) {
  auto lost = [](Status st) {
    return st.prepend_message("the source did not confirm the switchover (cancelled, or the "
                              "connection broke); this VM does not start");
  };
  uint64_t at = reader.offset();
  uint8_t type = 0;
  uint16_t cmd = 0, len = 0;
  Status st = reader.read_u8(type, "the source's go-ahead");
  if (!st.ok()) return lost(std::move(st));
  if (type != wire::kCommand)
    return Error(ErrorCode::kCorrupt,
                 "the source sent record type 0x{:02x} at offset {} instead of its go-ahead "
                 "(command 0x{:04x} FERRY_GO); this VM does not start",
                 type, at, wire::kCmdFerryGo);
  st = reader.read_be16(cmd, "the go-ahead's command number");
  if (st.ok()) st = reader.read_be16(len, "the go-ahead's length");
  if (!st.ok()) return lost(std::move(st));
  if (cmd != wire::kCmdFerryGo)
    return Error(ErrorCode::kCorrupt,
                 "the source sent command 0x{:04x} ({}) of length {} at offset {} instead of its "
                 "go-ahead (FERRY_GO); this VM does not start",
                 cmd, command_display_name(cmd), len, at);
  std::vector<uint8_t> data(len);
  if (len > 0) {
    st = reader.read_bytes(data, "the go-ahead's data");
    if (!st.ok()) return lost(std::move(st));
  }
  auto checked = check_return_path_command(cmd, data, at);
  if (!checked.ok()) return checked.take_status().prepend_message("this VM does not start");
  return {};
}

}  // namespace ferry::migration
