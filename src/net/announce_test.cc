#include "net/announce.h"

#include <limits>

#include <gtest/gtest.h>

#include <vector>

namespace ferry::net {
namespace {

TEST(AnnounceTest, RarpFrameBytes) {
  const std::array<uint8_t, 6> mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  const auto frame = rarp_announce_frame(mac);
  const std::vector<uint8_t> expected{
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // destination: broadcast
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // source
      0x80, 0x35,                          // ethertype RARP
      0x00, 0x01,                          // hardware type Ethernet
      0x08, 0x00,                          // protocol type IPv4
      0x06, 0x04,                          // address lengths
      0x00, 0x03,                          // opcode: request reverse
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // sender hardware address
      0x00, 0x00, 0x00, 0x00,              // sender protocol address
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // target hardware address
      0x00, 0x00, 0x00, 0x00,              // target protocol address
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};  // padding to 60
  EXPECT_EQ(std::vector<uint8_t>(frame.begin(), frame.end()), expected);
}

TEST(AnnounceTest, DefaultScheduleAndClamp) {
  const AnnounceParameters defaults;
  // After the immediate first round, four more: 50, 150, 250, 350 ms apart.
  std::vector<int64_t> delays;
  for (int64_t left = defaults.rounds - 1; left > 0; --left) {
    delays.push_back(announce_delay_ms(defaults, left));
  }
  EXPECT_EQ(delays, (std::vector<int64_t>{50, 150, 250, 350}));
  AnnounceParameters many{.initial_ms = 50, .max_ms = 550, .rounds = 10, .step_ms = 100};
  EXPECT_EQ(announce_delay_ms(many, 1), 550);  // 850 clamped to max
  AnnounceParameters negative{.initial_ms = 0, .max_ms = 30, .rounds = 1, .step_ms = 100};
  EXPECT_EQ(announce_delay_ms(negative, 5), 30);  // a negative delay becomes max
}

TEST(AnnounceTest, HugeParametersDoNotOverflow) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  AnnounceParameters huge{.initial_ms = kMax, .max_ms = 1000, .rounds = kMax, .step_ms = kMax};
  EXPECT_EQ(announce_delay_ms(huge, 1), 1000);
  AnnounceParameters wide{.initial_ms = 10, .max_ms = kMax, .rounds = kMax, .step_ms = kMax};
  EXPECT_EQ(announce_delay_ms(wide, kMax - 1), 10);
  EXPECT_EQ(announce_delay_ms(wide, 1), kMax);  // beyond int64: max
}

}  // namespace
}  // namespace ferry::net
