// Test doubles for the machine side of the PCI layer, and a small configurable device.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "hw/pci/interfaces.h"
#include "hw/pci/pci_bus.h"
#include "hw/pci/pci_device.h"

namespace ferry::pci::test {

// Records map/unmap events and keeps the set of regions currently mapped.
class FakeHost : public PciHost {
 public:
  void map_bar(const BarRegion& r) override {
    events.push_back(fmt::format("map {} bar{} {:#x}+{:#x}{}", r.device->type_name(), r.bar,
                                 r.address, r.size, r.is_io ? " io" : ""));
    auto [it, inserted] = mapped.try_emplace({r.device, r.bar}, r);
    if (!inserted) errors.push_back("mapped twice: " + events.back());
  }
  void unmap_bar(const BarRegion& r) override {
    events.push_back(fmt::format("unmap {} bar{} {:#x}+{:#x}{}", r.device->type_name(), r.bar,
                                 r.address, r.size, r.is_io ? " io" : ""));
    auto it = mapped.find({r.device, r.bar});
    if (it == mapped.end() || !(it->second == r)) errors.push_back("unmap of unknown region");
    else mapped.erase(it);
  }
  // Regions as (bar, address, size, io), device pointers left out, for comparing machines.
  std::vector<std::tuple<int, uint64_t, uint64_t, bool>> layout() const {
    std::vector<std::tuple<int, uint64_t, uint64_t, bool>> out;
    for (const auto& [key, r] : mapped) out.emplace_back(r.bar, r.address, r.size, r.is_io);
    std::sort(out.begin(), out.end());
    return out;
  }
  std::vector<std::string> take_events() { return std::exchange(events, {}); }

  std::vector<std::string> events;
  std::vector<std::string> errors;
  std::map<std::pair<const PciDevice*, int>, BarRegion> mapped;
};

class FakeIrqs : public InterruptSink {
 public:
  void set_irq(unsigned irq, bool level) override {
    events.push_back(fmt::format("irq {} {}", irq, level ? "raise" : "lower"));
    levels[irq] = level;
  }
  bool level(unsigned irq) const {
    auto it = levels.find(irq);
    return it != levels.end() && it->second;
  }
  std::vector<std::string> events;
  std::map<unsigned, bool> levels;
};

class FakeMsi : public MsiSink {
 public:
  void write(uint64_t address, uint32_t data) override { writes.push_back({address, data}); }
  std::vector<MsiMessage> take() { return std::exchange(writes, {}); }
  std::vector<MsiMessage> writes;
};

// A register file behind a BAR: remembers writes, reads them back.
class RegisterFile : public MmioHandler {
 public:
  uint64_t read(uint64_t offset, unsigned size) override {
    uint64_t v = 0;
    for (unsigned i = 0; i < size; ++i)
      v |= uint64_t{bytes[(offset + i) % bytes.size()]} << (8 * i);
    return v;
  }
  void write(uint64_t offset, uint64_t value, unsigned size) override {
    for (unsigned i = 0; i < size; ++i)
      bytes[(offset + i) % bytes.size()] = static_cast<uint8_t>(value >> (8 * i));
  }
  std::array<uint8_t, 256> bytes{};
};

// An NVMe-like test function: express, BAR0 registers (mem64, 16 KiB) with the MSI-X
// table and PBA inside it, BAR2 an I/O BAR, pin A, PM and PCIe capabilities.
class TestDevice : public PciDevice {
 public:
  static constexpr unsigned kVectors = 17;
  static constexpr uint32_t kTableOffset = 0x2000;
  static constexpr uint32_t kPbaOffset = 0x3000;

  explicit TestDevice(std::string name = "testdev", PciKind kind = PciKind::kExpress)
      : PciDevice(std::move(name), kind) {
    set_ids({.vendor = 0x1b36, .device = 0x0010, .class_code = 0x010802, .revision = 2,
             .subsystem_vendor = 0x1af4, .subsystem = 0x1100});
    must(register_bar(0, 0x4000, BarType::kMem64, false, &regs));
    must(register_bar(2, 32, BarType::kIo, false, &ports));
    must(set_interrupt_pin(1));
    must(add_power_management_capability().take_status());
    if (is_express()) must(add_express_capability().take_status());
    must(init_msix({.vectors = kVectors, .table_bar = 0, .table_offset = kTableOffset,
                    .pba_bar = 0, .pba_offset = kPbaOffset})
             .take_status());
  }

  void on_config_write(uint32_t offset, uint32_t value, unsigned size) override {
    config_writes.push_back({offset, value, size});
  }

  static void must(const Status& st) {
    if (!st.ok()) throw std::runtime_error(st.to_string());
  }

  struct Write {
    uint32_t offset, value;
    unsigned size;
  };
  RegisterFile regs;
  RegisterFile ports;
  std::vector<Write> config_writes;
  uint32_t model_register = 0;  // device-specific state, migrated by its own description
};

inline constexpr auto kTestDeviceDesc = vmstate::describe<TestDevice>(
    "testdev", {.version = 1},
    PciDevice::vmstate_pci_device(),
    PciDevice::vmstate_msix(),
    vmstate::field("model_register", &TestDevice::model_register));

// A bus with the fakes attached.
struct Machine {
  FakeHost host;
  FakeIrqs irqs;
  FakeMsi msi;
  PciBus bus{host, irqs, msi};

  // Config mechanism #1 helpers.
  static uint32_t cf8(int slot, int fn, uint32_t reg) {
    return kConfigAddressEnable | uint32_t(slot) << 11 | uint32_t(fn) << 8 | (reg & 0xfc);
  }
  uint32_t read(int slot, int fn, uint32_t reg, unsigned size) {
    bus.config_ports().write(0, cf8(slot, fn, reg), 4);
    return static_cast<uint32_t>(bus.config_ports().read(4 + (reg & 3), size));
  }
  void write(int slot, int fn, uint32_t reg, uint32_t value, unsigned size) {
    bus.config_ports().write(0, cf8(slot, fn, reg), 4);
    bus.config_ports().write(4 + (reg & 3), value, size);
  }
};

}  // namespace ferry::pci::test
