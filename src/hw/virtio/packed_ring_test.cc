// Packed virtqueues: round trips, indirect tables, wrap counters, out-of-order completion,
// batched publication, event suppression both ways, unpop and restore.
#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "hw/virtio/test_driver.h"

namespace ferry::virtio {
namespace {

using testing::Buf;
using testing::kEventIdx;
using testing::kFeaturesPacked;
using testing::PackedDriver;
using PackedRingTest = testing::VirtqueueTest;
namespace vr = spec::virtio;

TEST_F(PackedRingTest, PopsAChainAndPublishesItUsed) {
  PackedDriver driver(as, 16);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesPacked).ok());
  EXPECT_TRUE(vq.packed());
  const std::array<Buf, 3> chain = {{{buf(0), 10}, {buf(1), 20}, {buf(2), 1500, true}}};
  driver.add(chain, 42);
  pop_one();
  EXPECT_EQ(elem.id, 42);
  EXPECT_EQ(elem.ndescs, 3);
  ASSERT_EQ(elem.out.size(), 2u);
  ASSERT_EQ(elem.in.size(), 1u);
  EXPECT_EQ(elem.out_bytes, 30u);
  EXPECT_EQ(elem.in[0].addr, buf(2));
  EXPECT_EQ(vq.last_avail_idx(), 3);
  auto again = vq.pop(elem);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);

  ASSERT_TRUE(vq.push(elem, 1400).ok());
  EXPECT_FALSE(driver.take_used());  // staged, not yet published
  ASSERT_TRUE(vq.flush().ok());
  auto used = driver.take_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(*used, std::make_pair(uint16_t{42}, 1400u));
  EXPECT_EQ(vq.used_idx(), 3);  // skipped the chain's three descriptors
  EXPECT_EQ(vq.inuse(), 0u);
  EXPECT_TRUE(block->dirty().test(buf(2) / memory::kPageSize));
}

TEST_F(PackedRingTest, FollowsAnIndirectTable) {
  PackedDriver driver(as, 8);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesPacked).ok());
  const std::array<Buf, 3> table = {{{buf(0), 12}, {buf(1), 100, true}, {buf(2), 200, true}}};
  driver.add_indirect(table, 7, 0x50000);
  pop_one();
  EXPECT_EQ(elem.id, 7);
  EXPECT_EQ(elem.ndescs, 1);
  EXPECT_EQ(elem.out.size(), 1u);
  EXPECT_EQ(elem.in.size(), 2u);
  EXPECT_EQ(elem.in_bytes, 300u);
  ASSERT_TRUE(vq.push_and_flush(elem, 300).ok());
  auto used = driver.take_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(*used, std::make_pair(uint16_t{7}, 300u));
  EXPECT_EQ(vq.used_idx(), 1);
}

TEST_F(PackedRingTest, WrapCountersTurnAtTheEndOfTheRing) {
  PackedDriver driver(as, 4);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesPacked).ok());
  // Chains of 1 and 3 descriptors so the ring wraps in the middle of a chain too.
  uint16_t id = 0;
  for (unsigned round = 0; round < 12; ++round) {
    const unsigned n = round % 2 == 0 ? 1 : 3;
    std::vector<Buf> chain;
    for (unsigned k = 0; k < n; ++k) chain.push_back({buf(k), 64, k == n - 1});
    driver.add(chain, id);
    pop_one();
    EXPECT_EQ(elem.id, id);
    EXPECT_EQ(elem.ndescs, n);
    EXPECT_EQ(vq.last_avail_idx(), driver.next_avail());
    EXPECT_EQ(vq.last_avail_wrap(), driver.avail_wrap());
    ASSERT_TRUE(vq.push_and_flush(elem, round).ok());
    auto used = driver.take_used();
    ASSERT_TRUE(used) << "round " << round;
    EXPECT_EQ(*used, std::make_pair(id, uint32_t{round}));
    EXPECT_EQ(vq.used_idx(), vq.last_avail_idx());
    EXPECT_EQ(vq.used_wrap(), vq.last_avail_wrap());
    ++id;
  }
  // 24 descriptors over a ring of 4: six laps, so the counters are back where they began.
  EXPECT_EQ(vq.last_avail_idx(), 0);
  EXPECT_TRUE(vq.last_avail_wrap());
  EXPECT_TRUE(vq.used_wrap());
}

TEST_F(PackedRingTest, CompletesOutOfOrderSkippingEachChain) {
  PackedDriver driver(as, 8);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesPacked).ok());
  const std::array<Buf, 2> two = {{{buf(0), 10}, {buf(1), 10, true}}};
  const std::array<Buf, 1> one = {{{buf(2), 10, true}}};
  driver.add(two, 100);  // positions 0-1
  driver.add(one, 101);  // 2
  driver.add(one, 102);  // 3
  std::array<VirtqueueElement, 3> elems;
  for (auto& e : elems) {
    auto popped = vq.pop(e);
    ASSERT_TRUE(popped.ok() && *popped);
  }
  EXPECT_EQ(vq.inuse(), 3u);
  // Completed as 102, 100, 101: used descriptors go in completion order.
  ASSERT_TRUE(vq.push(elems[2], 2).ok());
  ASSERT_TRUE(vq.push(elems[0], 0).ok());
  ASSERT_TRUE(vq.push(elems[1], 1).ok());
  EXPECT_FALSE(driver.take_used());  // the first's flags wait for flush
  ASSERT_TRUE(vq.flush().ok());
  std::vector<std::pair<uint16_t, uint32_t>> seen;
  while (auto used = driver.take_used()) seen.push_back(*used);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], std::make_pair(uint16_t{102}, 2u));
  EXPECT_EQ(seen[1], std::make_pair(uint16_t{100}, 0u));
  EXPECT_EQ(seen[2], std::make_pair(uint16_t{101}, 1u));
  EXPECT_EQ(vq.used_idx(), 4);  // 1 + 2 + 1 descriptors
  EXPECT_EQ(vq.inuse(), 0u);
}

TEST_F(PackedRingTest, DeviceEventSuppression) {
  PackedDriver driver(as, 8);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesPacked).ok());
  ASSERT_TRUE(vq.set_notification(false).ok());
  EXPECT_EQ(driver.device_event_flags(), vr::kEventFlagDisable);
  ASSERT_TRUE(vq.set_notification(true).ok());
  EXPECT_EQ(driver.device_event_flags(), vr::kEventFlagEnable);

  // With EVENT_IDX: notify at the next descriptor the device will look at.
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesPacked | kEventIdx).ok());
  ASSERT_TRUE(vq.set_notification(true).ok());
  EXPECT_EQ(driver.device_event_flags(), vr::kEventFlagDesc);
  EXPECT_EQ(driver.device_event_off_wrap(), 0x8000);  // position 0, wrap 1
  const std::array<Buf, 3> chain = {{{buf(0), 10}, {buf(1), 10}, {buf(2), 10}}};
  driver.add(chain, 1);
  pop_one();
  EXPECT_EQ(driver.device_event_off_wrap(), 0x8003);
  driver.add(chain, 2);
  pop_one();
  EXPECT_EQ(driver.device_event_off_wrap(), 0x8006);
  driver.add(chain, 3);  // positions 6, 7, 0 (lap 2)
  pop_one();
  EXPECT_EQ(driver.device_event_off_wrap(), 0x0001);  // position 1, wrap 0
}

TEST_F(PackedRingTest, DriverEventSuppression) {
  PackedDriver driver(as, 8);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesPacked | kEventIdx).ok());
  auto complete_one = [&](uint16_t id) {
    const std::array<Buf, 1> one = {{{buf(0), 10, true}}};
    driver.add(one, id);
    pop_one();
    ASSERT_TRUE(vq.push_and_flush(elem, 0).ok());
    ASSERT_TRUE(driver.take_used());
  };
  auto notify = [&] {
    auto n = vq.should_notify();
    EXPECT_TRUE(n.ok());
    return n.ok() && *n;
  };
  complete_one(0);
  driver.set_driver_event(vr::kEventFlagDisable);
  EXPECT_FALSE(notify());
  driver.set_driver_event(vr::kEventFlagEnable);
  EXPECT_TRUE(notify());
  // DESC: interrupt once the descriptor at position 3 of lap 1 (wrap 1) is used.
  driver.set_driver_event(vr::kEventFlagDesc, 0x8003);
  complete_one(1);  // used idx 2
  EXPECT_FALSE(notify());
  complete_one(2);  // 3
  EXPECT_FALSE(notify());
  complete_one(3);  // 4: position 3 used
  EXPECT_TRUE(notify());
  // Across the wrap: event at position 1 of the next lap (wrap 0).
  driver.set_driver_event(vr::kEventFlagDesc, 0x0001);
  for (uint16_t id = 4; id < 8; ++id) {  // used idx 5, 6, 7, 0
    complete_one(id);
    EXPECT_FALSE(notify()) << "id " << id;
  }
  complete_one(8);  // position 0 of lap 2 used: still before the event
  EXPECT_FALSE(notify());
  complete_one(9);  // position 1 of lap 2 used
  EXPECT_TRUE(notify());
}

TEST_F(PackedRingTest, UnpopGivesTheChainBackAcrossTheWrap) {
  PackedDriver driver(as, 4);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesPacked).ok());
  const std::array<Buf, 1> one = {{{buf(0), 10, true}}};
  const std::array<Buf, 3> three = {{{buf(0), 10}, {buf(1), 10}, {buf(2), 10, true}}};
  driver.add(one, 1);
  pop_one();
  ASSERT_TRUE(vq.push_and_flush(elem, 0).ok());
  driver.add(three, 2);  // positions 1, 2, 3: ends the lap
  pop_one();
  EXPECT_EQ(vq.last_avail_idx(), 0);
  EXPECT_FALSE(vq.last_avail_wrap());
  vq.unpop(elem);
  EXPECT_EQ(vq.last_avail_idx(), 1);
  EXPECT_TRUE(vq.last_avail_wrap());
  EXPECT_EQ(vq.inuse(), 0u);
  pop_one();
  EXPECT_EQ(elem.id, 2);
  EXPECT_EQ(elem.ndescs, 3);
}

TEST_F(PackedRingTest, DiscardPushedLeavesTheRingUntouched) {
  PackedDriver driver(as, 4);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesPacked).ok());
  const std::array<Buf, 2> two = {{{buf(0), 10}, {buf(1), 100, true}}};
  driver.add(two, 5);  // positions 0, 1
  driver.add(two, 6);  // 2, 3
  pop_one();
  ASSERT_TRUE(vq.push(elem, 100).ok());
  pop_one();
  ASSERT_TRUE(vq.push(elem, 100).ok());
  vq.discard_pushed();
  EXPECT_EQ(vq.inuse(), 0u);
  EXPECT_EQ(vq.last_avail_idx(), 0);
  EXPECT_TRUE(vq.last_avail_wrap());
  EXPECT_FALSE(driver.take_used());
  // The chains are read again intact: push wrote nothing into the ring.
  pop_one();
  EXPECT_EQ(elem.id, 5);
  EXPECT_EQ(elem.in_bytes, 100u);
  ASSERT_TRUE(vq.push(elem, 1).ok());
  pop_one();
  EXPECT_EQ(elem.id, 6);
  ASSERT_TRUE(vq.push(elem, 2).ok());
  ASSERT_TRUE(vq.flush().ok());
  auto first = driver.take_used();
  auto second = driver.take_used();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(*first, std::make_pair(uint16_t{5}, 1u));
  EXPECT_EQ(*second, std::make_pair(uint16_t{6}, 2u));
  EXPECT_FALSE(vq.used_wrap());
}

TEST_F(PackedRingTest, RestoreKeepsTheSavedCounters) {
  PackedDriver driver(as, 8);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesPacked).ok());
  const std::array<Buf, 2> two = {{{buf(0), 10}, {buf(1), 10, true}}};
  for (uint16_t id = 0; id < 5; ++id) {
    driver.add(two, id);
    pop_one();
    if (id == 4) break;  // stays in flight
    ASSERT_TRUE(vq.push_and_flush(elem, id).ok());
    ASSERT_TRUE(driver.take_used());
  }
  const VirtqueueState saved = vq.state();
  EXPECT_EQ(saved.last_avail_idx, 2);
  EXPECT_FALSE(saved.last_avail_wrap);
  EXPECT_EQ(saved.used_idx, 0);
  EXPECT_FALSE(saved.used_wrap);
  EXPECT_EQ(saved.inuse, 1u);

  Virtqueue other(1, ring);
  ASSERT_TRUE(other.restore(driver.layout(), kFeaturesPacked, saved).ok());
  EXPECT_EQ(other.inuse(), 1u);
  // The element in flight completes on the restored queue.
  ASSERT_TRUE(other.push_and_flush(elem, 7).ok());
  auto used = driver.take_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(*used, std::make_pair(uint16_t{4}, 7u));

  VirtqueueState bad = saved;
  bad.used_idx = 8;
  Status s = other.restore(driver.layout(), kFeaturesPacked, bad);
  EXPECT_EQ(s.message(),
            "virtqueue 1: packed state last_avail_idx 2 used_idx 8 inuse 1 out of range for the "
            "queue size 8");
}

}  // namespace
}  // namespace ferry::virtio
