// The in-process GuestBus: a guest driver calling straight into a Machine, for benchmarks
// and guest programs. Accesses are the same the qtest server performs, without the socket;
// idle() runs the machine's main loop, so device bottom halves, timers and block I/O
// completions happen while the driver waits.
//
// Threading: every call runs on the machine's main loop thread (the caller is the loop's
// owner, as in a benchmark), so no lock is needed.
#pragma once

#include "guest/guest_bus.h"
#include "vm/machine.h"

namespace ferry::vm {

class InProcessBus final : public guest::GuestBus {
 public:
  explicit InProcessBus(Machine& machine) : machine_(machine) {}

  Result<uint64_t> mmio_read(uint64_t addr, unsigned size) override;
  Status mmio_write(uint64_t addr, uint64_t value, unsigned size) override;
  Result<uint32_t> port_in(uint16_t port, unsigned size) override;
  Status port_out(uint16_t port, uint32_t value, unsigned size) override;
  Status memory_read(uint64_t addr, std::span<uint8_t> out) override;
  Status memory_write(uint64_t addr, std::span<const uint8_t> data) override;
  Status idle(std::chrono::microseconds max_wait) override;

 private:
  Machine& machine_;
};

}  // namespace ferry::vm
