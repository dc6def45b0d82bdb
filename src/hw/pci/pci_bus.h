// PciBus: bus 0 with 32 slots of 8 functions, the host bridge at 00.0, configuration
// access through mechanism #1 (ports 0xcf8-0xcff) and ECAM, INTx routing with level
// sharing, and the enumeration QMP's `query-pci` reports. The bus owns its devices and is
// the only path from them to the machine (PciHost, InterruptSink, MsiSink).
//
// INTx routing: pin P of slot S drives PIRQ (S + P - 1) % 4, wired to
// PciBusOptions::pirq_irqs; like firmware would, the bus writes that number into each
// device's interrupt line register when it is plugged in.
//
// Threading: none inside; every call runs under the machine lock (design.md §3).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "hw/pci/interfaces.h"
#include "hw/pci/pci_address.h"
#include "hw/pci/pci_device.h"

namespace ferry::pci {

struct PciBusOptions {
  std::array<unsigned, 4> pirq_irqs{10, 10, 11, 11};
};

struct PciBarInfo {
  int bar = 0;
  BarType type = BarType::kMem32;
  bool prefetchable = false;
  uint64_t address = PciDevice::kUnmapped;  // effective mapping
  uint64_t size = 0;
};

// One function as `query-pci` reports it.
struct PciDeviceInfo {
  int bus = 0;
  int slot = 0;
  int function = 0;
  std::string type_name;
  uint32_t class_code = 0;
  uint16_t vendor = 0;
  uint16_t device = 0;
  uint16_t subsystem_vendor = 0;
  uint16_t subsystem = 0;
  uint8_t revision = 0;
  uint8_t pin = 0;  // 0: no INTx
  int irq = -1;     // routed interrupt number, -1 without a pin
  std::vector<PciBarInfo> bars;
};

class PciBus {
 public:
  PciBus(PciHost& host, InterruptSink& irqs, MsiSink& msi, PciBusOptions options = {});
  ~PciBus();
  PciBus(const PciBus&) = delete;
  PciBus& operator=(const PciBus&) = delete;

  // Plugs `device` in at `addr` (QEMU's SLOT[.FN]), or at the first free slot when `addr`
  // is empty. Returns the device, which the bus now owns.
  Result<PciDevice*> add(std::unique_ptr<PciDevice> device, std::string_view addr = {});

  PciDevice* find(PciAddress address) const;
  PciDevice& host_bridge() const;
  // Every function, ordered by slot and function.
  std::vector<PciDevice*> devices() const;
  std::vector<PciDeviceInfo> query() const;

  // Ports 0xcf8..0xcff: offset 0 is the address register, offsets 4..7 the data window.
  MmioHandler& config_ports() { return config_ports_; }
  static constexpr uint16_t kConfigPortsBase = kConfigAddressPort;
  static constexpr uint64_t kConfigPortsSize = 8;
  // The ECAM window, one bus (1 MiB); the machine chooses where it lives.
  MmioHandler& ecam() { return ecam_; }
  static constexpr uint64_t kEcamSize = kEcamBusSize;

  // The level the bus reports for interrupt number `irq` now.
  bool irq_level(unsigned irq) const;

 private:
  friend class PciDevice;

  class ConfigPorts final : public MmioHandler {
   public:
    explicit ConfigPorts(PciBus& bus) : bus_(bus) {}
    uint64_t read(uint64_t offset, unsigned size) override;
    void write(uint64_t offset, uint64_t value, unsigned size) override;

   private:
    PciBus& bus_;
    uint32_t address_ = 0;
  };
  class Ecam final : public MmioHandler {
   public:
    explicit Ecam(PciBus& bus) : bus_(bus) {}
    uint64_t read(uint64_t offset, unsigned size) override;
    void write(uint64_t offset, uint64_t value, unsigned size) override;

   private:
    PciBus& bus_;
  };

  // Config access by bus/devfn/register; absent functions and other buses read all-ones.
  uint32_t config_read(unsigned bus, unsigned devfn, uint32_t reg, unsigned size) const;
  void config_write(unsigned bus, unsigned devfn, uint32_t reg, uint32_t value,
                    unsigned size);

  // Called by devices.
  void map_bar(const BarRegion& region) { host_.map_bar(region); }
  void unmap_bar(const BarRegion& region) { host_.unmap_bar(region); }
  void msi_write(uint64_t address, uint32_t data) { msi_.write(address, data); }
  void intx_changed(const PciDevice& device, bool asserted);
  int pirq_of(const PciDevice& device) const;
  unsigned irq_of(const PciDevice& device) const;

  Result<PciAddress> free_slot(std::string_view type_name) const;

  PciHost& host_;
  InterruptSink& irqs_;
  MsiSink& msi_;
  PciBusOptions options_;
  std::array<std::unique_ptr<PciDevice>, kSlotCount * kFunctionCount> functions_;
  std::array<int, 4> pirq_count_{};
  std::map<unsigned, bool> reported_level_;
  ConfigPorts config_ports_{*this};
  Ecam ecam_{*this};
};

}  // namespace ferry::pci
