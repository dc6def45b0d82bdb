#include "hw/virtio/net/guest_announce.h"

#include <gtest/gtest.h>

#include <vector>

#include "hw/virtio/net/ctrl_commands.h"
#include "hw/virtio/net/net_test_frames.h"

namespace ferry::virtio::net {
namespace {

namespace vn = spec::virtio_net;
using testing::kStreamNegotiated;  // GUEST_ANNOUNCE and CTRL_VQ among them

TEST(GuestAnnounceTest, AfterMigrationFiveRoundsEachAckedBeforeTheNext) {
  NetDeviceState state;
  state.reset(testing::kDeviceMac);
  const AnnounceParameters params;
  std::optional<int64_t> first = start_guest_announce(state, kStreamNegotiated, params);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(*first, 0);

  const std::vector<uint8_t> ack{vn::kCtrlAnnounce, vn::kCtrlAnnounceAck};
  std::vector<int64_t> delays;
  int asked = 0;
  for (;;) {
    guest_announce_round(state);  // the timer fired
    ++asked;
    ASSERT_EQ(state.status, vn::kStatusLinkUp | vn::kStatusAnnounce);
    CtrlOutcome outcome = execute_ctrl_command(state, kStreamNegotiated, ack, 1);
    ASSERT_EQ(outcome.ack, vn::kCtrlOk);
    EXPECT_EQ(state.status, vn::kStatusLinkUp);
    if (!outcome.announce_step) break;
    delays.push_back(announce_delay_ms(params, state.announce_rounds));
  }
  EXPECT_EQ(asked, 5);
  EXPECT_EQ(delays, (std::vector<int64_t>{50, 150, 250, 350}));
}

TEST(GuestAnnounceTest, NeedsGuestAnnounceAndCtrlVq) {
  NetDeviceState state;
  state.reset(testing::kDeviceMac);
  EXPECT_FALSE(start_guest_announce(state, kStreamNegotiated & ~vn::bit(vn::kFGuestAnnounce),
                                    {}).has_value());
  EXPECT_FALSE(start_guest_announce(state, kStreamNegotiated & ~vn::bit(vn::kFCtrlVq), {})
                   .has_value());
  AnnounceParameters none;
  none.rounds = 0;
  EXPECT_FALSE(start_guest_announce(state, kStreamNegotiated, none).has_value());
  EXPECT_EQ(state.announce_rounds, 0u);
  EXPECT_FALSE(guest_announce_on_self_announce(state, 0));
  EXPECT_EQ(state.status, vn::kStatusLinkUp);
}

TEST(GuestAnnounceTest, AnnounceSelfAsksUnlessMigrationRoundsRun) {
  NetDeviceState state;
  state.reset(testing::kDeviceMac);
  EXPECT_TRUE(guest_announce_on_self_announce(state, kStreamNegotiated));
  EXPECT_EQ(state.status & vn::kStatusAnnounce, vn::kStatusAnnounce);
  // Acknowledged with no rounds armed: nothing to schedule.
  const std::vector<uint8_t> ack{vn::kCtrlAnnounce, vn::kCtrlAnnounceAck};
  CtrlOutcome outcome = execute_ctrl_command(state, kStreamNegotiated, ack, 1);
  EXPECT_EQ(outcome.ack, vn::kCtrlOk);
  EXPECT_FALSE(outcome.announce_step);
  // While migration rounds are armed, announce-self leaves the guest alone.
  ASSERT_TRUE(start_guest_announce(state, kStreamNegotiated, {}).has_value());
  EXPECT_FALSE(guest_announce_on_self_announce(state, kStreamNegotiated));
  // A device reset drops the rounds.
  state.reset(testing::kDeviceMac);
  EXPECT_EQ(state.announce_rounds, 0u);
}

}  // namespace
}  // namespace ferry::virtio::net
