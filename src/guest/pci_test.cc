#include "guest/pci.h"

#include <gtest/gtest.h>

#include "guest/test_fakes.h"

namespace ferry::guest {
namespace {

using testing::FakeBus;

TEST(Pci, EnumeratesPresentFunctionsAndFindsByClass) {
  FakeBus bus(4096);
  bus.add_function(0, 0, 0x8086, 0x29c0, 0x060000);
  auto& multi = bus.add_function(2, 0, 0x1af4, 0x1000, 0x020000);
  FakeBus::put(multi.config, 0x0e, 0x80, 1);
  bus.add_function(2, 3, 0x1af4, 0x1001, 0x010802);
  bus.add_function(5, 1, 0x1b36, 0x0010, 0x010802);  // function 1 of a single-function slot
  auto all = enumerate_bus0(bus);
  ASSERT_TRUE(all.ok()) << all.status().to_string();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[1].header_type, 0);  // multi-function bit stripped
  EXPECT_EQ((*all)[2].slot, 2);
  EXPECT_EQ((*all)[2].function, 3);
  auto nvme = find_function_by_class(bus, 0x010802);
  ASSERT_TRUE(nvme.ok());
  EXPECT_EQ(nvme->device_id, 0x1001);
  auto second = find_function_by_class(bus, 0x010802, 1);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("class 0x010802"), std::string::npos);
}

TEST(Pci, SizesAndAssigns32And64BitBars) {
  FakeBus bus(4096);
  auto& fn = bus.add_function(4, 0, 0x1b36, 0x0010, 0x010802);
  FakeBus::put(fn.config, 0x10, 0x4, 4);  // BAR0: 64-bit memory, 16 KiB
  fn.bar_size[0] = 0x4000;
  FakeBus::put(fn.config, 0x18, 0x0, 4);  // BAR2: 32-bit memory, 4 KiB
  fn.bar_size[2] = 0x1000;
  auto found = find_function_by_class(bus, 0x010802);
  ASSERT_TRUE(found.ok());
  MmioWindow window(0xe0001000, 0xe0100000);
  auto bars = assign_bars(bus, *found, window);
  ASSERT_TRUE(bars.ok()) << bars.status().to_string();
  ASSERT_EQ(bars->size(), 5u);  // BAR1 is BAR0's upper half
  EXPECT_EQ((*bars)[0].size, 0x4000u);
  EXPECT_TRUE((*bars)[0].is_64bit);
  EXPECT_EQ((*bars)[0].address, 0xe0004000u);  // aligned to its size
  EXPECT_EQ((*bars)[1].index, 2u);
  EXPECT_EQ((*bars)[1].size, 0x1000u);
  EXPECT_EQ((*bars)[1].address, 0xe0008000u);
  EXPECT_EQ((*bars)[2].size, 0u);
  EXPECT_EQ(FakeBus::get(fn.config, 0x10, 4), 0xe0004004u);
  EXPECT_EQ(FakeBus::get(fn.config, 0x14, 4), 0u);
  EXPECT_EQ(FakeBus::get(fn.config, 0x18, 4), 0xe0008000u);

  ASSERT_TRUE(enable_memory_and_bus_master(bus, *found).ok());
  EXPECT_EQ(FakeBus::get(fn.config, 0x04, 2), 0x6u);
}

TEST(Pci, WindowRefusesWhatDoesNotFit) {
  MmioWindow window(0xfeb00000, 0xfec00000);
  EXPECT_TRUE(window.allocate(0x80000).ok());
  auto big = window.allocate(0x100000);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("no room"), std::string::npos);
  EXPECT_FALSE(window.allocate(0x3000).ok());  // not a power of two
}

TEST(Pci, CapabilityWalkFindsAndDetectsLoops) {
  FakeBus bus(4096);
  auto& fn = bus.add_function(1, 0, 0x1b36, 0x0010, 0x010802);
  FakeBus::put(fn.config, 0x06, 0x10, 2);  // capability list present
  FakeBus::put(fn.config, 0x34, 0x40, 1);
  FakeBus::put(fn.config, 0x40, 0x5001, 2);  // PM -> 0x50
  FakeBus::put(fn.config, 0x50, 0x0011, 2);  // MSI-X, end
  PciFunction f{1, 0};
  auto msix = find_capability(bus, f, pci_config::kCapMsix);
  ASSERT_TRUE(msix.ok());
  ASSERT_TRUE(msix->has_value());
  EXPECT_EQ(**msix, 0x50);
  auto msi = find_capability(bus, f, pci_config::kCapMsi);
  ASSERT_TRUE(msi.ok());
  EXPECT_FALSE(msi->has_value());
  FakeBus::put(fn.config, 0x50, 0x4012, 2);  // id 0x12 pointing back to 0x40: a loop
  auto looping = find_capability(bus, f, pci_config::kCapMsi);
  ASSERT_FALSE(looping.ok());
  EXPECT_NE(looping.status().message().find("malformed"), std::string::npos);
}

TEST(Pci, MsixProgramsTableEntriesInTheirBar) {
  FakeBus bus(4096);
  auto& fn = bus.add_function(1, 0, 0x1b36, 0x0010, 0x010802);
  FakeBus::put(fn.config, 0x06, 0x10, 2);
  FakeBus::put(fn.config, 0x34, 0x40, 1);
  FakeBus::put(fn.config, 0x40, 0x0011, 2);
  FakeBus::put(fn.config, 0x42, 0x0040, 2);          // 65 vectors
  FakeBus::put(fn.config, 0x44, 0x2000, 4);          // table in BAR0 at 0x2000
  FakeBus::put(fn.config, 0x48, 0x3000, 4);          // PBA in BAR0 at 0x3000
  std::vector<PciBar> bars = {{0, 0xe0000000, 0x4000}};
  PciFunction f{1, 0};
  auto msix = Msix::probe(bus, f, bars);
  ASSERT_TRUE(msix.ok()) << msix.status().to_string();
  EXPECT_EQ(msix->info().table_size, 65u);
  EXPECT_EQ(msix->table_address(), 0xe0002000u);
  ASSERT_TRUE(msix->set_vector(bus, 2, 0x1234567000ull, 0xabc).ok());
  std::map<uint64_t, uint64_t> last;
  for (const auto& w : bus.mmio_writes) last[w.addr] = w.value;
  EXPECT_EQ(last[0xe0002020], 0x34567000u);
  EXPECT_EQ(last[0xe0002024], 0x12u);
  EXPECT_EQ(last[0xe0002028], 0xabcu);
  EXPECT_EQ(last[0xe000202c], 0u);  // unmasked last
  EXPECT_FALSE(msix->set_vector(bus, 65, 0, 0).ok());
  ASSERT_TRUE(msix->enable(bus).ok());
  EXPECT_EQ(FakeBus::get(fn.config, 0x42, 2), 0x8040u);

  std::vector<PciBar> no_bars;
  EXPECT_FALSE(Msix::probe(bus, f, no_bars).ok());
}

TEST(Pci, IntxDisableBitAndInterruptLine) {
  FakeBus bus(4096);
  auto& fn = bus.add_function(4, 0, 0x1b36, 0x0010, 0x010802);
  FakeBus::put(fn.config, 0x04, 0x0006, 2);
  FakeBus::put(fn.config, 0x3c, 11, 1);
  auto found = find_function_by_class(bus, 0x010802);
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(set_intx_disable(bus, *found, true).ok());
  EXPECT_EQ(FakeBus::get(fn.config, 0x04, 2), 0x0406u) << "only bit 10 changes";
  ASSERT_TRUE(set_intx_disable(bus, *found, false).ok());
  EXPECT_EQ(FakeBus::get(fn.config, 0x04, 2), 0x0006u);
  auto line = interrupt_line(bus, *found);
  ASSERT_TRUE(line.ok());
  EXPECT_EQ(*line, 11);
}

TEST(Pci, The64BitWindowLiesAbove4GiB) {
  MmioWindow window = MmioWindow::standard64();
  auto first = window.allocate(0x4000);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, uint64_t{1} << 32);
  EXPECT_FALSE(window.allocate(uint64_t{64} << 30).ok()) << "32 GiB in all";
}

}  // namespace
}  // namespace ferry::guest
