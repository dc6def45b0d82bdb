#include "hw/virtio/net/rx_filter.h"

#include <gtest/gtest.h>

#include "hw/virtio/net/net_test_frames.h"

namespace ferry::virtio::net {
namespace {

using testing::frame_to;
using testing::kBroadcast;
using testing::kDeviceMac;
using testing::kMulticast;
using testing::kOtherMulticast;
using testing::kOtherUnicast;

// A filter as a driver leaves it after negotiation, promiscuous mode off.
RxFilter filtering(bool ctrl_vlan = false) {
  RxFilter filter;
  filter.reset(kDeviceMac);
  filter.features_negotiated(ctrl_vlan);
  filter.promisc = 0;
  return filter;
}

void set_table(RxFilter& filter, std::initializer_list<MacAddress> unicast,
               std::initializer_list<MacAddress> multicast) {
  MacTable& table = filter.mac_table;
  table = MacTable{};
  for (const MacAddress& mac : unicast) {
    std::copy(mac.begin(), mac.end(), table.macs.begin() + table.in_use++ * kMacSize);
  }
  table.first_multi = table.in_use;
  for (const MacAddress& mac : multicast) {
    std::copy(mac.begin(), mac.end(), table.macs.begin() + table.in_use++ * kMacSize);
  }
}

TEST(RxFilterTest, ResetIsPromiscuousAndPassesEverything) {
  RxFilter filter;
  filter.nobcast = 1;
  filter.reset(kDeviceMac);
  EXPECT_EQ(filter.promisc, 1);
  EXPECT_EQ(filter.nobcast, 0);
  EXPECT_EQ(filter.mac, kDeviceMac);
  filter.nouni = 1;  // promiscuous wins over every other mode
  filter.nomulti = 1;
  filter.nobcast = 1;
  EXPECT_TRUE(filter.accepts(frame_to(kOtherUnicast)));
  EXPECT_TRUE(filter.accepts(frame_to(kBroadcast)));
  EXPECT_TRUE(filter.accepts(frame_to(kMulticast, 7)));
  EXPECT_TRUE(filter.accepts({}));
}

TEST(RxFilterTest, UnicastOwnAddressAndTable) {
  RxFilter filter = filtering();
  EXPECT_TRUE(filter.accepts(frame_to(kDeviceMac)));
  EXPECT_FALSE(filter.accepts(frame_to(kOtherUnicast)));
  set_table(filter, {kOtherUnicast}, {});
  EXPECT_TRUE(filter.accepts(frame_to(kOtherUnicast)));
  // The driver's new address (MAC ADDR_SET) is the one matched.
  filter.mac = MacAddress{0x02, 0, 0, 0, 0, 0x77};
  EXPECT_FALSE(filter.accepts(frame_to(kDeviceMac)));
  EXPECT_TRUE(filter.accepts(frame_to(filter.mac)));
}

TEST(RxFilterTest, UnicastModes) {
  RxFilter filter = filtering();
  filter.alluni = 1;
  EXPECT_TRUE(filter.accepts(frame_to(kOtherUnicast)));
  filter.nouni = 1;  // nouni is checked first: even the device's own address is dropped
  EXPECT_FALSE(filter.accepts(frame_to(kOtherUnicast)));
  EXPECT_FALSE(filter.accepts(frame_to(kDeviceMac)));
  filter.nouni = filter.alluni = 0;
  filter.mac_table.uni_overflow = 1;
  EXPECT_TRUE(filter.accepts(frame_to(kOtherUnicast)));
  // Unicast modes leave multicast alone.
  EXPECT_FALSE(filter.accepts(frame_to(kMulticast)));
}

TEST(RxFilterTest, MulticastTableAndModes) {
  RxFilter filter = filtering();
  EXPECT_FALSE(filter.accepts(frame_to(kMulticast)));
  set_table(filter, {}, {kMulticast});
  EXPECT_TRUE(filter.accepts(frame_to(kMulticast)));
  EXPECT_FALSE(filter.accepts(frame_to(kOtherMulticast)));
  filter.allmulti = 1;
  EXPECT_TRUE(filter.accepts(frame_to(kOtherMulticast)));
  filter.nomulti = 1;  // nomulti wins over allmulti and the table
  EXPECT_FALSE(filter.accepts(frame_to(kOtherMulticast)));
  EXPECT_FALSE(filter.accepts(frame_to(kMulticast)));
  filter.nomulti = filter.allmulti = 0;
  filter.mac_table.multi_overflow = 1;
  EXPECT_TRUE(filter.accepts(frame_to(kOtherMulticast)));
  EXPECT_FALSE(filter.accepts(frame_to(kOtherUnicast)));
}

TEST(RxFilterTest, TableHalvesAreSearchedSeparately) {
  RxFilter filter = filtering();
  // A group address in the unicast half and a unicast one in the multicast half match
  // nothing: QEMU searches unicast in [0, first_multi) and multicast from first_multi.
  set_table(filter, {kMulticast}, {kOtherUnicast});
  EXPECT_FALSE(filter.accepts(frame_to(kMulticast)));
  EXPECT_FALSE(filter.accepts(frame_to(kOtherUnicast)));
}

TEST(RxFilterTest, Broadcast) {
  RxFilter filter = filtering();
  EXPECT_TRUE(filter.accepts(frame_to(kBroadcast)));
  filter.nomulti = 1;  // broadcast is not subject to multicast modes
  EXPECT_TRUE(filter.accepts(frame_to(kBroadcast)));
  filter.nomulti = 0;
  filter.nobcast = 1;
  filter.allmulti = 1;
  filter.mac_table.multi_overflow = 1;
  EXPECT_FALSE(filter.accepts(frame_to(kBroadcast)));
}

TEST(RxFilterTest, VlanTableWithCtrlVlan) {
  RxFilter filter = filtering(/*ctrl_vlan=*/true);
  EXPECT_FALSE(filter.accepts(frame_to(kDeviceMac, 100)));
  EXPECT_FALSE(filter.accepts(frame_to(kBroadcast, 100)));  // VLAN is checked first
  EXPECT_TRUE(filter.accepts(frame_to(kDeviceMac)));        // untagged frames pass
  filter.set_vlan(100, true);
  EXPECT_TRUE(filter.accepts(frame_to(kDeviceMac, 100)));
  EXPECT_TRUE(filter.accepts(frame_to(kBroadcast, 100)));
  EXPECT_FALSE(filter.accepts(frame_to(kOtherUnicast, 100)));  // then the MAC rules
  EXPECT_FALSE(filter.accepts(frame_to(kDeviceMac, 101)));
  filter.set_vlan(100, false);
  EXPECT_FALSE(filter.accepts(frame_to(kDeviceMac, 100)));
  // The priority bits and CFI are not part of the VID.
  filter.set_vlan(5, true);
  std::vector<uint8_t> tagged = frame_to(kDeviceMac, 5);
  tagged[14] |= 0xf0;
  EXPECT_TRUE(filter.accepts(tagged));
}

TEST(RxFilterTest, VlansPassWithoutCtrlVlan) {
  RxFilter filter = filtering(/*ctrl_vlan=*/false);
  EXPECT_TRUE(filter.accepts(frame_to(kDeviceMac, 0)));
  EXPECT_TRUE(filter.accepts(frame_to(kDeviceMac, 4095)));
  EXPECT_TRUE(filter.vlan_allowed(4095));
  EXPECT_FALSE(filter.vlan_allowed(4096));
  // Renegotiating with CTRL_VLAN empties the table.
  filter.features_negotiated(true);
  EXPECT_FALSE(filter.vlan_allowed(0));
  EXPECT_FALSE(filter.accepts(frame_to(kDeviceMac, 0)));
}

TEST(RxFilterTest, ShortFramesAreJudgedZeroPadded) {
  RxFilter filter = filtering();
  // Nothing at all: destination 00:00:00:00:00:00, an unknown unicast address.
  EXPECT_FALSE(filter.accepts({}));
  filter.alluni = 1;
  EXPECT_TRUE(filter.accepts({}));
  filter.alluni = 0;
  // Three bytes of broadcast: ff:ff:ff:00:00:00 is a group address but not broadcast.
  const std::vector<uint8_t> stub{0xff, 0xff, 0xff};
  EXPECT_FALSE(filter.accepts(stub));
  filter.allmulti = 1;
  EXPECT_TRUE(filter.accepts(stub));
  // A bare header cut inside the tag: VID bytes missing read as VID 0.
  RxFilter vlan_filter = filtering(true);
  std::vector<uint8_t> cut = frame_to(kDeviceMac, 0);
  cut.resize(14);
  EXPECT_FALSE(vlan_filter.accepts(cut));
  vlan_filter.set_vlan(0, true);
  EXPECT_TRUE(vlan_filter.accepts(cut));
  // The device's own address alone (6 bytes) passes.
  EXPECT_TRUE(filtering().accepts(std::vector<uint8_t>(kDeviceMac.begin(), kDeviceMac.end())));
}

TEST(RxFilterTest, FirstMultiIsDerivedAfterLoad) {
  RxFilter filter = filtering();
  set_table(filter, {kOtherUnicast, kDeviceMac}, {kMulticast});
  filter.mac_table.first_multi = 0;
  filter.mac_table.derive_first_multi();
  EXPECT_EQ(filter.mac_table.first_multi, 2u);
  filter.mac_table.in_use = 1000;  // hostile count: bounded by the table
  filter.mac_table.derive_first_multi();
  EXPECT_EQ(filter.mac_table.first_multi, 2u);
  EXPECT_TRUE(filter.accepts(frame_to(kMulticast)));
}

}  // namespace
}  // namespace ferry::virtio::net
