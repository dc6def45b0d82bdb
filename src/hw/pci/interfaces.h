// How the PCI layer meets the machine. The PCI layer places nothing in address spaces
// and knows no interrupt controller; the machine implements these small interfaces and
// the bus calls them. All calls happen under the machine lock (design.md §3); nothing here is thread-safe
// on its own.
#pragma once

#include <cstdint>

#include "memory/mmio_handler.h"

namespace ferry::pci {

class PciDevice;

// A guest-visible register window (a BAR, the 0xcf8-0xcff config ports, the ECAM window):
// the memory layer's one handler interface, for memory and port I/O alike.
using memory::MmioHandler;

// One BAR as the machine should place it: `size` bytes of guest memory (or I/O ports when
// `is_io`) at `address`, served by `handler` (owned by the device, valid while mapped).
struct BarRegion {
  PciDevice* device = nullptr;
  int bar = 0;
  uint64_t address = 0;
  uint64_t size = 0;
  bool is_io = false;
  MmioHandler* handler = nullptr;

  bool operator==(const BarRegion&) const = default;
};

// The machine's address spaces. The bus announces every change of a BAR's effective
// mapping (address programmed, or memory/I/O decoding switched by the command register);
// an unmap always names a region announced earlier by map.
class PciHost {
 public:
  virtual ~PciHost() = default;
  virtual void map_bar(const BarRegion& region) = 0;
  virtual void unmap_bar(const BarRegion& region) = 0;
};

// Level-triggered interrupt lines (INTx after routing). The bus ORs the devices sharing a
// line and reports only changes of the line's level.
class InterruptSink {
 public:
  virtual ~InterruptSink() = default;
  virtual void set_irq(unsigned irq, bool level) = 0;
};

// A message-signalled interrupt is a 32-bit memory write issued by the device. Writes into
// the MSI window (pci_regs.h) are interrupts; the machine treats others as memory writes.
class MsiSink {
 public:
  virtual ~MsiSink() = default;
  virtual void write(uint64_t address, uint32_t data) = 0;
};

}  // namespace ferry::pci
