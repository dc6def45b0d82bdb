#include "net/hub.h"

#include <gtest/gtest.h>

#include "net/test_nic.h"

namespace ferry::net {
namespace {

using testing::numbered_frame;
using testing::send_bytes;
using testing::TestNic;

TEST(Hub, FrameReachesEveryOtherPortOfItsHubOnly) {
  Hubs hubs;
  HubPort a("a", hubs.get(0)), b("b", hubs.get(0)), c("c", hubs.get(0)), other("o", hubs.get(1));
  TestNic nic_a, nic_b, nic_c, nic_other;
  a.attach(&nic_a);
  b.attach(&nic_b);
  c.attach(&nic_c);
  other.attach(&nic_other);
  auto frame = numbered_frame(1, 60);
  EXPECT_EQ(send_bytes(a, frame), SendResult::kSent);
  EXPECT_TRUE(nic_a.frames.empty());
  EXPECT_EQ(nic_b.frames, (std::vector<std::vector<uint8_t>>{frame}));
  EXPECT_EQ(nic_c.frames, (std::vector<std::vector<uint8_t>>{frame}));
  EXPECT_TRUE(nic_other.frames.empty());
  EXPECT_TRUE(a.link_up());
}

TEST(Hub, PortThatCannotReceiveGetsFramesInOrderLater) {
  Hubs hubs;
  HubPort a("a", hubs.get(3)), b("b", hubs.get(3));
  TestNic nic_a, nic_b;
  a.attach(&nic_a);
  b.attach(&nic_b);
  nic_b.accepting = false;
  for (uint32_t i = 0; i < 5; ++i) send_bytes(a, numbered_frame(i, 64));
  EXPECT_TRUE(nic_b.frames.empty());
  EXPECT_EQ(b.queued_frames(), 5u);
  nic_b.accepting = true;
  b.receive_ready();
  ASSERT_EQ(nic_b.frames.size(), 5u);
  for (uint32_t i = 0; i < 5; ++i) EXPECT_EQ(nic_b.frames[i], numbered_frame(i, 64));
}

TEST(Hub, QueueIsBoundedAsQemusNetQueue) {
  Hubs hubs;
  HubPort a("a", hubs.get(0)), b("b", hubs.get(0));
  TestNic nic_b;
  b.attach(&nic_b);
  nic_b.accepting = false;
  for (size_t i = 0; i < HubPort::kQueueLimit + 10; ++i) send_bytes(a, numbered_frame(1, 14));
  EXPECT_EQ(b.queued_frames(), HubPort::kQueueLimit);
}

TEST(Hub, PortLeavingItsHubGetsNothingMore) {
  Hubs hubs;
  HubPort a("a", hubs.get(0));
  TestNic nic_b;
  {
    HubPort b("b", hubs.get(0));
    b.attach(&nic_b);
    EXPECT_EQ(hubs.get(0).ports().size(), 2u);
  }
  EXPECT_EQ(hubs.get(0).ports().size(), 1u);
  EXPECT_EQ(send_bytes(a, numbered_frame(1, 60)), SendResult::kSent);
}

}  // namespace
}  // namespace ferry::net
