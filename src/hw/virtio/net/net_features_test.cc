#include "hw/virtio/net/net_features.h"

#include <gtest/gtest.h>

namespace ferry::virtio::net {
namespace {

namespace vn = spec::virtio_net;

constexpr uint64_t kVersion1 = uint64_t{1} << 32;

// What a modern driver reads from device_feature: the transport adds VERSION_1 and hides
// the legacy-only bits.
uint64_t modern_view(uint64_t offered) { return (offered | kVersion1) & ~legacy_only_features(); }

TEST(NetFeaturesTest, DefaultsOverAStreamBackend) {
  const uint64_t offered = offered_net_features(default_property_features(), {});
  // QEMU 7.2, -netdev stream (observed).
  EXPECT_EQ(modern_view(offered), 0x0000'0101'30bf'8024u);
  // A legacy driver also sees GSO, NOTIFY_ON_EMPTY and ANY_LAYOUT.
  EXPECT_EQ(offered, 0x0000'0100'39bf'8064u);
}

TEST(NetFeaturesTest, DefaultsOverTap) {
  const uint64_t requested = default_property_features();
  EXPECT_EQ(modern_view(offered_net_features(requested, {.vnet_hdr = true, .ufo = true})),
            0x0000'0101'30bf'ffa7u);
  EXPECT_EQ(modern_view(offered_net_features(requested | vn::bit(vn::kFMq),
                                             {.vnet_hdr = true, .ufo = true})),
            0x0000'0101'30ff'ffa7u);
  // A vnet header without UFO keeps the other offloads.
  const uint64_t no_ufo = offered_net_features(requested, {.vnet_hdr = true, .ufo = false});
  EXPECT_EQ(no_ufo & (vn::bit(vn::kFGuestUfo) | vn::bit(vn::kFHostUfo)), 0u);
  EXPECT_NE(no_ufo & vn::bit(vn::kFGuestTso4), 0u);
}

TEST(NetFeaturesTest, BackendWithoutVnetHeaderDropsHashReport) {
  const uint64_t requested = default_property_features() | vn::bit(vn::kFHashReport) |
                             vn::bit(vn::kFRss);
  const uint64_t offered = offered_net_features(requested, {});
  EXPECT_EQ(offered & vn::bit(vn::kFHashReport), 0u);
  EXPECT_NE(offered & vn::bit(vn::kFRss), 0u);  // software RSS needs no vnet header
}

TEST(NetFeaturesTest, PropertiesTurnBitsOnAndOff) {
  ASSERT_NE(find_feature_property("mrg_rxbuf"), nullptr);
  EXPECT_EQ(find_feature_property("mrg_rxbuf")->bit, vn::kFMrgRxbuf);
  EXPECT_TRUE(find_feature_property("ctrl_vq")->default_on);
  EXPECT_FALSE(find_feature_property("mq")->default_on);
  EXPECT_FALSE(find_feature_property("packed")->default_on);
  EXPECT_EQ(find_feature_property("packed")->bit, 34u);
  EXPECT_EQ(find_feature_property("queue_reset")->bit, 40u);
  EXPECT_EQ(find_feature_property("rss")->bit, vn::kFRss);
  EXPECT_EQ(find_feature_property("nonsense"), nullptr);
  // mrg_rxbuf=off, event_idx=off over a stream backend.
  const uint64_t requested = default_property_features() & ~vn::bit(vn::kFMrgRxbuf) &
                             ~(uint64_t{1} << 29);
  EXPECT_EQ(modern_view(offered_net_features(requested, {})), 0x0000'0101'10bf'0024u);
  // MAC cannot be turned off.
  EXPECT_NE(offered_net_features(0, {}) & vn::bit(vn::kFMac), 0u);
}

TEST(NetFeaturesTest, LinkProperties) {
  NetProperties properties;
  properties.host_mtu = 1400;
  properties.speed = 1000;
  properties.duplex = "full";
  properties.failover = true;
  Result<NetConfiguration> config =
      configure_net_device(default_property_features(), properties, 1);
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_NE(config->requested_features & vn::bit(vn::kFMtu), 0u);
  EXPECT_NE(config->requested_features & vn::bit(vn::kFSpeedDuplex), 0u);
  EXPECT_NE(config->requested_features & vn::bit(vn::kFStandby), 0u);
  EXPECT_EQ(config->mtu, 1400);
  EXPECT_EQ(config->speed, 1000);
  EXPECT_EQ(config->duplex, vn::kDuplexFull);

  // Defaults: none of them, speed and duplex unknown.
  Result<NetConfiguration> plain = configure_net_device(default_property_features(), {}, 0);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->requested_features, default_property_features());
  EXPECT_EQ(plain->speed, -1);
  EXPECT_EQ(plain->duplex, vn::kDuplexUnknown);
  EXPECT_EQ(plain->max_queue_pairs, 1);
  // Duplex alone also offers SPEED_DUPLEX.
  NetProperties half;
  half.duplex = "half";
  EXPECT_NE(configure_net_device(0, half, 1)->requested_features & vn::bit(vn::kFSpeedDuplex),
            0u);
}

TEST(NetFeaturesTest, RealizeRefusesBadProperties) {
  NetProperties properties;
  properties.duplex = "Full";
  EXPECT_EQ(configure_net_device(0, properties, 1).status().message(),
            "'duplex' must be 'half' or 'full'");
  properties = NetProperties{};
  properties.speed = -2;
  EXPECT_EQ(configure_net_device(0, properties, 1).status().message(),
            "'speed' must be between 0 and INT_MAX");
  properties = NetProperties{};
  properties.rx_queue_size = 128;
  EXPECT_EQ(configure_net_device(0, properties, 1).status().message(),
            "Invalid rx_queue_size (= 128), must be a power of 2 between 256 and 1024.");
  properties = NetProperties{};
  properties.tx_queue_size = 1000;
  EXPECT_EQ(configure_net_device(0, properties, 1).status().message(),
            "Invalid tx_queue_size (= 1000), must be a power of 2 between 256 and 1024");
  EXPECT_EQ(configure_net_device(0, {}, 512).status().message(),
            "Invalid number of queue pairs (= 512), must be a positive integer less than 511.");
  Result<NetConfiguration> big = configure_net_device(0, {}, 511);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->max_queue_pairs, 511);
  // A larger TX ring is accepted but clamped (vhost-user only gets more).
  properties = NetProperties{};
  properties.tx_queue_size = 1024;
  properties.rx_queue_size = 1024;
  EXPECT_EQ(configure_net_device(0, properties, 1)->tx_queue_size, 256);
  EXPECT_EQ(configure_net_device(0, properties, 1)->rx_queue_size, 1024);
}

}  // namespace
}  // namespace ferry::virtio::net
