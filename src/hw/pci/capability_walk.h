// The capability lists of a PCI function as a host walks them through configuration reads:
// the standard list from the pointer at 0x34 (when Status says there is one) and, on PCI
// Express, the extended list from 0x100. Used to find what a device advertises (the
// migration allowlists classify every capability found this way).
#pragma once

#include <cstdint>
#include <vector>

#include "hw/pci/pci_device.h"

namespace ferry::pci {

struct CapabilityEntry {
  bool extended = false;  // in the PCI Express extended list
  uint16_t id = 0;        // 8-bit ID in the standard list, 16-bit in the extended one
  uint32_t offset = 0;    // in configuration space
  bool operator==(const CapabilityEntry&) const = default;
};

// Every capability in list order, standard list first. Both walks are bounded (48 entries
// fit the standard list, 960 the extended one), so a looping or corrupt list ends.
std::vector<CapabilityEntry> walk_capabilities(const PciDevice& device);

}  // namespace ferry::pci
