// The host bridge at 00.0: the function guests find first when they scan bus 0.
// Identity: vendor 0x1b36 (Red Hat, the vendor of QEMU's generic devices), device 0x0008
// (generic PCIe host bridge), class 0x060000 (bridge, host). No BARs, no interrupts.
#pragma once

#include "hw/pci/pci_device.h"

namespace ferry::pci {

inline constexpr uint16_t kHostBridgeVendor = 0x1b36;
inline constexpr uint16_t kHostBridgeDevice = 0x0008;
inline constexpr uint32_t kHostBridgeClass = 0x060000;

class PciHostBridge final : public PciDevice {
 public:
  PciHostBridge() : PciDevice("ferry-host-bridge", PciKind::kConventional) {
    set_ids({.vendor = kHostBridgeVendor, .device = kHostBridgeDevice,
             .class_code = kHostBridgeClass});
  }
};

}  // namespace ferry::pci
