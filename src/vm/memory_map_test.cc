#include <gtest/gtest.h>

#include "guest/pci.h"
#include "vm/machine.h"

namespace ferry::vm {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

TEST(MemoryMap, SmallRamLiesWhollyBelowEcam) {
  MemoryMap m = MemoryMap::for_ram_size(128 * kMiB);
  EXPECT_EQ(m.below_4g, 128 * kMiB);
  EXPECT_EQ(m.above_4g, 0u);
  EXPECT_EQ(m.pci_hole64_base, 4 * kGiB);
  EXPECT_EQ(m.pci_hole64_end, 36 * kGiB);
  MemoryMap largest = MemoryMap::for_ram_size(kEcamBase - 4096);
  EXPECT_EQ(largest.below_4g, kEcamBase - 4096);
  EXPECT_EQ(largest.above_4g, 0u);
}

TEST(MemoryMap, RamFromEcamSizeOnKeeps2GiBBelowAndTheRestAt4GiB) {
  // q35: from 0xb0000000 bytes on, 2 GiB below 4 GiB.
  MemoryMap at = MemoryMap::for_ram_size(kEcamBase);
  EXPECT_EQ(at.below_4g, 2 * kGiB);
  EXPECT_EQ(at.above_4g, kEcamBase - 2 * kGiB);
  EXPECT_EQ(at.pci_hole64_base, 5 * kGiB);  // 4 GiB + 768 MiB rounded up to 1 GiB
  MemoryMap four = MemoryMap::for_ram_size(4 * kGiB);
  EXPECT_EQ(four.below_4g, 2 * kGiB);
  EXPECT_EQ(four.above_4g, 2 * kGiB);
  EXPECT_EQ(four.pci_hole64_base, 6 * kGiB);
  EXPECT_EQ(four.pci_hole64_end, 38 * kGiB);
  MemoryMap odd = MemoryMap::for_ram_size(5 * kGiB + 4096);
  EXPECT_EQ(odd.pci_hole64_base, 8 * kGiB);
}

TEST(MemoryMap, RamOffsetsOfBothParts) {
  MemoryMap m = MemoryMap::for_ram_size(5 * kGiB);
  EXPECT_EQ(m.ram_offset(0, 4096), 0u);
  EXPECT_EQ(m.ram_offset(2 * kGiB - 8, 8), 2 * kGiB - 8);
  EXPECT_FALSE(m.ram_offset(2 * kGiB - 8, 9));  // runs into the hole
  EXPECT_FALSE(m.ram_offset(2 * kGiB, 1));
  EXPECT_EQ(m.ram_offset(4 * kGiB, 8), 2 * kGiB);
  EXPECT_EQ(m.ram_offset(7 * kGiB - 8, 8), 5 * kGiB - 8);
  EXPECT_FALSE(m.ram_offset(7 * kGiB - 8, 9));
  EXPECT_FALSE(m.ram_offset(UINT64_MAX, 1));
}

// The guest knows its board's rule (guest/pci.h cannot see vm/): both must agree.
TEST(MemoryMap, TheGuestsWindowIsTheMachines) {
  for (uint64_t ram : {64 * kMiB, kEcamBase - 4096, kEcamBase, 4 * kGiB, 5 * kGiB,
                       5 * kGiB + 4096, 64 * kGiB}) {
    MemoryMap m = MemoryMap::for_ram_size(ram);
    guest::MmioWindow window = guest::MmioWindow::standard64(ram);
    auto first = window.allocate(kGiB);
    ASSERT_TRUE(first.ok()) << ram;
    EXPECT_EQ(*first, m.pci_hole64_base) << ram;
    for (int i = 1; i < 32; ++i) ASSERT_TRUE(window.allocate(kGiB).ok()) << ram << " " << i;
    auto last = window.allocate(4096);
    EXPECT_FALSE(last.ok()) << ram << ": the window ends 32 GiB on, at 0x" << std::hex
                            << m.pci_hole64_end;
  }
}

}  // namespace
}  // namespace ferry::vm
