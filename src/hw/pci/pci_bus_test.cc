#include "hw/pci/pci_bus.h"

#include <gtest/gtest.h>

#include "hw/pci/host_bridge.h"
#include "hw/pci/test_fakes.h"

namespace ferry::pci {
namespace {

using test::Machine;
using test::TestDevice;

TEST(PciBus, HostBridgeIdentityAtZero) {
  Machine m;
  EXPECT_EQ(m.read(0, 0, kVendorId, 2), kHostBridgeVendor);
  EXPECT_EQ(m.read(0, 0, kDeviceId, 2), kHostBridgeDevice);
  EXPECT_EQ(m.read(0, 0, kVendorId, 4), uint32_t{kHostBridgeDevice} << 16 | kHostBridgeVendor);
  EXPECT_EQ(m.read(0, 0, kRevisionId, 4) >> 8, 0x060000u);
  EXPECT_EQ(m.read(0, 0, kHeaderType, 1), 0u);
  EXPECT_EQ(&m.bus.host_bridge(), m.bus.find({0, 0}));
}

TEST(PciBus, ConfigMechanismOneEveryWidth) {
  Machine m;
  ASSERT_TRUE(m.bus.add(std::make_unique<TestDevice>(), "3").ok());
  // vendor 0x1b36, device 0x0010 -> bytes 36 1b 10 00
  EXPECT_EQ(m.read(3, 0, 0, 4), 0x00101b36u);
  EXPECT_EQ(m.read(3, 0, 0, 2), 0x1b36u);
  EXPECT_EQ(m.read(3, 0, 2, 2), 0x0010u);
  EXPECT_EQ(m.read(3, 0, 0, 1), 0x36u);
  EXPECT_EQ(m.read(3, 0, 1, 1), 0x1bu);
  EXPECT_EQ(m.read(3, 0, 2, 1), 0x10u);
  EXPECT_EQ(m.read(3, 0, 3, 1), 0x00u);
  // A word straddling the end of the data window is not a valid access.
  m.bus.config_ports().write(0, Machine::cf8(3, 0, 0), 4);
  EXPECT_EQ(m.bus.config_ports().read(7, 2), 0xffffu);

  // Writes of each width: the interrupt line byte, the command word, a BAR dword.
  m.write(3, 0, kInterruptLine, 0x5a, 1);
  EXPECT_EQ(m.read(3, 0, kInterruptLine, 1), 0x5au);
  m.write(3, 0, kCommand, kCommandMemory | kCommandBusMaster, 2);
  EXPECT_EQ(m.read(3, 0, kCommand, 2), kCommandMemory | kCommandBusMaster);
  m.write(3, 0, kBar0 + 8, 0xc040, 4);  // BAR2, I/O
  EXPECT_EQ(m.read(3, 0, kBar0 + 8, 4), 0xc041u);
  // Byte write into the middle of a dword through port 0xcfe.
  m.write(3, 0, kLatencyTimer, 0x40, 1);
  EXPECT_EQ(m.read(3, 0, kCacheLineSize, 2), 0x4000u);
}

TEST(PciBus, AddressRegisterAndDisabledOrAbsentReadAllOnes) {
  Machine m;
  m.bus.config_ports().write(0, 0x80001234, 4);
  EXPECT_EQ(m.bus.config_ports().read(0, 4), 0x80001234u);
  // Without the enable bit the data window reads all-ones.
  m.bus.config_ports().write(0, 0x00000000, 4);
  EXPECT_EQ(m.bus.config_ports().read(4, 4), 0xffffffffu);
  EXPECT_EQ(m.bus.config_ports().read(4, 2), 0xffffu);
  // Absent function, absent slot, another bus: every width reads all-ones.
  for (unsigned size : {1u, 2u, 4u}) {
    const uint32_t ones = size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
    EXPECT_EQ(m.read(5, 0, 0, size), ones);
    EXPECT_EQ(m.read(0, 3, 0, size), ones);
    m.bus.config_ports().write(0, kConfigAddressEnable | 1u << 16, 4);
    EXPECT_EQ(m.bus.config_ports().read(4, size), ones);
  }
  // Writes to absent functions go nowhere (and do not crash).
  m.write(9, 1, kCommand, 0xffff, 2);
  EXPECT_EQ(m.read(9, 1, kCommand, 2), 0xffffu);
}

TEST(PciBus, EcamEveryWidthAndExtendedSpace) {
  Machine m;
  ASSERT_TRUE(m.bus.add(std::make_unique<TestDevice>(), "4").ok());
  ASSERT_TRUE(m.bus.add(std::make_unique<TestDevice>("old", PciKind::kConventional), "5").ok());
  auto at = [](int slot, int fn, uint32_t reg) {
    return uint64_t(slot) << 15 | uint64_t(fn) << 12 | reg;
  };
  MmioHandler& ecam = m.bus.ecam();
  EXPECT_EQ(ecam.read(at(4, 0, 0), 4), 0x00101b36u);
  EXPECT_EQ(ecam.read(at(4, 0, 1), 2), 0x101bu);  // unaligned word
  EXPECT_EQ(ecam.read(at(4, 0, 3), 1), 0x00u);
  ecam.write(at(4, 0, kInterruptLine), 0x77, 1);
  EXPECT_EQ(ecam.read(at(4, 0, kInterruptLine), 1), 0x77u);
  ecam.write(at(4, 0, kCommand), kCommandIo, 2);
  EXPECT_EQ(m.read(4, 0, kCommand, 2), kCommandIo);
  ecam.write(at(4, 0, kBar0), 0xfebf0000, 4);
  EXPECT_EQ(ecam.read(at(4, 0, kBar0), 4), 0xfebf0004u);
  // Extended space exists on the express function (empty: no extended capabilities), not
  // on the conventional one.
  EXPECT_EQ(ecam.read(at(4, 0, 0x100), 4), 0u);
  EXPECT_EQ(ecam.read(at(5, 0, 0x100), 4), 0xffffffffu);
  EXPECT_EQ(ecam.read(at(5, 0, 0xff), 1), 0u);
  EXPECT_EQ(ecam.read(at(5, 0, 0xff), 2), 0xffffu);  // crosses the end of 256 bytes
  // Absent functions, and past the end of a function.
  EXPECT_EQ(ecam.read(at(6, 0, 0), 4), 0xffffffffu);
  EXPECT_EQ(ecam.read(at(4, 1, 0), 1), 0xffu);
  EXPECT_EQ(ecam.read(at(4, 0, 0xffe), 4), 0xffffffffu);
  EXPECT_EQ(ecam.read(uint64_t{1} << 20, 4), 0xffffffffu);  // bus 1
}

TEST(PciBus, AddAtAddressAutomaticSlotsAndConflicts) {
  Machine m;
  auto a = m.bus.add(std::make_unique<TestDevice>("first"));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->address()->to_string(), "01.0");
  auto b = m.bus.add(std::make_unique<TestDevice>("second"), "1f.7");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->address()->to_bdf(), "0000:00:1f.7");
  auto c = m.bus.add(std::make_unique<TestDevice>("third"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)->address()->to_string(), "02.0");

  auto clash = m.bus.add(std::make_unique<TestDevice>("fourth"), "02.0");
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.status().message().find("addr='02.0'"), std::string::npos);
  EXPECT_NE(clash.status().message().find("third"), std::string::npos);
  EXPECT_NE(clash.status().message().find("fourth"), std::string::npos);
  auto host = m.bus.add(std::make_unique<TestDevice>("fifth"), "0");
  EXPECT_FALSE(host.ok());

  auto bad = m.bus.add(std::make_unique<TestDevice>("sixth"), "40");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("addr='40'"), std::string::npos);
  EXPECT_EQ(m.bus.devices().size(), 4u);  // bridge + three
}

TEST(PciBus, FullBusRefusesAutomaticSlot) {
  Machine m;
  for (int i = 1; i < kSlotCount; ++i)
    ASSERT_TRUE(m.bus.add(std::make_unique<TestDevice>(fmt::format("d{}", i))).ok());
  auto r = m.bus.add(std::make_unique<TestDevice>("extra"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no free PCI slot"), std::string::npos);
}

TEST(PciBus, MultiFunctionSlotsSetTheHeaderBit) {
  Machine m;
  ASSERT_TRUE(m.bus.add(std::make_unique<TestDevice>("f0"), "6.0").ok());
  EXPECT_EQ(m.read(6, 0, kHeaderType, 1), 0u);
  ASSERT_TRUE(m.bus.add(std::make_unique<TestDevice>("f3"), "6.3").ok());
  EXPECT_EQ(m.read(6, 0, kHeaderType, 1), kHeaderTypeMultiFunction);
  EXPECT_EQ(m.read(6, 3, kHeaderType, 1), kHeaderTypeMultiFunction);
  // Guests cannot clear it: the header type is read-only.
  m.write(6, 0, kHeaderType, 0, 1);
  EXPECT_EQ(m.read(6, 0, kHeaderType, 1), kHeaderTypeMultiFunction);
}

TEST(PciBus, IntxRoutingSharesLinesWithLevelSemantics) {
  Machine m;
  // Slot 1 pin A -> PIRQ B (irq 10); slot 2 pin A -> PIRQ C (irq 11); slot 5 pin A ->
  // PIRQ B (irq 10), shared with slot 1.
  auto* d1 = *m.bus.add(std::make_unique<TestDevice>("d1"), "1");
  auto* d2 = *m.bus.add(std::make_unique<TestDevice>("d2"), "2");
  auto* d5 = *m.bus.add(std::make_unique<TestDevice>("d5"), "5");
  EXPECT_EQ(m.read(1, 0, kInterruptLine, 1), 10u);
  EXPECT_EQ(m.read(2, 0, kInterruptLine, 1), 11u);
  EXPECT_EQ(m.read(5, 0, kInterruptLine, 1), 10u);
  EXPECT_EQ(m.read(1, 0, kInterruptPin, 1), 1u);

  d1->set_irq(true);
  d5->set_irq(true);
  EXPECT_TRUE(m.irqs.level(10));
  d1->set_irq(false);
  EXPECT_TRUE(m.irqs.level(10)) << "slot 5 still holds the shared line";
  d5->set_irq(false);
  EXPECT_FALSE(m.irqs.level(10));
  d2->set_irq(true);
  d2->set_irq(true);  // a level, not an edge: no second raise
  EXPECT_TRUE(m.irqs.level(11));
  EXPECT_EQ(m.irqs.events,
            (std::vector<std::string>{"irq 10 raise", "irq 10 lower", "irq 11 raise"}));
  EXPECT_TRUE(m.bus.irq_level(11));
}

TEST(PciBus, QueryListsFunctionsAndBars) {
  Machine m;
  auto* d = *m.bus.add(std::make_unique<TestDevice>("nvme"), "2");
  d->config_write(kBar0, 0xfebf0000, 4);
  d->config_write(kBar0 + 4, 0x1, 4);
  d->config_write(kCommand, kCommandMemory, 2);
  auto list = m.bus.query();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].class_code, kHostBridgeClass);
  EXPECT_EQ(list[0].irq, -1);
  const PciDeviceInfo& info = list[1];
  EXPECT_EQ(info.slot, 2);
  EXPECT_EQ(info.function, 0);
  EXPECT_EQ(info.type_name, "nvme");
  EXPECT_EQ(info.vendor, 0x1b36);
  EXPECT_EQ(info.device, 0x0010);
  EXPECT_EQ(info.class_code, 0x010802u);
  EXPECT_EQ(info.subsystem_vendor, 0x1af4);
  EXPECT_EQ(info.irq, 11);
  ASSERT_EQ(info.bars.size(), 2u);
  EXPECT_EQ(info.bars[0].bar, 0);
  EXPECT_EQ(info.bars[0].type, BarType::kMem64);
  EXPECT_EQ(info.bars[0].address, 0x1febf0000u);
  EXPECT_EQ(info.bars[0].size, 0x4000u);
  EXPECT_EQ(info.bars[1].bar, 2);
  EXPECT_EQ(info.bars[1].type, BarType::kIo);
  EXPECT_EQ(info.bars[1].address, PciDevice::kUnmapped);
}

}  // namespace
}  // namespace ferry::pci
