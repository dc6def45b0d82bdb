#include "hw/virtio/net/rx_filter_vmstate.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "hw/virtio/net/net_test_frames.h"

namespace ferry::virtio::net {
namespace {

using testing::kDeviceMac;
using testing::kMulticast;
using testing::kOtherUnicast;

std::vector<uint8_t> from_hex(std::string_view text) {
  std::vector<uint8_t> out;
  std::string digits;
  for (char c : text) {
    if (c != ' ') digits.push_back(c);
  }
  for (size_t i = 0; i + 1 < digits.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoul(digits.substr(i, 2), nullptr, 16)));
  }
  return out;
}

template <typename Desc>
std::vector<uint8_t> save(const Desc& desc, RxFilter& filter) {
  ByteWriter writer;
  Status st = desc.save(filter, writer);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return writer.to_vector();
}

template <typename Desc>
Status load(const Desc& desc, RxFilter& filter, const std::vector<uint8_t>& bytes,
            size_t* consumed = nullptr) {
  ByteReader reader(bytes);
  Status st = desc.load(filter, reader);
  if (consumed) *consumed = reader.offset();
  return st;
}

// A filter a driver has configured: promisc off, allmulti, one unicast and one multicast
// entry, VLANs 0 and 100, nobcast, the overflow flags clear.
RxFilter configured() {
  RxFilter filter;
  filter.reset(kDeviceMac);
  filter.features_negotiated(true);
  filter.promisc = 0;
  filter.allmulti = 1;
  filter.nobcast = 1;
  MacTable& table = filter.mac_table;
  std::copy(kOtherUnicast.begin(), kOtherUnicast.end(), table.macs.begin());
  std::copy(kMulticast.begin(), kMulticast.end(), table.macs.begin() + 6);
  table.in_use = 2;
  table.first_multi = 1;
  filter.set_vlan(0, true);
  filter.set_vlan(100, true);
  return filter;
}

TEST(RxFilterVmstateTest, DescriptionsPassTheirChecks) {
  EXPECT_TRUE(kRxFilterMacState.check().ok());
  EXPECT_TRUE(kRxFilterTablesState.check().ok());
  EXPECT_TRUE(kRxFilterModesState.check().ok());
}

TEST(RxFilterVmstateTest, BytesAreQemu72s) {
  RxFilter filter = configured();
  EXPECT_EQ(save(kRxFilterMacState, filter), from_hex("525400123456"));

  // promisc, allmulti, in_use be32, the entries, then 128 little-endian words: VLAN 0 is
  // bit 0 of word 0, VLAN 100 bit 4 of word 3. (The same run, then has_vnet_hdr and the
  // six mode bytes, was found in a QEMU 7.2.22 stream after these commands.)
  std::vector<uint8_t> expected = from_hex("00 01 00000002 020000000002 01005e000001");
  std::vector<uint8_t> vlans(512, 0);
  vlans[0] = 0x01;
  vlans[12] = 0x10;
  expected.insert(expected.end(), vlans.begin(), vlans.end());
  EXPECT_EQ(save(kRxFilterTablesState, filter), expected);

  filter.mac_table.uni_overflow = 1;
  filter.nouni = 2;  // kept as the driver sent it
  EXPECT_EQ(save(kRxFilterModesState, filter), from_hex("00 01 00 00 02 01"));
}

TEST(RxFilterVmstateTest, RoundTrip) {
  RxFilter source = configured();
  source.mac = MacAddress{0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
  source.mac_table.multi_overflow = 1;
  source.alluni = 1;
  const auto mac = save(kRxFilterMacState, source);
  const auto tables = save(kRxFilterTablesState, source);
  const auto modes = save(kRxFilterModesState, source);

  RxFilter destination;
  destination.reset(kDeviceMac);  // a fresh destination: promiscuous, every VLAN
  ASSERT_TRUE(load(kRxFilterMacState, destination, mac).ok());
  ASSERT_TRUE(load(kRxFilterTablesState, destination, tables).ok());
  ASSERT_TRUE(load(kRxFilterModesState, destination, modes).ok());

  EXPECT_EQ(destination.mac, source.mac);
  EXPECT_EQ(destination.promisc, 0);
  EXPECT_EQ(destination.allmulti, 1);
  EXPECT_EQ(destination.alluni, 1);
  EXPECT_EQ(destination.nobcast, 1);
  EXPECT_EQ(destination.mac_table.in_use, 2u);
  EXPECT_EQ(destination.mac_table.first_multi, 1u);  // found again: not on the wire
  EXPECT_EQ(destination.mac_table.macs, source.mac_table.macs);
  EXPECT_EQ(destination.mac_table.multi_overflow, 1);
  // The VLAN table survives the load (QEMU 7.2 loses it).
  EXPECT_EQ(destination.vlans, source.vlans);
  EXPECT_TRUE(destination.vlan_allowed(100));
  EXPECT_FALSE(destination.vlan_allowed(101));
  // And the loaded filter decides as the saved one.
  for (const auto& frame : {testing::frame_to(kOtherUnicast, 100),
                            testing::frame_to(kOtherUnicast, 101),
                            testing::frame_to(testing::kBroadcast),
                            testing::frame_to(testing::kOtherMulticast)}) {
    EXPECT_EQ(destination.accepts(frame), source.accepts(frame));
  }
}

TEST(RxFilterVmstateTest, MoreThan64EntriesAreRefused) {
  std::vector<uint8_t> bytes = from_hex("00 00 00000041");
  bytes.resize(bytes.size() + 65 * 6 + 512, 0);
  RxFilter filter;
  filter.reset(kDeviceMac);
  Status st = load(kRxFilterTablesState, filter, bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("65"), std::string::npos) << st.to_string();
  EXPECT_NE(st.to_string().find("64"), std::string::npos) << st.to_string();
}

TEST(RxFilterVmstateTest, TruncatedStreamIsRefused) {
  RxFilter filter = configured();
  std::vector<uint8_t> bytes = save(kRxFilterTablesState, filter);
  bytes.resize(bytes.size() - 1);
  RxFilter destination;
  EXPECT_FALSE(load(kRxFilterTablesState, destination, bytes).ok());
}

}  // namespace
}  // namespace ferry::virtio::net
