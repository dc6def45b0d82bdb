#include "hw/pci/pci_device.h"

#include <gtest/gtest.h>

#include <array>

#include "hw/pci/test_fakes.h"
#include "memory/address_space.h"
#include "memory/ram_block.h"

namespace ferry::pci {
namespace {

using test::Machine;
using test::TestDevice;

// A bare function with whatever BARs a test registers.
class Plain : public PciDevice {
 public:
  Plain() : PciDevice("plain", PciKind::kConventional) {}
};

TEST(PciConfig, ReadOnlyWritableAndW1cBits) {
  TestDevice d;
  d.config_write(kVendorId, 0xffffffff, 4);
  EXPECT_EQ(d.vendor_id(), 0x1b36);
  EXPECT_EQ(d.device_id(), 0x0010);
  d.config_write(kClassProgIf, 0, 1);
  EXPECT_EQ(d.class_code(), 0x010802u);

  // Only the defined command bits stick.
  d.config_write(kCommand, 0xffff, 2);
  EXPECT_EQ(d.command(), kCommandIo | kCommandMemory | kCommandBusMaster | kCommandParity |
                             kCommandSerr | kCommandIntxDisable);

  // Status: the capability bit is read-only, error bits are write-1-to-clear.
  d.set_config_u16(kStatus, d.config_u16(kStatus) | 0x8000 | 0x0100);
  d.config_write(kStatus, 0x0100, 2);  // clear just "master data parity error"
  EXPECT_EQ(d.config_u16(kStatus), kStatusCapabilityList | 0x8000);
  d.config_write(kStatus, 0x0000, 2);  // writing 0 changes nothing
  EXPECT_EQ(d.config_u16(kStatus), kStatusCapabilityList | 0x8000);
  d.config_write(kStatus, 0xffff, 2);
  EXPECT_EQ(d.config_u16(kStatus), kStatusCapabilityList);

  // Device-defined masks.
  d.set_writable_mask(0xa0, 2, 0x0ff0);
  d.config_write(0xa0, 0xffff, 2);
  EXPECT_EQ(d.config_u16(0xa0), 0x0ff0);

  // Out-of-range and odd-sized accesses are harmless.
  EXPECT_EQ(d.config_read(kExpressConfigSize - 2, 4), 0xffffffffu);
  EXPECT_EQ(d.config_read(0, 3), 0xffffffu);
  d.config_write(kExpressConfigSize, 1, 4);
  Plain p;
  EXPECT_EQ(p.config_read(0x100, 1), 0xffu);
}

TEST(PciConfig, DeviceSeesEveryWriteAfterItTookEffect) {
  TestDevice d;
  d.config_write(kCommand, kCommandMemory, 2);
  ASSERT_EQ(d.config_writes.size(), 1u);
  EXPECT_EQ(d.config_writes[0].offset, kCommand);
  EXPECT_EQ(d.config_writes[0].value, kCommandMemory);
  EXPECT_EQ(d.config_writes[0].size, 2u);
}

TEST(PciBars, SizingMem32Mem64IoAndPrefetchable) {
  Plain d;
  ASSERT_TRUE(d.register_bar(0, 0x1000, BarType::kMem32, false, nullptr).ok());
  ASSERT_TRUE(d.register_bar(1, 0x100000, BarType::kMem32, true, nullptr).ok());
  ASSERT_TRUE(d.register_bar(2, uint64_t{1} << 33, BarType::kMem64, true, nullptr).ok());
  ASSERT_TRUE(d.register_bar(4, 64, BarType::kIo, false, nullptr).ok());

  for (int i = 0; i < kBarCount; ++i) d.config_write(kBar0 + 4 * i, 0xffffffff, 4);
  EXPECT_EQ(d.config_read(kBar0, 4), 0xfffff000u);
  EXPECT_EQ(d.config_read(kBar0 + 4, 4), 0xfff00008u);  // prefetchable
  EXPECT_EQ(d.config_read(kBar0 + 8, 4), 0x0000000cu);  // 64-bit, prefetchable, low dword
  EXPECT_EQ(d.config_read(kBar0 + 12, 4), 0xfffffffeu);  // 8 GiB: high dword
  EXPECT_EQ(d.config_read(kBar0 + 16, 4), 0xffffffc1u);  // I/O, 64 ports
  EXPECT_EQ(d.config_read(kBar0 + 20, 4), 0u);           // unimplemented
  EXPECT_EQ(d.bar_size(2), uint64_t{1} << 33);
  EXPECT_TRUE(d.bar_prefetchable(1));
  EXPECT_FALSE(d.bar_registered(3));  // upper half of BAR 2

  // Low address bits inside the BAR never stick.
  d.config_write(kBar0, 0xfebf1234, 4);
  EXPECT_EQ(d.config_read(kBar0, 4), 0xfebf1000u);
}

TEST(PciBars, RegistrationErrorsNameTheBar) {
  Plain d;
  auto expect_bad = [&](int index, uint64_t size, BarType type, bool pf, std::string_view why) {
    Status st = d.register_bar(index, size, type, pf, nullptr);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find(why), std::string::npos) << st.to_string();
    EXPECT_NE(st.message().find(fmt::format("BAR {}", index)), std::string::npos);
  };
  expect_bad(6, 0x1000, BarType::kMem32, false, "index");
  expect_bad(5, 0x1000, BarType::kMem64, false, "next slot");
  expect_bad(0, 0x1001, BarType::kMem32, false, "power of two");
  expect_bad(0, 8, BarType::kMem32, false, "at least 16");
  expect_bad(0, 512, BarType::kIo, false, "4..256");
  expect_bad(0, 16, BarType::kIo, true, "prefetchable");
  ASSERT_TRUE(d.register_bar(0, 0x1000, BarType::kMem64, false, nullptr).ok());
  expect_bad(1, 0x1000, BarType::kMem32, false, "in use");
  expect_bad(0, 0x1000, BarType::kMem32, false, "in use");
}

TEST(PciBars, MappingFollowsAddressAndCommandEnables) {
  Machine m;
  auto* d = static_cast<TestDevice*>(*m.bus.add(std::make_unique<TestDevice>("dev"), "3"));
  EXPECT_TRUE(m.host.take_events().empty());

  // Programming addresses maps nothing while decoding is off.
  d->config_write(kBar0, 0xfebf0000, 4);
  d->config_write(kBar0 + 4, 0, 4);
  d->config_write(kBar0 + 8, 0xc000, 4);
  EXPECT_TRUE(m.host.take_events().empty());
  EXPECT_EQ(d->bar_address(0), PciDevice::kUnmapped);

  d->config_write(kCommand, kCommandMemory, 2);
  EXPECT_EQ(m.host.take_events(), std::vector<std::string>{"map dev bar0 0xfebf0000+0x4000"});
  d->config_write(kCommand, kCommandMemory | kCommandIo, 2);
  EXPECT_EQ(m.host.take_events(), std::vector<std::string>{"map dev bar2 0xc000+0x20 io"});
  EXPECT_EQ(d->bar_address(2), 0xc000u);

  // Moving a BAR: unmap the old place, map the new one. The high dword of a 64-bit BAR
  // moves it above 4 GiB.
  d->config_write(kBar0 + 4, 0x2, 4);
  EXPECT_EQ(m.host.take_events(),
            (std::vector<std::string>{"unmap dev bar0 0xfebf0000+0x4000",
                                      "map dev bar0 0x2febf0000+0x4000"}));

  // Sizing while decoding is on: the all-ones value is not a mapping.
  d->config_write(kBar0 + 8, 0xffffffff, 4);
  EXPECT_EQ(m.host.take_events(), std::vector<std::string>{"unmap dev bar2 0xc000+0x20 io"});
  d->config_write(kBar0 + 8, 0xc000, 4);
  EXPECT_EQ(m.host.take_events(), std::vector<std::string>{"map dev bar2 0xc000+0x20 io"});
  d->config_write(kBar0, 0xffffffff, 4);
  d->config_write(kBar0 + 4, 0xffffffff, 4);
  EXPECT_EQ(m.host.take_events(),
            (std::vector<std::string>{"unmap dev bar0 0x2febf0000+0x4000",
                                      "map dev bar0 0x2ffffc000+0x4000",
                                      "unmap dev bar0 0x2ffffc000+0x4000"}));

  // Turning decoding off unmaps; a write that changes nothing announces nothing.
  d->config_write(kCommand, kCommandMemory, 2);
  EXPECT_EQ(m.host.take_events(), std::vector<std::string>{"unmap dev bar2 0xc000+0x20 io"});
  d->config_write(kCommand, kCommandMemory, 2);
  EXPECT_TRUE(m.host.take_events().empty());
  EXPECT_TRUE(m.host.errors.empty());

  // Accesses through the announced handler reach the device's registers.
  d->config_write(kBar0, 0xfe000000, 4);
  d->config_write(kBar0 + 4, 0, 4);
  const BarRegion& r = m.host.mapped.at({d, 0});
  r.handler->write(0x14, 0x11223344, 4);
  EXPECT_EQ(r.handler->read(0x14, 4), 0x11223344u);
  EXPECT_EQ(d->regs.bytes[0x14], 0x44);
}

TEST(PciBars, Mem32BarsNeverMapAtTheTopOfTheAddressSpace) {
  test::FakeHost host;
  test::FakeIrqs irqs;
  test::FakeMsi msi;
  PciBus bus(host, irqs, msi);
  auto dev = std::make_unique<Plain>();
  ASSERT_TRUE(dev->register_bar(0, 0x1000, BarType::kMem32, false, nullptr).ok());
  PciDevice* d = *bus.add(std::move(dev));
  d->config_write(kCommand, kCommandMemory, 2);
  d->config_write(kBar0, 0xfffff000, 4);  // the sizing value
  EXPECT_EQ(d->bar_address(0), PciDevice::kUnmapped);
  d->config_write(kBar0, 0xffffe000, 4);
  EXPECT_EQ(d->bar_address(0), 0xffffe000u);
  d->config_write(kBar0, 0, 4);  // address zero means unprogrammed
  EXPECT_EQ(d->bar_address(0), PciDevice::kUnmapped);
  EXPECT_EQ(host.events.size(), 2u);
}

TEST(PciCommand, BusMasterGatesDma) {
  TestDevice d;
  EXPECT_FALSE(d.bus_master_enabled());
  d.config_write(kCommand, kCommandBusMaster, 2);
  EXPECT_TRUE(d.bus_master_enabled());
  EXPECT_FALSE(d.memory_enabled());
  EXPECT_FALSE(d.io_enabled());
  d.config_write(kCommand, 0, 2);
  EXPECT_FALSE(d.bus_master_enabled());
}

// The device's DMA view is gated by Bus Master Enable as the guest programs it, and
// reaches RAM only where there is RAM.
TEST(PciCommand, DmaViewFollowsBusMasterEnable) {
  memory::AddressSpace as;
  auto ram = memory::RamBlock::anonymous("pc.ram", 1 << 20);
  ASSERT_TRUE(ram.ok());
  auto block = as.add_ram(0, std::move(*ram));
  ASSERT_TRUE(block.ok());
  TestDevice d;
  std::array<uint8_t, 4> bytes = {1, 2, 3, 4};
  EXPECT_EQ(d.dma().write(0x1000, bytes).code(), ErrorCode::kFailedPrecondition)
      << "not attached";
  d.attach_dma(as);

  Status off = d.dma().write(0x1000, bytes);
  EXPECT_EQ(off.code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(off.message(), "testdev: DMA at 0x1000 refused: bus mastering is disabled");
  EXPECT_EQ((*block)->host()[0x1000], 0);

  d.config_write(kCommand, kCommandBusMaster, 2);
  ASSERT_TRUE(d.dma().write(0x1000, bytes).ok());
  EXPECT_EQ((*block)->host()[0x1003], 4);
  std::array<uint8_t, 4> back{};
  ASSERT_TRUE(d.dma().read(0x1000, back).ok());
  EXPECT_EQ(back, bytes);
  EXPECT_FALSE(d.dma().write((1 << 20) - 2, bytes).ok()) << "past the end of RAM";
  EXPECT_FALSE(d.dma().check_ram({0x200000, 4}).ok()) << "unmapped";

  // Any way the bit goes off shuts the view: a guest write, a raw write, a reset.
  d.config_write(kCommand, kCommandMemory, 2);
  EXPECT_EQ(d.dma().read(0x1000, back).code(), ErrorCode::kFailedPrecondition);
  d.set_config_u16(kCommand, kCommandBusMaster);
  EXPECT_TRUE(d.dma().read(0x1000, back).ok());
  d.reset();
  EXPECT_EQ(d.dma().read(0x1000, back).code(), ErrorCode::kFailedPrecondition);
}

TEST(PciIntx, LevelStatusBitAndDisable) {
  Machine m;
  auto* d = *m.bus.add(std::make_unique<TestDevice>("dev"), "1");  // irq 10
  d->set_irq(true);
  EXPECT_TRUE(m.irqs.level(10));
  EXPECT_TRUE(d->config_u16(kStatus) & kStatusInterrupt);

  // INTx disable drops the line but the status bit still shows the device's level.
  d->config_write(kCommand, kCommandIntxDisable, 2);
  EXPECT_FALSE(m.irqs.level(10));
  EXPECT_TRUE(d->config_u16(kStatus) & kStatusInterrupt);
  d->set_irq(false);
  EXPECT_FALSE(d->config_u16(kStatus) & kStatusInterrupt);
  d->set_irq(true);
  EXPECT_FALSE(m.irqs.level(10));
  // Re-enabling delivers the level that is still there.
  d->config_write(kCommand, 0, 2);
  EXPECT_TRUE(m.irqs.level(10));
  d->set_irq(false);
  EXPECT_FALSE(m.irqs.level(10));
  EXPECT_EQ(m.irqs.events, (std::vector<std::string>{"irq 10 raise", "irq 10 lower",
                                                      "irq 10 raise", "irq 10 lower"}));
  // The status bit is read-only to the guest.
  d->set_irq(true);
  d->config_write(kStatus, 0xffff, 2);
  EXPECT_TRUE(d->config_u16(kStatus) & kStatusInterrupt);
}

TEST(PciIntx, PinValidation) {
  Plain d;
  EXPECT_FALSE(d.set_interrupt_pin(5).ok());
  d.set_irq(true);  // no pin: nothing happens
  EXPECT_FALSE(d.irq_level());
  ASSERT_TRUE(d.set_interrupt_pin(4).ok());
  d.config_write(kInterruptPin, 1, 1);  // read-only to the guest
  EXPECT_EQ(d.interrupt_pin(), 4);
}

TEST(PciCapabilities, ListWalkFindsEveryCapabilityInOrder) {
  TestDevice d;
  EXPECT_TRUE(d.config_u16(kStatus) & kStatusCapabilityList);
  std::vector<std::pair<uint8_t, uint8_t>> walk;  // (offset, id)
  for (uint8_t at = d.config_read(kCapabilityPointer, 1); at != 0 && walk.size() < 48;
       at = d.config_read(at + 1, 1))
    walk.emplace_back(at, d.config_read(at, 1));
  ASSERT_EQ(walk.size(), 3u);
  EXPECT_EQ(walk[0], (std::pair<uint8_t, uint8_t>{0x40, kCapPowerManagement}));
  EXPECT_EQ(walk[1], (std::pair<uint8_t, uint8_t>{0x48, kCapExpress}));
  EXPECT_EQ(walk[2].second, kCapMsix);
  EXPECT_EQ(walk[2].first % 4, 0);
  EXPECT_EQ(d.find_capability(kCapMsix), walk[2].first);
  EXPECT_EQ(d.find_capability(kCapMsi), std::nullopt);
  // The list is read-only.
  d.config_write(kCapabilityPointer, 0, 1);
  d.config_write(0x41, 0, 1);
  EXPECT_EQ(d.config_read(kCapabilityPointer, 1), 0x40u);
  EXPECT_EQ(d.config_read(0x41, 1), 0x48u);

  Plain p;
  EXPECT_FALSE(p.config_u16(kStatus) & kStatusCapabilityList);
  EXPECT_EQ(p.find_capability(kCapPowerManagement), std::nullopt);
  EXPECT_FALSE(p.add_express_capability().ok());
  EXPECT_FALSE(p.add_capability(0x09, 1).ok());
  // Space runs out before 256 bytes.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(p.add_capability(0x09, 60).ok());
  auto full = p.add_capability(0x09, 60);
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.status().message().find("no room"), std::string::npos);
}

TEST(PciCapabilities, ExpressEndpointFields) {
  TestDevice d;
  const uint8_t at = *d.find_capability(kCapExpress);
  EXPECT_EQ(d.config_read(at + kExpFlags, 2), 0x0002u);  // version 2, endpoint
  EXPECT_EQ(d.config_read(at + kExpLinkCaps, 4) & 0x3ff, 0x011u);  // 2.5 GT/s, x1
  EXPECT_EQ(d.config_read(at + kExpLinkStatus, 2), 0x0011u);
  // Device status error bits are W1C; link status is read-only.
  d.set_config_u16(at + kExpDeviceStatus, 0x5);
  d.config_write(at + kExpDeviceStatus, 0x1, 2);
  EXPECT_EQ(d.config_read(at + kExpDeviceStatus, 2), 0x4u);
  d.config_write(at + kExpLinkStatus, 0, 2);
  EXPECT_EQ(d.config_read(at + kExpLinkStatus, 2), 0x0011u);
}

TEST(PciCapabilities, PowerManagementD0AndD3hot) {
  TestDevice d;
  const uint8_t at = *d.find_capability(kCapPowerManagement);
  EXPECT_EQ(d.power_state(), kPmD0);
  EXPECT_EQ(d.config_read(at + kPmCapabilities, 2) & 0x7, 0x3u);
  d.config_write(at + kPmControlStatus, kPmD3Hot, 2);
  EXPECT_EQ(d.power_state(), kPmD3Hot);
  d.config_write(at + kPmControlStatus, 1, 2);  // D1: unsupported, ignored
  EXPECT_EQ(d.power_state(), kPmD3Hot);
  d.config_write(at + kPmControlStatus, kPmD0, 2);
  EXPECT_EQ(d.power_state(), kPmD0);
  EXPECT_TRUE(d.config_read(at + kPmControlStatus, 2) & kPmNoSoftReset);
}

}  // namespace
}  // namespace ferry::pci
