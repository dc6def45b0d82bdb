#include <gtest/gtest.h>

#include "hw/pci/pci_device.h"
#include "hw/pci/test_fakes.h"

namespace ferry::pci {
namespace {

using test::Machine;
using test::TestDevice;

// A plugged-in TestDevice with BAR0 at 0xfe000000, memory decoding and bus mastering on.
struct MsixFixture : ::testing::Test {
  void SetUp() override {
    dev = static_cast<TestDevice*>(*m.bus.add(std::make_unique<TestDevice>("dev"), "2"));
    cap = *dev->find_capability(kCapMsix);
    dev->config_write(kBar0, 0xfe000000, 4);
    dev->config_write(kCommand, kCommandMemory | kCommandBusMaster, 2);
    bar = m.host.mapped.at({dev, 0}).handler;
  }
  void program(unsigned v, uint64_t address, uint32_t data, bool masked) {
    const uint64_t e = TestDevice::kTableOffset + v * 16;
    bar->write(e + 0, address & 0xffffffff, 4);
    bar->write(e + 4, address >> 32, 4);
    bar->write(e + 8, data, 4);
    bar->write(e + 12, masked ? 1 : 0, 4);
  }
  void control(uint16_t bits) { dev->config_write(cap + kMsixControl, bits, 2); }
  uint64_t pba() { return bar->read(TestDevice::kPbaOffset, 8); }

  Machine m;
  TestDevice* dev = nullptr;
  uint8_t cap = 0;
  MmioHandler* bar = nullptr;
};

TEST_F(MsixFixture, CapabilityDescribesTableAndPba) {
  EXPECT_EQ(dev->config_read(cap + kMsixControl, 2), TestDevice::kVectors - 1);
  EXPECT_EQ(dev->config_read(cap + kMsixTable, 4), TestDevice::kTableOffset | 0u);
  EXPECT_EQ(dev->config_read(cap + kMsixPba, 4), TestDevice::kPbaOffset | 0u);
  // Only enable and function mask are writable.
  dev->config_write(cap + kMsixControl, 0xffff, 2);
  EXPECT_EQ(dev->config_read(cap + kMsixControl, 2),
            (TestDevice::kVectors - 1) | kMsixEnable | kMsixFunctionMask);
  dev->config_write(cap + kMsixTable, 0, 4);
  EXPECT_EQ(dev->config_read(cap + kMsixTable, 4), TestDevice::kTableOffset);
}

TEST_F(MsixFixture, TableStartsMaskedAndReadsBack) {
  for (unsigned v = 0; v < TestDevice::kVectors; ++v) {
    EXPECT_EQ(bar->read(TestDevice::kTableOffset + v * 16 + 12, 4), 1u) << v;
    EXPECT_TRUE(dev->msix_vector_masked(v));
  }
  program(3, 0xfee01000, 0x4041, false);
  EXPECT_EQ(bar->read(TestDevice::kTableOffset + 3 * 16, 8), 0xfee01000u);  // qword read
  EXPECT_EQ(bar->read(TestDevice::kTableOffset + 3 * 16 + 8, 4), 0x4041u);
  bar->write(TestDevice::kTableOffset + 4 * 16, 0x00000001fee02000, 8);  // qword write
  EXPECT_EQ(dev->msix_message(4).address, 0x1fee02000u);
  // Registers outside the table and PBA still reach the device.
  bar->write(0x10, 0xabcd, 2);
  EXPECT_EQ(dev->regs.bytes[0x10], 0xcd);
  // The PBA is read-only.
  bar->write(TestDevice::kPbaOffset, 0xff, 1);
  EXPECT_EQ(pba(), 0u);
}

TEST_F(MsixFixture, DeliversWhenEnabledAndUnmasked) {
  program(0, 0xfee00000, 0x30, false);
  program(5, 0xfee00000, 0x35, false);
  control(kMsixEnable);
  dev->msix_notify(5);
  dev->msix_notify(0);
  EXPECT_EQ(m.msi.take(), (std::vector<MsiMessage>{{0xfee00000, 0x35}, {0xfee00000, 0x30}}));
  EXPECT_EQ(pba(), 0u);
  dev->msix_notify(TestDevice::kVectors);  // no such vector: ignored
  EXPECT_TRUE(m.msi.take().empty());
}

TEST_F(MsixFixture, MaskedVectorPendsAndUnmaskDelivers) {
  program(2, 0xfee00000, 0x22, true);
  program(16, 0xfee00000, 0x66, true);
  control(kMsixEnable);
  dev->msix_notify(2);
  dev->msix_notify(16);
  dev->msix_notify(2);  // still one pending bit
  EXPECT_TRUE(m.msi.take().empty());
  EXPECT_TRUE(dev->msix_pending(2));
  EXPECT_EQ(pba(), (uint64_t{1} << 2) | (uint64_t{1} << 16));
  EXPECT_EQ(bar->read(TestDevice::kPbaOffset + 2, 1), 0x01u);  // byte read of bit 16

  // Unmasking vector 2 sends it once and clears its bit; 16 stays pending.
  bar->write(TestDevice::kTableOffset + 2 * 16 + 12, 0, 4);
  EXPECT_EQ(m.msi.take(), (std::vector<MsiMessage>{{0xfee00000, 0x22}}));
  EXPECT_EQ(pba(), uint64_t{1} << 16);
  // Touching the vector's other fields does not deliver anything.
  bar->write(TestDevice::kTableOffset + 16 * 16 + 8, 0x67, 4);
  EXPECT_TRUE(m.msi.take().empty());
  bar->write(TestDevice::kTableOffset + 16 * 16 + 12, 0, 4);
  EXPECT_EQ(m.msi.take(), (std::vector<MsiMessage>{{0xfee00000, 0x67}}));  // current data
  EXPECT_EQ(pba(), 0u);
}

TEST_F(MsixFixture, FunctionMaskHoldsEveryVector) {
  program(1, 0xfee00000, 0x11, false);
  program(7, 0xfee00000, 0x17, false);
  control(kMsixEnable | kMsixFunctionMask);
  EXPECT_TRUE(dev->msix_masked(1));
  EXPECT_FALSE(dev->msix_vector_masked(1));
  dev->msix_notify(7);
  dev->msix_notify(1);
  EXPECT_TRUE(m.msi.take().empty());
  EXPECT_EQ(pba(), 0x82u);
  control(kMsixEnable);  // function unmask: pending ones go out in vector order
  EXPECT_EQ(m.msi.take(), (std::vector<MsiMessage>{{0xfee00000, 0x11}, {0xfee00000, 0x17}}));
  EXPECT_EQ(pba(), 0u);
}

TEST_F(MsixFixture, DisabledMsixPendsUntilEnabled) {
  program(4, 0xfee00000, 0x44, false);
  dev->msix_notify(4);
  EXPECT_TRUE(m.msi.take().empty());
  EXPECT_TRUE(dev->msix_pending(4));
  control(kMsixEnable);
  EXPECT_EQ(m.msi.take(), (std::vector<MsiMessage>{{0xfee00000, 0x44}}));
}

TEST_F(MsixFixture, NoMessagesWithoutBusMastering) {
  program(0, 0x1000, 0xabcd, false);  // an address in RAM: the machine's business
  control(kMsixEnable);
  dev->config_write(kCommand, kCommandMemory, 2);
  dev->msix_notify(0);
  EXPECT_TRUE(m.msi.take().empty());
  EXPECT_TRUE(dev->msix_pending(0));
  dev->config_write(kCommand, kCommandMemory | kCommandBusMaster, 2);
  EXPECT_EQ(m.msi.take(), (std::vector<MsiMessage>{{0x1000, 0xabcd}}));
}

TEST_F(MsixFixture, EnablingMsixReleasesIntx) {
  dev->set_irq(true);
  EXPECT_TRUE(m.irqs.level(11));
  control(kMsixEnable);
  EXPECT_FALSE(m.irqs.level(11));
  control(0);
  EXPECT_TRUE(m.irqs.level(11));
}

TEST(Msix, LayoutErrors) {
  class Dev : public PciDevice {
   public:
    Dev() : PciDevice("dev", PciKind::kExpress) {}
  };
  Dev d;
  ASSERT_TRUE(d.register_bar(0, 0x1000, BarType::kMem32, false, nullptr).ok());
  ASSERT_TRUE(d.register_bar(1, 16, BarType::kIo, false, nullptr).ok());
  auto err = [&](MsixLayout l) { return d.init_msix(l).status().to_string(); };
  EXPECT_NE(err({.vectors = 0}).find("vectors outside"), std::string::npos);
  EXPECT_NE(err({.vectors = 4, .table_bar = 2}).find("not a registered memory BAR"),
            std::string::npos);
  EXPECT_NE(err({.vectors = 4, .table_bar = 1}).find("not a registered memory BAR"),
            std::string::npos);
  EXPECT_NE(err({.vectors = 4, .table_offset = 4}).find("qword"), std::string::npos);
  EXPECT_NE(err({.vectors = 512, .pba_offset = 0x800}).find("does not fit"), std::string::npos);
  EXPECT_NE(err({.vectors = 4, .pba_offset = 0x38}).find("overlap"), std::string::npos);
  EXPECT_TRUE(d.init_msix({.vectors = 4, .pba_offset = 0x800}).ok());
  EXPECT_NE(err({.vectors = 4, .pba_offset = 0x800}).find("already"), std::string::npos);
}

TEST(Msix, ExclusiveBar) {
  class Dev : public PciDevice {
   public:
    Dev() : PciDevice("dev", PciKind::kConventional) {}
  };
  Dev d;
  ASSERT_TRUE(d.init_msix_exclusive_bar(1, 2048).ok());
  EXPECT_EQ(d.msix_vectors(), 2048u);
  EXPECT_EQ(d.bar_size(1), 0x10000u);  // 32 KiB table + 256 B PBA
  const uint8_t cap = *d.find_capability(kCapMsix);
  EXPECT_EQ(d.config_read(cap + kMsixControl, 2), 2047u);
  EXPECT_EQ(d.config_read(cap + kMsixPba, 4), 0x8000u | 1u);
  // Plain reads of the rest of the BAR return zero.
  EXPECT_EQ(d.bar_handler(1).read(0xf000, 4), 0u);
}

}  // namespace
}  // namespace ferry::pci
