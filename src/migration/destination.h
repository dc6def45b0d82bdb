// The destination side: on its own thread, accepts the incoming connection, loads the
// whole stream into the registered sections and RAM, then, when the channel is a socket,
// the switchover handshake on the return path: "loaded" (or "error <reason>"), the
// source's "go", then the VM starts and "running"/"paused" goes back. Without "go" (a
// cancel, a cut) the VM never starts. While it runs the machine is in "inmigrate" and leaves device state to it.
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
};

class DestinationMigration {
 public:
  DestinationMigration(std::unique_ptr<Listener> listener, std::string machine_type,
                       SectionRegistry& registry, std::vector<memory::RamBlock*> ram,
                       DestinationHooks& hooks);
  ~DestinationMigration();
  DestinationMigration(const DestinationMigration&) = delete;
  DestinationMigration& operator=(const DestinationMigration&) = delete;

  void start();
  // Interrupts a wait for a connection or for stream bytes (the VM is quitting); the
  // incoming thread then fails and ends. The destructor calls it.
  void stop();
  bool finished() const { return finished_.load(std::memory_order_acquire); }
  MigrationStatus status() const;

 private:
  void run();
  Status receive(Channel& channel);
  // Reads the source's "go" line that ends the handshake.
  Status await_go(StreamReader& reader);

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
};

}  // namespace ferry::migration
