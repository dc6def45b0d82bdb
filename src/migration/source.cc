#include "migration/source.h"

#include <algorithm>
#include <chrono>
#include <functional>

#include "base/byte_order.h"
#include "migration/ram_section.h"
#include "migration/return_path.h"
#include "migration/stream.h"
#include "migration/stream_writer.h"
#include "migration/wire.h"

namespace ferry::migration {

namespace {

using Clock = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

constexpr uint64_t kChunkBytes = 16ull << 20;  // one PART record's page budget
constexpr int kMaxPasses = 30;                 // then stop-and-copy regardless
// Under max-bandwidth, RAM goes out in windows of this much time's worth of bytes (QEMU
// rate-limits in 100 ms windows too), so a cancel never waits long for the throttle.
constexpr auto kThrottleWindow = std::chrono::milliseconds(100);

uint64_t dirty_bytes(const std::vector<memory::RamBlock*>& ram) {
  uint64_t pages = 0;
  for (memory::RamBlock* b : ram) pages += b->dirty().count();
  return pages * memory::kPageSize;
}

// The live save's steps (stream.h's SaveRunner), as closures over the engine's state.
class LiveSaveRunner final : public SaveRunner {
 public:
  Result<DeviceRecords> device_records(SavePhase phase) override { return devices(phase); }
  Status configuration_written(StreamWriter& w) override { return configuration_written_fn(w); }
  Status setup_written(StreamWriter& w) override { return setup_written_fn(w); }
  Status iterate(StreamWriter& w, IterativeSections& sections) override {
    return iterate_fn(w, sections);
  }
  Status iterative_complete_written(StreamWriter& w) override {
    return iterative_complete_written_fn(w);
  }

  std::function<Result<DeviceRecords>(SavePhase)> devices;
  std::function<Status(StreamWriter&)> configuration_written_fn;
  std::function<Status(StreamWriter&)> setup_written_fn;
  std::function<Status(StreamWriter&, IterativeSections&)> iterate_fn;
  std::function<Status(StreamWriter&)> iterative_complete_written_fn;
};

}  // namespace

SourceMigration::SourceMigration(std::unique_ptr<Channel> channel, std::string machine_type,
                                 SectionRegistry& registry, std::vector<memory::RamBlock*> ram,
                                 MigrationParams params, SourceHooks& hooks)
    : SourceMigration(std::make_unique<OutgoingConnector>(std::move(channel)),
                      std::move(machine_type), registry, std::move(ram), params, hooks) {}

SourceMigration::SourceMigration(std::unique_ptr<OutgoingConnector> connector,
                                 std::string machine_type, SectionRegistry& registry,
                                 std::vector<memory::RamBlock*> ram, MigrationParams params,
                                 SourceHooks& hooks)
    : connector_(std::move(connector)),
      machine_type_(std::move(machine_type)),
      registry_(registry),
      ram_(std::move(ram)),
      params_(params),
      hooks_(hooks) {}

SourceMigration::~SourceMigration() {
  cancel();
  interrupt_io();
  if (thread_.joinable()) thread_.join();
}

void SourceMigration::start() {
  set_status(MigrationStatus::kSetup);
  thread_ = std::thread([this] { run(); });
}

void SourceMigration::cancel() {
  {
    std::lock_guard lock(control_mutex_);
    // Nothing to cancel once the migration ended or the destination confirmed it runs.
    if (committed_ || cancel_requested_.load(std::memory_order_acquire)) return;
    {
      std::lock_guard stats_lock(stats_mutex_);
      if (is_final(stats_.status)) return;
    }
    cancel_requested_.store(true, std::memory_order_release);
    set_status_locked(MigrationStatus::kCancelling);
  }
  cancel_cv_.notify_all();  // a throttle wait ends now
  // Unblock a connect, a write to a peer that stopped reading, or the wait for the return
  // path.
  interrupt_io();
}

void SourceMigration::interrupt_io() {
  std::lock_guard lock(channel_mutex_);
  if (!channel_) connector_->interrupt();
  else channel_->interrupt();  // also ends close() waiting for an exec: command
}

bool SourceMigration::wait_unless_cancelled(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(control_mutex_);
  return !cancel_cv_.wait_until(
      lock, deadline, [this] { return cancel_requested_.load(std::memory_order_acquire); });
}

Status SourceMigration::close_channel() {
  {
    std::lock_guard lock(channel_mutex_);
    if (!channel_ || channel_closed_) return {};
    channel_closed_ = true;
  }
  // Outside the lock: an interrupt must reach a close that waits for an exec: command.
  return channel_->close();
}

MigrationStats SourceMigration::stats() const {
  std::lock_guard lock(stats_mutex_);
  return stats_;
}

void SourceMigration::set_status(MigrationStatus status) {
  std::lock_guard lock(control_mutex_);
  set_status_locked(status);
}

void SourceMigration::set_status_locked(MigrationStatus status) {
  {
    std::lock_guard lock(stats_mutex_);
    stats_.status = status;
  }
  hooks_.status_changed(status);  // under control_mutex_: events come in transition order
}

bool SourceMigration::advance(MigrationStatus status) {
  std::lock_guard lock(control_mutex_);
  if (cancel_requested_.load(std::memory_order_acquire)) return false;
  set_status_locked(status);
  return true;
}

void SourceMigration::run() {
  int64_t start = now_ns();
  Status st = migrate();
  {
    std::lock_guard lock(stats_mutex_);
    stats_.total_time_ms = (now_ns() - start) / 1'000'000;
  }
  if (!st.ok()) {
    {
      std::lock_guard lock(stats_mutex_);
      stats_.error = st.to_string();
    }
    // Nothing is left to say to the peer: an exec: command is ended, not waited for.
    interrupt_io();
    (void)close_channel();
    // After "go" the VM may run on the destination: never resume it here (switch_over).
    if (!switched_over_.load(std::memory_order_acquire)) hooks_.resume_after_failure();
    std::lock_guard lock(control_mutex_);
    set_status_locked(cancel_requested_.load(std::memory_order_acquire)
                          ? MigrationStatus::kCancelled
                          : MigrationStatus::kFailed);
  }
  finished_.store(true, std::memory_order_release);
}

Status SourceMigration::migrate() {
  if (!registry_.ram()) return Error(ErrorCode::kFailedPrecondition, "no RAM section registered");
  auto cancelled = [] { return Error(ErrorCode::kFailedPrecondition, "migration cancelled"); };
  auto check_cancel = [&]() -> Status {
    if (cancel_requested_.load(std::memory_order_acquire)) return cancelled();
    return {};
  };
  int64_t start = now_ns();
  auto connected = connector_->finish();
  if (!connected.ok()) return connected.take_status();
  {
    std::lock_guard lock(channel_mutex_);
    channel_ = std::move(*connected);
  }
  FERRY_RETURN_IF_ERROR(check_cancel());  // a cancel that found no channel yet
  // QEMU fails a migration whose return path cannot open; Ferry's return-path default
  // applies to sockets only, but an ack nobody can send would hold the source forever.
  if (params_.switchover_ack && !has_return_path(*channel_))
    return Error(ErrorCode::kFailedPrecondition,
                 "switchover-ack needs the return path, and {} carries none (a socket does)",
                 channel_->name());
  StreamWriter w(*channel_);
  if (has_return_path(*channel_)) return_path_ = std::make_unique<ReturnPathReader>(*channel_);
  RamSaver saver(ram_);
  saver.set_stop_flag(&cancel_requested_);
  RamSection ram_section(saver);
  LiveSaveRunner runner;
  int64_t stop_ns = 0, ram_start_ns = 0, transfer_start = 0;

  auto update = [&] {
    std::lock_guard lock(stats_mutex_);
    stats_.transferred = w.position();
    stats_.ram_remaining = saver.remaining() * memory::kPageSize;
    stats_.ram_normal_pages = saver.stats().pages;
    stats_.ram_zero_pages = saver.stats().zero_pages;
    double secs = static_cast<double>(now_ns() - start) / 1e9;
    stats_.mbps = secs > 0 ? static_cast<double>(w.position()) * 8 / 1e6 / secs : 0;
  };

  // Device records: the early-setup ones while the VM runs; the rest once it stopped
  // (stop-and-copy), captured before the last RAM pass goes out.
  runner.devices = [&](SavePhase phase) -> Result<DeviceRecords> {
    if (phase == SavePhase::kSetup) {
      auto early = hooks_.capture_early_setup();
      if (!early.ok()) return early.take_status();
      FERRY_RETURN_IF_ERROR(check_cancel());
      return DeviceRecords{std::move(early->records), std::move(early->vmdesc_devices)};
    }
    if (!advance(MigrationStatus::kDevice)) return cancelled();
    stop_ns = now_ns();
    auto capture = hooks_.stop_and_capture();
    if (!capture.ok()) return capture.take_status();
    FERRY_RETURN_IF_ERROR(check_cancel());  // the VM stopped, but resumes now
    {
      std::lock_guard lock(stats_mutex_);
      stats_.device_save_ms = (now_ns() - stop_ns) / 1'000'000;
      stats_.devices = capture->timings;
    }
    // The last RAM pass and the device records are timed apart, each up to its own flush,
    // so the device transfer time holds no RAM bytes.
    ram_start_ns = now_ns();
    return DeviceRecords{std::move(capture->records), std::move(capture->vmdesc_devices)};
  };

  // QEMU opens the return path right after the configuration, before any section.
  runner.configuration_written_fn = [&](StreamWriter& out) -> Status {
    if (return_path_ && params_.return_path) open_return_path(out);
    return {};
  };

  runner.setup_written_fn = [&](StreamWriter& out) -> Status {
    FERRY_RETURN_IF_ERROR(out.flush());
    {
      std::lock_guard lock(stats_mutex_);
      stats_.setup_time_ms = (now_ns() - start) / 1'000'000;
      for (memory::RamBlock* b : ram_) stats_.ram_total += b->size();
    }
    if (!advance(MigrationStatus::kActive)) return cancelled();
    return {};
  };

  // Iterate while the VM runs, until what is left fits the downtime limit. Under
  // max-bandwidth each PART record carries one window's worth of bytes, flushed, and the
  // thread then waits (interruptibly) until those bytes fit the limit.
  runner.iterate_fn = [&](StreamWriter& out, IterativeSections& sections) -> Status {
    const uint64_t bandwidth = params_.max_bandwidth;
    // The window's bytes are computed from a bandwidth already capped at what fills a
    // whole chunk, so no limit the user can set (up to 2^64 - 1, as QEMU's -1) overflows
    // into a tiny chunk.
    constexpr uint64_t kChunkFillingBandwidth = kChunkBytes * 1000 / kThrottleWindow.count();
    const uint64_t chunk =
        bandwidth == 0 ? kChunkBytes
                       : std::clamp<uint64_t>(std::min(bandwidth, kChunkFillingBandwidth) *
                                                  kThrottleWindow.count() / 1000,
                                              memory::kPageSize, kChunkBytes);
    Clock::time_point window_start = Clock::now();
    uint64_t window_from = out.position();
    int64_t last_sync = now_ns();
    for (int pass = 0;; ++pass) {
      uint64_t found = sections.sync() / memory::kPageSize;
      {
        std::lock_guard lock(stats_mutex_);
        ++stats_.dirty_sync_count;
        // Pages the guest dirtied since the previous sync (the first pass is everything).
        int64_t since = now_ns() - last_sync;
        if (pass > 0 && since > 0)
          stats_.dirty_pages_rate = static_cast<uint64_t>(static_cast<double>(found) * 1e9 /
                                                          static_cast<double>(since));
      }
      last_sync = now_ns();
      int64_t pass_start = now_ns();
      uint64_t pass_bytes_start = out.position();
      for (bool done = false; !done;) {
        FERRY_RETURN_IF_ERROR(check_cancel());
        auto sent = sections.iterate(out, chunk);
        if (!sent.ok()) return sent.take_status();
        done = *sent;
        if (bandwidth > 0) {
          FERRY_RETURN_IF_ERROR(out.flush());  // the limit counts bytes that left
          auto window_bytes = static_cast<double>(out.position() - window_from);
          auto due = window_start + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(
                                            window_bytes / static_cast<double>(bandwidth)));
          // A window that went out slower than the limit earns no credit for the next one.
          if (due > Clock::now() && !wait_unless_cancelled(due)) return cancelled();
          window_start = std::max(due, Clock::now());
          window_from = out.position();
        }
        update();
      }
      FERRY_RETURN_IF_ERROR(out.flush());
      double pass_s = std::max(1e-6, static_cast<double>(now_ns() - pass_start) / 1e9);
      double rate = static_cast<double>(out.position() - pass_bytes_start) / pass_s;
      if (rate <= 0) rate = 1e9;
      uint64_t left = dirty_bytes(ram_);
      double expected_ms = static_cast<double>(left) / rate * 1000.0;
      {
        std::lock_guard lock(stats_mutex_);
        stats_.expected_downtime_ms = static_cast<int64_t>(expected_ms);
      }
      if (left == 0 || expected_ms <= static_cast<double>(params_.downtime_limit_ms) ||
          pass + 1 >= kMaxPasses) {
        if (switchover_acked_ || !params_.switchover_ack) return {};
        // Ready to stop, but the destination has not acked: wait for it (a cancel
        // interrupts the read), then take another pass of what the guest dirtied meanwhile.
        FERRY_RETURN_IF_ERROR(await_switchover_ack());
      }
    }
  };

  runner.iterative_complete_written_fn = [&](StreamWriter& out) -> Status {
    FERRY_RETURN_IF_ERROR(out.flush());
    transfer_start = now_ns();
    return {};
  };

  FERRY_RETURN_IF_ERROR(
      run_save(w, machine_type_, registry_, ram_section, runner));  // flushed
  {
    std::lock_guard lock(stats_mutex_);
    stats_.final_ram_ns = transfer_start - ram_start_ns;
    stats_.device_transfer_ns = now_ns() - transfer_start;
  }
  update();

  if (has_return_path(*channel_)) {
    FERRY_RETURN_IF_ERROR(switch_over(stop_ns));  // measures downtime to "running"
  } else {
    {
      // Every byte is out: a cancel is honoured up to here (QEMU resumes the source on a
      // cancel that beat its completion too), and changes nothing from here on.
      std::lock_guard lock(control_mutex_);
      if (cancel_requested_.load(std::memory_order_acquire)) return cancelled();
      committed_ = true;  // nobody answers: the stream is the last word
    }
    FERRY_RETURN_IF_ERROR(channel_->shutdown_write());  // the end of the stream
    // An exec: command's exit status says whether it took the stream (a failed one leaves
    // the VM to resume here). Only the process going away interrupts this wait.
    FERRY_RETURN_IF_ERROR(close_channel());
    std::lock_guard stats_lock(stats_mutex_);
    stats_.downtime_ms = (now_ns() - stop_ns) / 1'000'000;  // to the end of the stream
  }
  (void)close_channel();
  hooks_.completed();
  set_status(MigrationStatus::kCompleted);
  return {};
}

void SourceMigration::open_return_path(StreamWriter& w) {
  // As QEMU's source does right after the header when it has a return path: open it, and
  // a ping that shows it works (its PONG is checked whenever the return path is read).
  write_command(w, wire::kCmdOpenReturnPath);
  constexpr uint32_t kFirstPing = 1;
  uint8_t value[4];
  store_be<uint32_t>(value, kFirstPing);
  write_command(w, wire::kCmdPing, value);
  pings_sent_.push_back(kFirstPing);
}

Result<ReturnPathMessage> SourceMigration::next_return_path_message() {
  for (;;) {
    auto m = return_path_->next();
    if (!m.ok()) return m;
    switch (m->type) {
      case wire::kRpPong: {
        auto it = std::find(pings_sent_.begin(), pings_sent_.end(), m->value);
        if (it == pings_sent_.end())
          return Error(ErrorCode::kCorrupt,
                       "return path: PONG 0x{:08x} answers no PING this source sent", m->value);
        pings_sent_.erase(it);
        continue;
      }
      case wire::kRpSwitchoverAck:
        switchover_acked_ = true;
        break;
      case wire::kRpShut:
        // QEMU's destination ends the return path so; a failed load says 1.
        return Error(ErrorCode::kFailedPrecondition,
                     "return path: the destination shut it with status {} before confirming{}",
                     m->value, m->value != 0 ? " (its load failed)" : "");
      case wire::kRpFerryLoadFailed:
        return Error(ErrorCode::kFailedPrecondition, "destination refused the stream: {}",
                     m->text);
      case wire::kRpFerryLoadTime:
        record_load_time(m->text, m->ns);
        continue;
      default:
        break;
    }
    return m;
  }
}

Status SourceMigration::await_switchover_ack() {
  while (!switchover_acked_) {
    auto m = next_return_path_message();
    if (!m.ok()) return m.take_status().prepend_message("waiting for SWITCHOVER_ACK");
    if (m->type != wire::kRpSwitchoverAck)
      return Error(ErrorCode::kCorrupt,
                   "return path: expected SWITCHOVER_ACK, found {} (0x{:04x}) before the VM "
                   "stopped", return_path_message_name(m->type), m->type);
  }
  return {};
}

// The switchover handshake on the return path (return_path.h):
//   destination: FERRY_LOAD_TIME per device section, then FERRY_LOADED (or
//                FERRY_LOAD_FAILED and SHUT 1)
//   source:      the FERRY_GO command
//   destination: FERRY_RUNNING or FERRY_PAUSED, then SHUT 0
// The destination starts nothing before FERRY_GO, and the source sends it only once
// nothing can cancel the migration any more. From then on the VM belongs to the
// destination: if its answer is lost, the source stays paused instead of resuming, so a
// connection broken at any byte never leaves two copies of the VM running (the stream is
// not enough: it is complete before the destination has said a word).
Status SourceMigration::switch_over(int64_t stop_ns) {
  // Anything but the answer it waits for is the destination breaking the protocol.
  auto expect = [&](std::initializer_list<uint16_t> wanted,
                    std::string_view waiting_for) -> Result<uint16_t> {
    for (;;) {
      auto m = next_return_path_message();
      if (!m.ok()) return m.take_status();
      if (m->type == wire::kRpSwitchoverAck) continue;  // late, or not asked for: harmless
      for (uint16_t w : wanted)
        if (m->type == w) return m->type;
      return Error(ErrorCode::kCorrupt, "return path: expected {}, found {} (0x{:04x})",
                   waiting_for, return_path_message_name(m->type), m->type);
    }
  };

  auto loaded = expect({wire::kRpFerryLoaded}, "FERRY_LOADED");
  if (!loaded.ok()) return loaded.take_status();
  {
    std::lock_guard lock(control_mutex_);
    if (cancel_requested_.load(std::memory_order_acquire))
      return Error(ErrorCode::kFailedPrecondition, "migration cancelled");
    committed_ = true;  // cancel() changes nothing from here on
  }
  // A failed write never reached the destination whole, and it starts only on the whole
  // command: the VM is still ours to resume.
  FERRY_RETURN_IF_ERROR(channel_->write_all(encode_command(wire::kCmdFerryGo))
                            .prepend_message("return path: telling the destination to start"));
  switched_over_.store(true, std::memory_order_release);
  auto started = expect({wire::kRpFerryRunning, wire::kRpFerryPaused},
                        "FERRY_RUNNING or FERRY_PAUSED");
  if (!started.ok())
    return started.take_status().prepend_message(
        "the destination was told to start, then did not confirm; it may be running, so this "
        "VM stays paused (cont resumes it once the destination is known to be gone)");
  {
    std::lock_guard lock(stats_mutex_);
    stats_.downtime_ms = (now_ns() - stop_ns) / 1'000'000;
  }
  // Its SHUT 0 follows at once and ends the return path, as QEMU's source waits for it.
  // The VM is the destination's already: a connection lost here changes nothing.
  (void)return_path_->next();
  return {};
}

void SourceMigration::record_load_time(std::string_view idstr, int64_t ns) {
  std::lock_guard lock(stats_mutex_);
  for (DeviceTiming& d : stats_.devices)
    if (d.idstr == idstr) d.load_ns = ns;
}

}  // namespace ferry::migration
