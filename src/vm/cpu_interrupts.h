// What the guest's CPU has been sent, for guest programs that wait for interrupts instead of
// polling: MSI messages written into the MSI window, and the level of every INTx line.
//
// MSI messages are kept per data value (the x86 vector is its low byte) until the guest
// takes them, as a local APIC's IRR holds a vector until it is acknowledged; a count rather
// than a bit, so a taker can see how many messages coalesced. INTx lines are levels.
//
// Threads: device code delivers on the main loop thread (machine lock held); the vCPU takes
// and waits without the machine lock, so this object has its own small mutex, and nothing
// else is taken under it (lock order: machine lock, then this). The recorder is not
// migrated: a guest waiting for an interrupt bounds its wait and looks at the device again.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>

namespace ferry::vm {

class CpuInterrupts {
 public:
  using Deadline = std::chrono::steady_clock::time_point;

  // Main loop thread.
  void deliver_msi(uint32_t data);
  void set_line(unsigned irq, bool level);
  // Forgets every message not taken yet (system_reset: the APIC resets too). Line levels
  // stay: they follow the devices, which lower their lines as they reset.
  void reset();

  // Any thread. Takes every message with this data received so far: how many there were.
  uint64_t take_msi(uint32_t data);
  bool line(unsigned irq) const;
  // Messages delivered since creation (statistics; never reset by take_msi).
  uint64_t msi_delivered() const;

  // Blocking forms for the vCPU thread; they return when the condition holds or at
  // `deadline`. The main loop must be running on its own thread.
  uint64_t wait_msi(uint32_t data, Deadline deadline);
  bool wait_line(unsigned irq, bool level, Deadline deadline);

 private:
  // Both with mutex_ held: take (and clear) the messages of `data`; a line's level.
  uint64_t take_locked(uint32_t data);
  bool line_locked(unsigned irq) const;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<uint32_t, uint64_t> pending_;  // data -> messages not yet taken
  std::map<unsigned, bool> lines_;
  uint64_t delivered_ = 0;
};

}  // namespace ferry::vm
