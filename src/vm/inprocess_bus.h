// The in-process GuestBus: a guest driver calling straight into a Machine. Accesses are
// the ones the qtest server performs, without the socket.
//
// Two disciplines (design.md §3):
//   kLoopThread — the caller is the machine's main loop thread (a benchmark driving the
//     machine itself): no locking; idle() runs the main loop, so device bottom halves,
//     timers and block completions happen while the driver waits.
//   kVcpuThread — the caller is the vCPU thread: every device access (MMIO, port I/O,
//     anything outside RAM) takes the machine lock; guest RAM is read and written
//     directly with the race-safe helpers, marking dirty pages, without the lock (RAM
//     block 0 never moves); idle() just sleeps briefly, the main loop runs on its own.
// Interrupts come from the machine's CpuInterrupts (every MSI-window message and INTx
// level is recorded there, whatever the transport asked for): on the loop thread a wait
// runs the loop until the interrupt is there; on the vCPU thread it sleeps on the
// recorder's condition variable, without the machine lock.
#pragma once

#include <optional>

#include "guest/guest_bus.h"
#include "vm/machine.h"

namespace ferry::vm {

class InProcessBus final : public guest::GuestBus {
 public:
  enum class Discipline { kLoopThread, kVcpuThread };

  explicit InProcessBus(Machine& machine, Discipline discipline = Discipline::kLoopThread)
      : machine_(machine), discipline_(discipline) {}

  Result<uint64_t> mmio_read(uint64_t addr, unsigned size) override;
  Status mmio_write(uint64_t addr, uint64_t value, unsigned size) override;
  Result<uint32_t> port_in(uint16_t port, unsigned size) override;
  Status port_out(uint16_t port, uint32_t value, unsigned size) override;
  Status memory_read(uint64_t addr, std::span<uint8_t> out) override;
  Status memory_write(uint64_t addr, std::span<const uint8_t> data) override;
  // Ring indices and flags as one 16-bit access: a device on the main loop reads them
  // while the vCPU writes, and guest_write would store the two bytes separately.
  Result<uint16_t> memory_load16(uint64_t addr) override;
  Status memory_store16(uint64_t addr, uint16_t value) override;
  Status idle(std::chrono::microseconds max_wait) override;
  Status enable_interrupts(guest::InterruptSource source) override;
  Result<uint32_t> wait_msi(uint32_t data, std::chrono::microseconds timeout) override;
  Result<bool> wait_intx(unsigned irq, bool level, std::chrono::microseconds timeout) override;

 private:
  // The offset in RAM block 0 of [addr, addr + len) when one part of RAM (below or above
  // 4 GiB) holds all of it, else nothing.
  std::optional<uint64_t> ram(uint64_t addr, uint64_t len) const;
  // Runs `access` under the machine lock when this is the vCPU's bus.
  template <typename F>
  auto device_access(F&& access);
  // Loop thread: runs the main loop until `ready()` or the timeout.
  template <typename F>
  Status run_loop_until(F&& ready, std::chrono::microseconds timeout);

  Machine& machine_;
  Discipline discipline_;
};

}  // namespace ferry::vm
