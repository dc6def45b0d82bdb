// The guest's view of PCI bus 0, as firmware or an OS driver sees it: enumerate functions
// through configuration cycles, size and place BARs in an MMIO window the caller owns,
// enable decoding and bus mastering, walk capabilities, and program MSI-X vectors.
// Everything goes through GuestBus; nothing here knows a device model.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/status.h"
#include "guest/guest_bus.h"
#include "spec/pci.h"

namespace ferry::guest {

// Configuration-space facts: the specification's, the same the device side uses.
namespace pci_config = spec::pci;

struct PciFunction {
  uint8_t slot = 0;
  uint8_t function = 0;
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  uint32_t class_code = 0;  // base class, subclass, programming interface (24 bits)
  uint8_t revision = 0;
  uint8_t header_type = 0;  // without the multi-function bit
};

struct PciBar {
  unsigned index = 0;
  uint64_t address = 0;
  uint64_t size = 0;
  bool io = false;
  bool is_64bit = false;
  bool prefetchable = false;
};

// A bump allocator over [begin, end) for BAR addresses; each BAR is aligned to its size.
class MmioWindow {
 public:
  MmioWindow(uint64_t begin, uint64_t end) : next_(begin), end_(end) {}
  // The default window: inside the 32-bit PCI MMIO window of QEMU's q35 and of Ferry's
  // machine (0xc0000000..0xfec00000).
  static MmioWindow standard() { return MmioWindow(0xe0000000, 0xfec00000); }
  // The 64-bit window both machines leave for BARs in a VM of `ram_size` bytes: q35's
  // pci-hole64 (its default 32 GiB) from the end of RAM above 4 GiB rounded up to 1 GiB.
  // RAM of 0xb0000000 bytes or more keeps 2 GiB below 4 GiB and the rest at 4 GiB; smaller
  // RAM (and ram_size 0, "unknown") leaves the window at 4 GiB .. 36 GiB. The guest knows
  // its board's rule and its RAM size, as firmware does.
  static MmioWindow standard64(uint64_t ram_size = 0);
  Result<uint64_t> allocate(uint64_t size);

 private:
  uint64_t next_;
  uint64_t end_;
};

// Every function on bus 0 whose vendor id is not 0xffff (functions 1..7 only for
// multi-function devices).
Result<std::vector<PciFunction>> enumerate_bus0(GuestBus& bus);
// The `index`-th function (in slot order) with this 24-bit class code.
Result<PciFunction> find_function_by_class(GuestBus& bus, uint32_t class_code,
                                           unsigned index = 0);

// Sizes one BAR (writes all ones, reads back, restores); size 0 when unimplemented. For a
// 64-bit BAR the next index is its upper half.
Result<PciBar> probe_bar(GuestBus& bus, const PciFunction& fn, unsigned index);
// Sizes every memory BAR, places it in `window` and writes its address. I/O BARs are left
// unassigned (size reported, address 0).
Result<std::vector<PciBar>> assign_bars(GuestBus& bus, const PciFunction& fn, MmioWindow& window);
// Sets the command register's memory-space and bus-master bits (and INTx disable if asked).
Status enable_memory_and_bus_master(GuestBus& bus, const PciFunction& fn,
                                    bool disable_intx = false);
// Sets or clears the command register's INTx disable bit, leaving the other bits.
Status set_intx_disable(GuestBus& bus, const PciFunction& fn, bool disabled);
// The Interrupt Line register: the interrupt number firmware (on Ferry, the bus) routed
// the function's INTx pin to.
Result<uint8_t> interrupt_line(GuestBus& bus, const PciFunction& fn);
// Offset of the first capability with this id, or nothing when absent. The walk is bounded,
// so a looping list is an error, not a hang.
Result<std::optional<uint8_t>> find_capability(GuestBus& bus, const PciFunction& fn, uint8_t id);

// MSI-X as the guest programs it: the table lives in a BAR of the function.
struct MsixInfo {
  uint8_t cap_offset = 0;
  unsigned table_size = 0;  // number of vectors
  unsigned table_bar = 0;
  uint32_t table_offset = 0;
  unsigned pba_bar = 0;
  uint32_t pba_offset = 0;
};

class Msix {
 public:
  // Reads the capability; `bars` are the function's assigned BARs (from assign_bars).
  static Result<Msix> probe(GuestBus& bus, const PciFunction& fn, const std::vector<PciBar>& bars);

  const MsixInfo& info() const { return info_; }
  uint64_t table_address() const { return table_address_; }

  // Sets the enable bit (function mask cleared).
  Status enable(GuestBus& bus);
  Status disable(GuestBus& bus);
  // Programs vector `vector`'s message address and data and unmasks it (or masks it).
  Status set_vector(GuestBus& bus, unsigned vector, uint64_t address, uint32_t data,
                    bool masked = false);
  Status mask_vector(GuestBus& bus, unsigned vector, bool masked);
  // Pending bit of `vector` in the PBA.
  Result<bool> pending(GuestBus& bus, unsigned vector);

 private:
  Msix(const PciFunction& fn, const MsixInfo& info, uint64_t table, uint64_t pba)
      : fn_(fn), info_(info), table_address_(table), pba_address_(pba) {}
  Status check_vector(unsigned vector) const;
  PciFunction fn_;
  MsixInfo info_;
  uint64_t table_address_;
  uint64_t pba_address_;
};

}  // namespace ferry::guest
