// The destination side: on its own thread, accepts the incoming connection, loads the
// whole stream into the registered sections and RAM, answering the return path's commands
// as it meets them (OPEN_RETURN_PATH, PING -> PONG, SWITCHOVER_ACK with that capability),
// then, when the channel is a socket, the switchover handshake on the return path
// (return_path.h): FERRY_LOADED (or FERRY_LOAD_FAILED and SHUT 1), the source's FERRY_GO,
// then the VM starts and FERRY_RUNNING/FERRY_PAUSED and SHUT 0 go back. Without FERRY_GO
// (a cancel, a cut) the VM never starts. While it runs the machine is in "inmigrate" and leaves device state to it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "memory/ram_block.h"
#include "migration/channel.h"
#include "migration/migration_status.h"
#include "migration/section_registry.h"
#include "migration/stream_reader.h"

namespace ferry::migration {

class DestinationHooks {
 public:
  virtual ~DestinationHooks() = default;
  // The stream loaded: start the VM (or leave it paused with -S); returns the run state
  // reached ("running" or "paused"). Called from the incoming thread; may block.
  virtual std::string loaded() = 0;
  // Loading failed; the machine reports it and exits non-zero, never running the VM.
  virtual void failed(const Status& error) = 0;
  virtual void status_changed(MigrationStatus status) = 0;
  // How many sections must approve before SWITCHOVER_ACK goes (QEMU's
  // switchover_ack_needed); each calls DestinationMigration::approve_switchover from the
  // incoming thread once ready. None needs to today.
  virtual int switchover_holds() { return 0; }
};

class DestinationMigration {
 public:
  DestinationMigration(std::unique_ptr<Listener> listener, std::string machine_type,
                       SectionRegistry& registry, std::vector<memory::RamBlock*> ram,
                       DestinationHooks& hooks, bool switchover_ack = false);
  ~DestinationMigration();
  DestinationMigration(const DestinationMigration&) = delete;
  DestinationMigration& operator=(const DestinationMigration&) = delete;

  void start();
  // Interrupts a wait for a connection or for stream bytes (the VM is quitting); the
  // incoming thread then fails and ends. The destructor calls it.
  void stop();
  bool finished() const { return finished_.load(std::memory_order_acquire); }
  MigrationStatus status() const;
  // The switchover-ack capability (QMP may set it while the destination waits for its
  // connection); read when the source opens the return path.
  void set_switchover_ack(bool on) { switchover_ack_.store(on, std::memory_order_release); }
  // A section that held the switchover is ready (incoming thread, while the stream loads):
  // the last one sends SWITCHOVER_ACK (QEMU's qemu_loadvm_approve_switchover).
  Status approve_switchover();

 private:
  void run();
  Status receive(Channel& channel);
  // Reads the source's FERRY_GO command that ends the handshake.
  Status await_go(StreamReader& reader);
  class ReturnPathCommands;
  // Sends SWITCHOVER_ACK once no hold is left; `hold_released` counts one hold down.
  Status approve_switchover(Channel& channel, bool hold_released);

  std::unique_ptr<Listener> listener_;
  std::string machine_type_;
  SectionRegistry& registry_;
  std::vector<memory::RamBlock*> ram_;
  DestinationHooks& hooks_;
  std::thread thread_;
  std::atomic<bool> finished_{false};
  mutable std::mutex mutex_;  // guards status_, channel_, stopping_
  MigrationStatus status_ = MigrationStatus::kNone;
  Channel* channel_ = nullptr;  // the accepted connection while it is open
  bool stopping_ = false;
  std::atomic<bool> switchover_ack_;
  int switchover_holds_ = 0;       // incoming thread only
  bool switchover_acked_ = false;  // incoming thread only
};

}  // namespace ferry::migration
