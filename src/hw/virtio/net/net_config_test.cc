#include "hw/virtio/net/net_config.h"

#include <gtest/gtest.h>

#include "hw/virtio/net/net_features.h"
#include "hw/virtio/net/net_test_frames.h"
#include "spec/virtio_net.h"

namespace ferry::virtio::net {
namespace {

namespace vn = spec::virtio_net;
using testing::kDeviceMac;

std::vector<uint8_t> config_bytes(uint64_t requested, const NetConfigFields& fields) {
  std::vector<uint8_t> config(net_config_size(requested));
  fill_net_config(config, fields);
  return config;
}

TEST(NetConfigTest, DefaultDevice) {
  const uint64_t requested = default_property_features();
  EXPECT_EQ(net_config_size(requested), 8u);
  NetConfigFields fields;
  fields.mac = kDeviceMac;
  fields.status = vn::kStatusLinkUp;
  // QEMU 7.2 (observed): 52 54 00 12 34 56 01 00, then 0xff past config_len.
  EXPECT_EQ(config_bytes(requested, fields),
            (std::vector<uint8_t>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x01, 0x00}));
}

TEST(NetConfigTest, MultiqueueDevice) {
  const uint64_t requested = default_property_features() | vn::bit(vn::kFMq);
  EXPECT_EQ(net_config_size(requested), 10u);
  NetConfigFields fields;
  fields.mac = kDeviceMac;
  fields.status = vn::kStatusLinkUp;
  fields.max_queue_pairs = 4;
  // QEMU 7.2 with mq=on and tap queues=4 (observed): 52540012345601000400.
  EXPECT_EQ(config_bytes(requested, fields),
            (std::vector<uint8_t>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x01, 0x00, 0x04, 0x00}));
}

TEST(NetConfigTest, SizeFollowsFeatures) {
  EXPECT_EQ(net_config_size(0), 6u);  // MAC is always there
  EXPECT_EQ(net_config_size(vn::bit(vn::kFMtu)), 12u);
  EXPECT_EQ(net_config_size(vn::bit(vn::kFSpeedDuplex)), 17u);
  EXPECT_EQ(net_config_size(vn::bit(vn::kFRss)), 24u);
  EXPECT_EQ(net_config_size(vn::bit(vn::kFHashReport) | vn::bit(vn::kFStatus)), 24u);
}

TEST(NetConfigTest, AllFields) {
  NetConfigFields fields;
  fields.mac = kDeviceMac;
  fields.status = vn::kStatusLinkUp | vn::kStatusAnnounce;
  fields.max_queue_pairs = 2;
  fields.mtu = 9000;
  fields.speed = 10000;
  fields.duplex = vn::kDuplexFull;
  fields.rss_offered = true;
  std::vector<uint8_t> config(24);
  fill_net_config(config, fields);
  EXPECT_EQ(config, (std::vector<uint8_t>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // mac
                                          0x03, 0x00,                          // status
                                          0x02, 0x00,                          // pairs
                                          0x28, 0x23,                          // mtu
                                          0x10, 0x27, 0x00, 0x00,              // speed
                                          0x01,                                // duplex
                                          40,                                  // key size
                                          0x80, 0x00,                          // table length
                                          0xff, 0x01, 0x00, 0x00}));           // hash types
  // Unknown speed and duplex, and no RSS: a one-entry table.
  fields = NetConfigFields{};
  fill_net_config(config, fields);
  EXPECT_EQ(config[12], 0xff);
  EXPECT_EQ(config[15], 0xff);
  EXPECT_EQ(config[16], 0xff);
  EXPECT_EQ(config[18], 1);
}

TEST(NetConfigTest, OnlyLegacyDriversWithoutCtrlMacAddrWriteTheMac) {
  std::vector<uint8_t> written{0x02, 0, 0, 0, 0, 0x42, 0x01, 0x00};
  MacAddress mac = kDeviceMac;
  EXPECT_FALSE(apply_net_config_write(written, uint64_t{1} << 32, mac));  // VERSION_1
  EXPECT_FALSE(apply_net_config_write(written, vn::bit(vn::kFCtrlMacAddr), mac));
  EXPECT_EQ(mac, kDeviceMac);
  EXPECT_TRUE(apply_net_config_write(written, vn::bit(vn::kFMac), mac));
  EXPECT_EQ(mac, (MacAddress{0x02, 0, 0, 0, 0, 0x42}));
  EXPECT_FALSE(apply_net_config_write(written, 0, mac));  // same address: no change
  EXPECT_FALSE(apply_net_config_write(std::vector<uint8_t>{1, 2, 3}, 0, mac));
}

}  // namespace
}  // namespace ferry::virtio::net
