#include "hw/virtio/net/query_rx_filter.h"

#include <gtest/gtest.h>

#include "hw/virtio/net/ctrl_commands.h"
#include "hw/virtio/net/net_test_frames.h"
#include "hw/virtio/net/rx_filter_event.h"

namespace ferry::virtio::net {
namespace {

namespace vn = spec::virtio_net;
using testing::kDeviceMac;
using testing::put_le16;
using testing::put_le32;
using testing::put_mac;

using testing::kStreamNegotiated;  // CTRL_VLAN among them

TEST(QueryRxFilterTest, AfterResetAsQemu72PrintsIt) {
  RxFilter filter;
  filter.reset(kDeviceMac);
  const nlohmann::ordered_json info = query_rx_filter_info("nic0", filter, false);
  // QEMU 7.2.22, -device virtio-net-pci,id=nic0,mac=52:54:00:12:34:56, no driver (observed).
  std::string vlans;
  for (int vid = 4095; vid >= 0; --vid) vlans += std::to_string(vid) + (vid ? "," : "");
  const std::string expected =
      R"({"promiscuous":true,"name":"nic0","main-mac":"52:54:00:12:34:56","unicast":"normal",)"
      R"("vlan":"all","vlan-table":[)" + vlans +
      R"(],"unicast-table":[],"multicast":"normal","multicast-overflow":false,)"
      R"("unicast-overflow":false,"multicast-table":[],"broadcast-allowed":false})";
  EXPECT_EQ(info.dump(), expected);
}

// The research's ctrl-queue session against QEMU 7.2 (§4.7): promisc off, allmulti on, one
// unicast and one multicast entry, VLAN 100, nobcast never set.
TEST(QueryRxFilterTest, AfterControlCommands) {
  NetDeviceState state;
  state.reset(kDeviceMac);
  state.features_negotiated(kStreamNegotiated);
  auto run = [&](std::vector<uint8_t> bytes) {
    return execute_ctrl_command(state, kStreamNegotiated, bytes, 1).ack;
  };
  ASSERT_EQ(run({vn::kCtrlRx, vn::kCtrlRxPromisc, 0}), vn::kCtrlOk);
  ASSERT_EQ(run({vn::kCtrlRx, vn::kCtrlRxAllmulti, 1}), vn::kCtrlOk);
  std::vector<uint8_t> table{vn::kCtrlMac, vn::kCtrlMacTableSet};
  put_le32(table, 1);
  put_mac(table, {0x02, 0, 0, 0, 0, 0x02});
  put_le32(table, 1);
  put_mac(table, {0x01, 0x00, 0x5e, 0, 0, 0x01});
  ASSERT_EQ(run(table), vn::kCtrlOk);
  std::vector<uint8_t> vlan{vn::kCtrlVlan, vn::kCtrlVlanAdd};
  put_le16(vlan, 100);
  ASSERT_EQ(run(vlan), vn::kCtrlOk);

  EXPECT_EQ(query_rx_filter_info("nic0", state.rx, true).dump(),
            R"({"promiscuous":false,"name":"nic0","main-mac":"52:54:00:12:34:56",)"
            R"("unicast":"normal","vlan":"normal","vlan-table":[100],)"
            R"("unicast-table":["02:00:00:00:00:02"],"multicast":"all",)"
            R"("multicast-overflow":false,"unicast-overflow":false,)"
            R"("multicast-table":["01:00:5e:00:00:01"],"broadcast-allowed":false})");
}

TEST(QueryRxFilterTest, ModesOverflowAndListOrder) {
  RxFilter filter;
  filter.reset(kDeviceMac);
  filter.features_negotiated(true);
  filter.nouni = filter.alluni = 1;  // none wins over all
  filter.nomulti = 1;
  filter.nobcast = 1;  // printed as is: QEMU 7.2's inverted "broadcast-allowed"
  filter.mac_table.multi_overflow = 1;
  filter.set_vlan(5, true);
  filter.set_vlan(3000, true);
  MacTable& table = filter.mac_table;
  const uint8_t macs[] = {0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x01, 0, 0, 0, 0, 3};
  std::copy(std::begin(macs), std::end(macs), table.macs.begin());
  table.in_use = 3;
  table.first_multi = 2;

  const nlohmann::ordered_json info = query_rx_filter_info("n", filter, true);
  EXPECT_EQ(info["unicast"], "none");
  EXPECT_EQ(info["multicast"], "none");
  EXPECT_EQ(info["broadcast-allowed"], true);
  EXPECT_EQ(info["multicast-overflow"], true);
  EXPECT_EQ(info["vlan"], "normal");
  // Last entry first, as QEMU prepends to its lists.
  EXPECT_EQ(info["vlan-table"].dump(), "[3000,5]");
  EXPECT_EQ(info["unicast-table"].dump(), R"(["02:00:00:00:00:02","02:00:00:00:00:01"])");
  EXPECT_EQ(info["multicast-table"].dump(), R"(["01:00:00:00:00:03"])");

  filter.alluni = filter.allmulti = 1;
  filter.nouni = filter.nomulti = 0;
  filter.set_vlan(5, false);
  filter.set_vlan(3000, false);
  const nlohmann::ordered_json all = query_rx_filter_info("n", filter, true);
  EXPECT_EQ(all["unicast"], "all");
  EXPECT_EQ(all["multicast"], "all");
  EXPECT_EQ(all["vlan"], "none");  // CTRL_VLAN negotiated, empty table
  EXPECT_EQ(all["vlan-table"].dump(), "[]");
}

TEST(QueryRxFilterTest, HostileTableCountsStayInBounds) {
  RxFilter filter;
  filter.reset(kDeviceMac);
  filter.mac_table.in_use = 1000;
  filter.mac_table.first_multi = 900;
  const nlohmann::ordered_json info = query_rx_filter_info("n", filter, false);
  EXPECT_EQ(info["unicast-table"].size(), kMacTableEntries);
  EXPECT_EQ(info["multicast-table"].size(), 0u);
}

TEST(RxFilterEventGateTest, OncePerQuery) {
  RxFilterEventGate gate;
  EXPECT_TRUE(gate.take());
  EXPECT_FALSE(gate.take());
  EXPECT_FALSE(gate.take());
  gate.queried();
  EXPECT_TRUE(gate.take());
  EXPECT_FALSE(gate.take());
}

}  // namespace
}  // namespace ferry::virtio::net
