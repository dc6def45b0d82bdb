// DmaView: guest memory as one device may reach it by DMA (QEMU's per-device bus-master
// address space). Every access asks the device's gate first, so a device whose bus
// mastering is off reaches nothing, whatever the device model forgets to check.
//
// Threading: none inside; used under the machine lock like the AddressSpace it wraps.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "memory/address_space.h"

namespace ferry::dma {

// Whether the device may master the bus right now (PCI: the command register's Bus
// Master Enable bit). Asked on every access, never cached, so migration, reset and raw
// config writes need no hook to keep the view right.
class DmaGate {
 public:
  virtual ~DmaGate() = default;
  virtual bool dma_allowed() const = 0;
};

class DmaView {
 public:
  // Not attached: every access is refused.
  DmaView() = default;
  // `memory` and `gate` are not owned and must outlive the view; `owner` names the
  // device in errors.
  DmaView(memory::AddressSpace& memory, const DmaGate& gate, std::string owner);

  bool attached() const { return memory_ != nullptr; }
  // Attached and the gate open: whether an access now can succeed at all.
  bool enabled() const { return memory_ != nullptr && gate_->dma_allowed(); }

  // As AddressSpace::read/write (RAM and MMIO; writes mark RAM dirty), refused with
  // kFailedPrecondition while the gate is shut.
  Status read(uint64_t addr, std::span<uint8_t> out) const;
  Status write(uint64_t addr, std::span<const uint8_t> data);
  // Reads RAM only: structures a device fetches for itself (descriptor lists) must not
  // make it read device registers.
  Status read_ram(uint64_t addr, std::span<uint8_t> out) const;
  // Ok when every byte of `range` is RAM (no allocation).
  Status check_ram(memory::GuestRange range) const;
  // Host iovecs for RAM ranges, appended to `out` (see AddressSpace::translate_into).
  Status translate_into(std::span<const memory::GuestRange> ranges, size_t max_iovecs,
                        std::vector<iovec>& out) const;
  // Marks bytes stored through iovecs dirty. Not gated: the bytes were stored while the
  // gate was open (the guest may have shut it since), and migration must still see them.
  Status mark_written(memory::GuestRange range);

 private:
  Status refused(uint64_t addr) const;

  memory::AddressSpace* memory_ = nullptr;
  const DmaGate* gate_ = nullptr;
  std::string owner_;
};

}  // namespace ferry::dma
