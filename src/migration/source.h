// The source side of a live migration, on its own thread (design.md §6): connecting (the
// thread finishes opening the channel, so no peer ever blocks the caller), setup (header,
// configuration, early-setup sections, RAM START), RAM passes while the VM runs (under
// max-bandwidth in 100 ms windows a cancel cuts short) until the remaining dirty bytes at
// the measured rate fit the downtime limit, then stop-and-copy
// (the machine stops the VM and captures its devices; the last RAM pass, RAM END, the
// device sections, EOF and vmdesc follow), then the switchover handshake on the return
// path (switch_over in source.cc, return_path.h): FERRY_LOADED from the destination,
// FERRY_GO from us, FERRY_RUNNING from it. A failure before FERRY_GO leaves the VM to the
// machine to resume; after it the VM stays paused, as the destination may run it. A new
// migration can start either way.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "memory/ram_block.h"
#include "migration/channel.h"
#include "migration/migration_status.h"
#include "migration/return_path.h"
#include "migration/section_registry.h"
#include "migration/stream_writer.h"
#include "vmstate/vmdesc.h"

namespace ferry::migration {

struct MigrationParams {
  uint64_t max_bandwidth = 0;       // bytes per second; 0 = unlimited
  uint64_t downtime_limit_ms = 300;
  // The return-path capability: on a socket the source opens QEMU's return path
  // (OPEN_RETURN_PATH, PING 1) right after the configuration. Ferry's switchover handshake
  // runs on every socket regardless (it needs no command to open it).
  bool return_path = true;
  // switchover-ack: the VM is not stopped before the destination's SWITCHOVER_ACK.
  bool switchover_ack = false;
};

// One device's share of stop-and-copy: quiesce (with the part spent draining its backend
// I/O shown apart), save, bytes on the wire, and load on the destination (from the return
// path; -1 until reported).
struct DeviceTiming {
  std::string idstr;
  int64_t quiesce_ns = 0;
  int64_t drain_ns = 0;
  int64_t save_ns = 0;
  uint64_t bytes = 0;
  int64_t load_ns = -1;
};

// Device sections captured while the VM is stopped: the FULL records as they go on the
// wire, their vmdesc entries, and what each device cost.
struct DeviceCapture {
  std::vector<uint8_t> records;
  vmstate::Json vmdesc_devices = vmstate::Json::array();
  std::vector<DeviceTiming> timings;
};

// What the machine does for the migration thread. Each call comes from that thread and may
// block until the main loop has done the work.
class SourceHooks {
 public:
  virtual ~SourceHooks() = default;
  // Captures the early-setup device sections while the VM runs (sent during setup).
  virtual Result<DeviceCapture> capture_early_setup() = 0;
  // Stops the VM and captures every other device section.
  virtual Result<DeviceCapture> stop_and_capture() = 0;
  // The migration failed or was cancelled: run the VM again if it ran before.
  virtual void resume_after_failure() = 0;
  // The destination runs the VM now: the source enters postmigrate.
  virtual void completed() = 0;
  // QEMU's MIGRATION event.
  virtual void status_changed(MigrationStatus status) = 0;
};

struct MigrationStats {
  MigrationStatus status = MigrationStatus::kNone;
  std::string error;
  int64_t total_time_ms = 0;
  int64_t setup_time_ms = 0;
  int64_t downtime_ms = 0;           // source stop -> destination running
  int64_t expected_downtime_ms = 0;
  uint64_t transferred = 0;          // bytes written to the channel
  uint64_t ram_total = 0;
  uint64_t ram_remaining = 0;
  uint64_t ram_normal_pages = 0;
  uint64_t ram_zero_pages = 0;
  uint64_t dirty_sync_count = 0;
  uint64_t dirty_pages_rate = 0;     // pages dirtied per second between the last two syncs
  double mbps = 0;
  int64_t device_save_ms = 0;        // capture of device state while stopped
  int64_t final_ram_ns = 0;          // writing the last RAM pass (RAM END) out, while stopped
  int64_t device_transfer_ns = 0;    // then writing the device records, EOF and vmdesc out
  std::vector<DeviceTiming> devices;  // per-device breakdown of stop-and-copy
};

class SourceMigration {
 public:
  // The thread opens the channel (connector->finish()); a cancel interrupts that too.
  SourceMigration(std::unique_ptr<OutgoingConnector> connector, std::string machine_type,
                  SectionRegistry& registry, std::vector<memory::RamBlock*> ram,
                  MigrationParams params, SourceHooks& hooks);
  SourceMigration(std::unique_ptr<Channel> channel, std::string machine_type,
                  SectionRegistry& registry, std::vector<memory::RamBlock*> ram,
                  MigrationParams params, SourceHooks& hooks);
  // Cancels, interrupts the channel even past the point of no return (the process is
  // going away: an exec: command is not waited for), and joins.
  ~SourceMigration();
  SourceMigration(const SourceMigration&) = delete;
  SourceMigration& operator=(const SourceMigration&) = delete;

  void start();
  // Thread-safe; the status becomes cancelling and the migration thread stops at its
  // next step (a connect, a throttle wait, a RAM pass or a blocked read/write ends at
  // once). No effect once the migration ended or the destination confirmed that it runs
  // the VM.
  void cancel();
  bool finished() const { return finished_.load(std::memory_order_acquire); }
  MigrationStats stats() const;

 private:
  void run();
  Status migrate();
  void set_status(MigrationStatus status);
  void set_status_locked(MigrationStatus status);  // control_mutex_ held
  // Moves to a phase (active, device) unless a cancel came first; false then.
  bool advance(MigrationStatus status);
  // Sleeps until `deadline`; false (at once) when the migration is cancelled.
  bool wait_unless_cancelled(std::chrono::steady_clock::time_point deadline);
  Status switch_over(int64_t stop_ns);
  // OPEN_RETURN_PATH and PING 1, as QEMU sends them after the header.
  void open_return_path(StreamWriter& w);
  // The next return-path message the caller must act on: PONGs are checked against the
  // pings sent, load times recorded, SWITCHOVER_ACK noted (and returned), and SHUT or
  // FERRY_LOAD_FAILED become the error.
  Result<ReturnPathMessage> next_return_path_message();
  // Reads the return path until SWITCHOVER_ACK came (migration thread; cancel interrupts).
  Status await_switchover_ack();
  // FERRY_LOAD_TIME from the destination: fills the device's load time.
  void record_load_time(std::string_view idstr, int64_t ns);
  // Closes the channel once; for exec: the command's exit status.
  Status close_channel();
  // Interrupts the connect or the channel's I/O (channel_mutex_ taken here).
  void interrupt_io();

  std::unique_ptr<OutgoingConnector> connector_;
  std::unique_ptr<Channel> channel_;  // set by the thread once connected (channel_mutex_)
  std::string machine_type_;
  SectionRegistry& registry_;
  std::vector<memory::RamBlock*> ram_;
  MigrationParams params_;
  SourceHooks& hooks_;
  std::thread thread_;
  // Orders status transitions (and their events) against cancel(); the throttle waits on
  // cancel_cv_ under it.
  std::mutex control_mutex_;
  std::condition_variable cancel_cv_;
  std::atomic<bool> cancel_requested_{false};  // written under control_mutex_
  bool committed_ = false;  // past the point of no return: cancel() is ignored (control_mutex_)
  std::atomic<bool> switched_over_{false};  // FERRY_GO sent: the VM is the destination's
  // The return path, on a socket (migration thread only, as are the two below).
  std::unique_ptr<ReturnPathReader> return_path_;
  std::vector<uint32_t> pings_sent_;  // values whose PONG has not come yet
  bool switchover_acked_ = false;
  std::atomic<bool> finished_{false};
  // Guards the connector's hand-over of channel_ against interrupt_io(); FdChannel's
  // interrupt() is safe against its close() by itself.
  std::mutex channel_mutex_;
  bool channel_closed_ = false;
  mutable std::mutex stats_mutex_;
  MigrationStats stats_;
};

}  // namespace ferry::migration
