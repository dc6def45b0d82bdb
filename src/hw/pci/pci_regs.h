// The PCI layer's constants: the specification's facts (spec/pci.h, shared with the guest)
// under ferry::pci, and what this machine adds (ECAM, the MSI window, slots).
#pragma once

#include <cstdint>

#include "spec/pci.h"

namespace ferry::pci {

// Every name of the specification, as pci::kCommand etc.
using namespace ::ferry::spec::pci;  // NOLINT(google-build-using-namespace)

// What a configuration read of `size` bytes returns where nothing answers: all ones.
inline constexpr uint32_t all_ones(unsigned size) {
  return size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
}

// ---- the machine's view ---------------------------------------------------------------------
// ECAM: bus << 20 | device << 15 | function << 12 | register. One bus is 1 MiB.
inline constexpr uint64_t kEcamBusSize = 1u << 20;
// MSI writes to this window are interrupts (design.md §7); elsewhere they are memory writes.
inline constexpr uint64_t kMsiWindowBase = 0xfee00000;
inline constexpr uint64_t kMsiWindowSize = 0x100000;

inline constexpr int kSlotCount = 32;
inline constexpr int kFunctionCount = 8;

}  // namespace ferry::pci
