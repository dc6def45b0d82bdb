#include "hw/pci/capability_walk.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "hw/pci/test_fakes.h"

namespace ferry::pci {
namespace {

using ::testing::ElementsAre;
using test::TestDevice;

TEST(CapabilityWalk, FindsEveryCapabilityInListOrder) {
  TestDevice d;
  auto pm = d.find_capability(kCapPowerManagement);
  auto exp = d.find_capability(kCapExpress);
  auto msix = d.find_capability(kCapMsix);
  ASSERT_TRUE(pm && exp && msix);
  EXPECT_THAT(walk_capabilities(d),
              ElementsAre(CapabilityEntry{false, kCapPowerManagement, *pm},
                          CapabilityEntry{false, kCapExpress, *exp},
                          CapabilityEntry{false, kCapMsix, *msix}));

  // A conventional function has no express capability and no extended space.
  TestDevice conventional("old", PciKind::kConventional);
  EXPECT_EQ(walk_capabilities(conventional).size(), 2u);
}

TEST(CapabilityWalk, WalksTheExtendedListOfExpressFunctions) {
  TestDevice d;
  // SR-IOV (0x0010) at 0x100, then vendor-specific (0x000b) at 0x140, end.
  d.set_config_u32(0x100, 0x0010 | 1u << 16 | 0x140u << 20);
  d.set_config_u32(0x140, 0x000b | 1u << 16);
  auto caps = walk_capabilities(d);
  ASSERT_EQ(caps.size(), 5u);
  EXPECT_EQ(caps[3], (CapabilityEntry{true, 0x0010, 0x100}));
  EXPECT_EQ(caps[4], (CapabilityEntry{true, 0x000b, 0x140}));
}

TEST(CapabilityWalk, LoopingListsEnd) {
  TestDevice d;
  // The last standard capability points back at the first; the extended list at itself.
  auto msix = d.find_capability(kCapMsix);
  d.set_config_u8(*msix + 1, d.config_u8(kCapabilityPointer));
  d.set_config_u32(0x100, 0x0010 | 1u << 16 | 0x100u << 20);
  auto caps = walk_capabilities(d);
  EXPECT_EQ(caps.size(), 48u + 960u);

  // No capability list bit: nothing in the standard list is looked at.
  d.set_config_u16(kStatus, 0);
  caps = walk_capabilities(d);
  ASSERT_FALSE(caps.empty());
  EXPECT_TRUE(caps.front().extended);
}

}  // namespace
}  // namespace ferry::pci
