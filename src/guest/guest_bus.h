// GuestBus: everything a guest program can do to the machine it runs in — MMIO and port
// I/O, guest-memory reads and writes, PCI configuration cycles, waiting for interrupts —
// and a way to let time pass while it waits for a device. Guest drivers are written against this interface only, so
// the same driver runs over a qtest socket (black-box tests, and against QEMU itself) and
// in-process (direct calls into a ferry-vm machine, for benchmarks and guest programs).
//
// Values are little-endian as the guest sees them; sizes are 1, 2, 4 or 8 bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>

#include "base/status.h"

namespace ferry::guest {

// The MSI window of x86 machines (Ferry's and QEMU's q35): a device's 32-bit write to an
// address in it is an interrupt message, its data the vector (low byte) and more.
inline constexpr uint64_t kMsiWindowBase = 0xfee00000;
inline constexpr uint64_t kMsiWindowSize = 0x100000;

// What a transport can report as an interrupt.
enum class InterruptSource {
  kMsi,   // messages written into the MSI window
  kIntx,  // INTx lines, by interrupt number (what firmware puts in the Interrupt Line register)
};

class GuestBus {
 public:
  virtual ~GuestBus() = default;

  virtual Result<uint64_t> mmio_read(uint64_t addr, unsigned size) = 0;
  virtual Status mmio_write(uint64_t addr, uint64_t value, unsigned size) = 0;
  virtual Result<uint32_t> port_in(uint16_t port, unsigned size) = 0;
  virtual Status port_out(uint16_t port, uint32_t value, unsigned size) = 0;

  virtual Status memory_read(uint64_t addr, std::span<uint8_t> out) = 0;
  virtual Status memory_write(uint64_t addr, std::span<const uint8_t> data) = 0;

  // Lets the machine make progress while the guest waits (device completions, timers):
  // an in-process bus runs the machine's main loop for at most `max_wait`; a socket bus
  // may simply return. Drivers call it between polls of completion state.
  virtual Status idle(std::chrono::microseconds max_wait) = 0;

  // ---- interrupts, as the guest's CPU receives them ---------------------------------------
  // Transports that cannot deliver interrupts refuse these with kFailedPrecondition, and
  // drivers then poll.
  //
  // Starts reporting interrupts of `source`. Call it before a device can raise them: a
  // transport may only see changes from then on (qtest interception). A qtest transport
  // reports one source per connection, as QEMU intercepts one device.
  virtual Status enable_interrupts(InterruptSource source);
  // Waits up to `timeout` for an MSI message with this data (0 returns at once), then takes
  // every message with that data received so far: how many there were (several messages
  // may coalesce, as in a local APIC's IRR), 0 when none came in time.
  virtual Result<uint32_t> wait_msi(uint32_t data, std::chrono::microseconds timeout);
  // Waits up to `timeout` for INTx line `irq` to be at `level`; returns the level it has at
  // the end (== level unless the time ran out).
  virtual Result<bool> wait_intx(unsigned irq, bool level, std::chrono::microseconds timeout);

  // PCI configuration mechanism #1 (ports 0xcf8/0xcfc), bus 0. Transports with a faster
  // path may override.
  virtual Result<uint32_t> config_read(uint8_t slot, uint8_t function, uint16_t offset,
                                       unsigned size);
  virtual Status config_write(uint8_t slot, uint8_t function, uint16_t offset, uint32_t value,
                              unsigned size);

  // Little-endian scalar helpers over memory_read/memory_write.
  Result<uint64_t> memory_load(uint64_t addr, unsigned size);
  Status memory_store(uint64_t addr, uint64_t value, unsigned size);

  // One 2-aligned little-endian 16-bit field of guest RAM read or written as ONE access,
  // for fields a device polls while the guest writes them (virtqueue indices and flags):
  // memory_write may copy byte by byte, and a device reading half an index would see a
  // value the driver never wrote. The defaults go through memory_read/memory_write, which
  // is enough for a transport that serialises every access (qtest); a bus whose device runs
  // beside the guest (in-process, another thread) overrides them with a 16-bit store.
  virtual Result<uint16_t> memory_load16(uint64_t addr);
  virtual Status memory_store16(uint64_t addr, uint16_t value);
};

}  // namespace ferry::guest
