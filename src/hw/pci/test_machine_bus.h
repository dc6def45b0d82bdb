// The guest's view of a fake PCI machine (test_fakes.h) for unit tests that run a guest
// driver against a real device model without ferry-vm: MMIO decoded through the BARs as
// the fake host mapped them, configuration mechanism #1 at 0xcf8, guest RAM straight from
// the address space. With an event loop, idle() runs it once (devices that complete work
// from the loop); without one, everything is synchronous and idle() returns at once.
//
// Test-only glue between hw/ and guest/: device tests link ferry_guest for their driver,
// and guest driver tests link the device they drive. Neither library includes it.
#pragma once

#include <chrono>

#include "base/event_loop.h"
#include "base/status.h"
#include "guest/guest_bus.h"
#include "hw/pci/test_fakes.h"
#include "memory/address_space.h"

namespace ferry::pci::test {

class MachineBus : public guest::GuestBus {
 public:
  MachineBus(Machine& machine, memory::AddressSpace& memory, EventLoop* loop = nullptr)
      : machine_(machine), memory_(memory), loop_(loop) {}

  Result<uint64_t> mmio_read(uint64_t addr, unsigned size) override {
    auto region = decoding(addr, size);
    if (!region.ok()) return region.take_status();
    return (*region)->handler->read(addr - (*region)->address, size);
  }
  Status mmio_write(uint64_t addr, uint64_t value, unsigned size) override {
    auto region = decoding(addr, size);
    if (!region.ok()) return region.take_status();
    (*region)->handler->write(addr - (*region)->address, value, size);
    return {};
  }
  Result<uint32_t> port_in(uint16_t port, unsigned size) override {
    if (port < kConfigPorts || port + size > kConfigPorts + 8)  // nothing decodes: all ones
      return size >= 4 ? ~0u : (1u << (8 * size)) - 1;
    return static_cast<uint32_t>(machine_.bus.config_ports().read(port - kConfigPorts, size));
  }
  Status port_out(uint16_t port, uint32_t value, unsigned size) override {
    if (port >= kConfigPorts && port + size <= kConfigPorts + 8)
      machine_.bus.config_ports().write(port - kConfigPorts, value, size);
    return {};
  }
  Status memory_read(uint64_t addr, std::span<uint8_t> out) override {
    return memory_.read(addr, out);
  }
  Status memory_write(uint64_t addr, std::span<const uint8_t> data) override {
    return memory_.write(addr, data);
  }
  Status idle(std::chrono::microseconds max_wait) override {
    if (loop_ == nullptr) return {};
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(max_wait);
    return loop_->run_once(wait).take_status();
  }
  // MSI messages stay in the fake sink for the tests to take; the driver polls.
  Status enable_interrupts(guest::InterruptSource) override { return {}; }

 protected:
  Machine& machine() { return machine_; }
  memory::AddressSpace& memory() { return memory_; }

 private:
  static constexpr uint16_t kConfigPorts = 0xcf8;

  Result<const BarRegion*> decoding(uint64_t addr, unsigned size) const {
    for (const auto& [key, region] : machine_.host.mapped) {
      if (!region.is_io && addr >= region.address && addr - region.address + size <= region.size)
        return &region;
    }
    return Error(ErrorCode::kOutOfRange, "test bus: no BAR decodes {} bytes at 0x{:x}", size, addr);
  }

  Machine& machine_;
  memory::AddressSpace& memory_;
  EventLoop* loop_;
};

}  // namespace ferry::pci::test
