// ferry-testdev: a small PCI Express function for black-box tests of the machine and of
// migration. It exercises everything a real device needs from the PCI layer without any
// device logic of its own:
//   BAR0 (64-bit memory, 16 KiB)
//     0x000 SCRATCH        read/write 32-bit
//     0x004 INTX           write 1 raises INTx, 0 lowers it; reads the level
//     0x008 MSIX_NOTIFY    write N to signal MSI-X vector N (pending while masked; held
//                          while the VM is stopped and sent when it runs again)
//     0x00c NOTIFY_COUNT   how many MSIX_NOTIFY writes were made (read-only)
//     0x2000 MSI-X table (8 vectors), 0x3000 PBA
//   BAR2 (I/O, 16 ports)
//     0x0 IO_SCRATCH       read/write, any width
// Vendor 0x1b36 (Red Hat's id for QEMU test devices), device 0x0105, class 0xff0000.
#pragma once

#include <cstdint>
#include <memory>

#include "hw/pci/pci_device.h"
#include "vmstate/vmstate.h"

namespace ferry::testdev {

class TestDevice : public pci::PciDevice {
 public:
  static constexpr unsigned kVectors = 8;
  static constexpr uint32_t kScratch = 0x000;
  static constexpr uint32_t kIntx = 0x004;
  static constexpr uint32_t kMsixNotify = 0x008;
  static constexpr uint32_t kNotifyCount = 0x00c;
  static constexpr uint32_t kMsixTable = 0x2000;
  static constexpr uint32_t kMsixPba = 0x3000;

  static Result<std::unique_ptr<TestDevice>> create();

  void quiesce() override { quiesced_ = true; }
  void resume() override;

 private:
  void on_reset() override;
  TestDevice();
  Status realize();

  class Registers : public pci::MmioHandler {
   public:
    explicit Registers(TestDevice& dev) : dev_(dev) {}
    uint64_t read(uint64_t offset, unsigned size) override;
    void write(uint64_t offset, uint64_t value, unsigned size) override;

   private:
    TestDevice& dev_;
  };
  class Ports : public pci::MmioHandler {
   public:
    explicit Ports(TestDevice& dev) : dev_(dev) {}
    uint64_t read(uint64_t offset, unsigned size) override;
    void write(uint64_t offset, uint64_t value, unsigned size) override;

   private:
    TestDevice& dev_;
  };

  Registers registers_{*this};
  Ports ports_{*this};
  uint32_t scratch_ = 0;
  uint32_t io_scratch_ = 0;
  uint32_t notify_count_ = 0;
  bool quiesced_ = false;    // not migrated: the machine quiesces devices by its run state
  uint8_t held_vectors_ = 0;  // MSIX_NOTIFY writes made while quiesced, one bit per vector

 public:
  // The device's whole migration story: PCI config and MSI-X state, then its registers.
  static constexpr auto vmstate() {
    return vmstate::describe<TestDevice>(
        "ferry-testdev", {.version = 1}, pci::PciDevice::vmstate_pci_device(),
        pci::PciDevice::vmstate_msix(), vmstate::field("scratch", &TestDevice::scratch_),
        vmstate::field("io_scratch", &TestDevice::io_scratch_),
        vmstate::field("notify_count", &TestDevice::notify_count_),
        vmstate::field("held_vectors", &TestDevice::held_vectors_));
  }
};

inline constexpr auto kTestDeviceState = TestDevice::vmstate();

}  // namespace ferry::testdev
