// The one register-window interface: whatever answers guest loads and stores that are not
// RAM — a PCI BAR, the PCI configuration ports or ECAM, the MSI window, a range of I/O
// ports. The address space and the I/O port space dispatch to it; device models implement
// it. `offset` is relative to the window's start, `size` is 1, 2, 4 or 8 bytes, and values
// are little-endian as the guest sees them.
#pragma once

#include <cstdint>

namespace ferry::memory {

class MmioHandler {
 public:
  virtual ~MmioHandler() = default;
  virtual uint64_t read(uint64_t offset, unsigned size) = 0;
  virtual void write(uint64_t offset, uint64_t value, unsigned size) = 0;
};

}  // namespace ferry::memory
