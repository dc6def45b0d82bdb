// Split virtqueues: round trips, indirect tables, 16-bit index wrap, notification
// suppression both ways, unpop, configuration checks and restore.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

#include "hw/virtio/test_driver.h"

namespace ferry::virtio {
namespace {

using testing::Buf;
using testing::kEventIdx;
using testing::kFeaturesSplit;
using testing::SplitDriver;
using SplitRingTest = testing::VirtqueueTest;

TEST_F(SplitRingTest, PopsAChainAndPublishesItUsed) {
  SplitDriver driver(as, 256);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesSplit).ok());
  const std::array<Buf, 3> chain = {{{buf(0), 100}, {buf(1), 200}, {buf(2), 4096, true}}};
  driver.add(chain, 5);

  pop_one();
  EXPECT_EQ(elem.id, 5);
  ASSERT_EQ(elem.out.size(), 2u);
  EXPECT_EQ(elem.out[0].addr, buf(0));
  EXPECT_EQ(elem.out[0].len, 100u);
  EXPECT_EQ(elem.out[1].addr, buf(1));
  ASSERT_EQ(elem.in.size(), 1u);
  EXPECT_EQ(elem.in[0].addr, buf(2));
  EXPECT_EQ(elem.out_bytes, 300u);
  EXPECT_EQ(elem.in_bytes, 4096u);
  EXPECT_EQ(vq.inuse(), 1u);

  auto again = vq.pop(elem);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);  // the ring is empty

  ASSERT_TRUE(vq.push(elem, 60).ok());
  EXPECT_EQ(driver.used_idx(), 0);  // staged only
  ASSERT_TRUE(vq.flush().ok());
  EXPECT_EQ(driver.used_idx(), 1);
  EXPECT_EQ(driver.used_elem(0), std::make_pair(5u, 60u));
  EXPECT_EQ(vq.inuse(), 0u);
  // The bytes written into the guest's buffer are dirty for migration.
  EXPECT_TRUE(block->dirty().test(buf(2) / memory::kPageSize));
  EXPECT_FALSE(vq.broken());
}

TEST_F(SplitRingTest, IdleQueuePopsNothing) {
  SplitDriver driver(as, 8);
  QueueLayout layout = driver.layout();
  layout.enabled = false;
  ASSERT_TRUE(vq.configure(layout, kFeaturesSplit).ok());
  const std::array<Buf, 1> one = {{{buf(0), 10}}};
  driver.add(one, 0);
  auto popped = vq.pop(elem);
  ASSERT_TRUE(popped.ok());
  EXPECT_FALSE(*popped);
  EXPECT_FALSE(vq.ready());
}

TEST_F(SplitRingTest, FollowsAnIndirectTable) {
  SplitDriver driver(as, 16);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesSplit).ok());
  const std::array<Buf, 3> table = {{{buf(0), 12}, {buf(1), 1500, true}, {buf(2), 2000, true}}};
  driver.add_indirect(table, 3, 0x50000);
  pop_one();
  EXPECT_EQ(elem.id, 3);
  ASSERT_EQ(elem.out.size(), 1u);
  ASSERT_EQ(elem.in.size(), 2u);
  EXPECT_EQ(elem.in[1].addr, buf(2));
  EXPECT_EQ(elem.in_bytes, 3500u);
  ASSERT_TRUE(vq.push_and_flush(elem, 3500).ok());
  EXPECT_EQ(driver.used_elem(0), std::make_pair(3u, 3500u));
}

TEST_F(SplitRingTest, MapsSegmentsToHostIovecs) {
  SplitDriver driver(as, 8);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesSplit).ok());
  std::memcpy(block->host() + buf(0), "frame", 5);
  const std::array<Buf, 2> chain = {{{buf(0), 5}, {buf(1), 64, true}}};
  driver.add(chain, 0);
  pop_one();
  std::vector<iovec> out, in;
  ASSERT_TRUE(vq.map(elem, out, in).ok());
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(std::memcmp(out[0].iov_base, "frame", 5), 0);
  EXPECT_EQ(in[0].iov_base, block->host() + buf(1));
  EXPECT_EQ(in[0].iov_len, 64u);
}

TEST_F(SplitRingTest, IndicesWrapAt16Bits) {
  SplitDriver driver(as, 4);
  // Start just below the wrap: the driver's indices and the saved state agree.
  driver.set_avail_idx(65534);
  driver.set_used_idx(65534);
  VirtqueueState saved;
  saved.last_avail_idx = 65534;
  ASSERT_TRUE(vq.restore(driver.layout(), kFeaturesSplit, saved).ok());
  for (unsigned round = 0; round < 6; ++round) {
    const std::array<Buf, 1> one = {{{buf(round), 32, true}}};
    driver.add(one, static_cast<uint16_t>(round % 4));
    pop_one();
    EXPECT_EQ(elem.id, round % 4);
    ASSERT_TRUE(vq.push_and_flush(elem, round).ok());
    const uint16_t used = static_cast<uint16_t>(65534 + round);
    EXPECT_EQ(driver.used_elem(used), std::make_pair(round % 4, round));
  }
  EXPECT_EQ(driver.used_idx(), 4);  // 65534 + 6, modulo 2^16
  EXPECT_EQ(vq.last_avail_idx(), 4);
  EXPECT_EQ(vq.inuse(), 0u);
}

TEST_F(SplitRingTest, DeviceSuppressesNotificationsWithUsedFlags) {
  SplitDriver driver(as, 8);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesSplit).ok());
  ASSERT_TRUE(vq.set_notification(false).ok());
  EXPECT_EQ(driver.used_flags(), spec::virtio::kUsedFNoNotify);
  ASSERT_TRUE(vq.set_notification(true).ok());
  EXPECT_EQ(driver.used_flags(), 0);
}

TEST_F(SplitRingTest, DriverSuppressesInterruptsWithAvailFlags) {
  SplitDriver driver(as, 8);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesSplit).ok());
  const std::array<Buf, 1> one = {{{buf(0), 32}}};
  driver.add(one, 0);
  pop_one();
  ASSERT_TRUE(vq.push_and_flush(elem, 0).ok());
  driver.set_avail_flags(spec::virtio::kAvailFNoInterrupt);
  auto notify = vq.should_notify();
  ASSERT_TRUE(notify.ok());
  EXPECT_FALSE(*notify);
  driver.set_avail_flags(0);
  notify = vq.should_notify();
  ASSERT_TRUE(notify.ok());
  EXPECT_TRUE(*notify);
}

TEST_F(SplitRingTest, EventIdxInterruptsOnlyWhenUsedEventIsCrossed) {
  SplitDriver driver(as, 16);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesSplit | kEventIdx).ok());
  driver.set_avail_flags(spec::virtio::kAvailFNoInterrupt);  // ignored with EVENT_IDX
  driver.set_used_event(3);  // "interrupt me once entry 3 is used"
  auto complete_one = [&](uint16_t head) {
    const std::array<Buf, 1> one = {{{buf(head), 32}}};
    driver.add(one, head);
    pop_one();
    ASSERT_TRUE(vq.push_and_flush(elem, 0).ok());
  };
  complete_one(0);
  auto notify = vq.should_notify();  // nothing signalled yet: always
  ASSERT_TRUE(notify.ok());
  EXPECT_TRUE(*notify);
  for (uint16_t head : {1, 2}) {  // used idx 2, 3: entry 3 not used yet
    complete_one(head);
    notify = vq.should_notify();
    ASSERT_TRUE(notify.ok());
    EXPECT_FALSE(*notify) << "used idx " << driver.used_idx();
  }
  complete_one(3);  // used idx 4: entry 3 is used
  notify = vq.should_notify();
  ASSERT_TRUE(notify.ok());
  EXPECT_TRUE(*notify);
  // Two at once crossing the event in one flush.
  driver.set_used_event(5);
  for (uint16_t head : {4, 5}) {
    const std::array<Buf, 1> one = {{{buf(head), 32}}};
    driver.add(one, head);
    pop_one();
    ASSERT_TRUE(vq.push(elem, 0).ok());
  }
  ASSERT_TRUE(vq.flush().ok());
  notify = vq.should_notify();
  ASSERT_TRUE(notify.ok());
  EXPECT_TRUE(*notify);
}

TEST_F(SplitRingTest, EventIdxTellsTheDriverWhereToNotify) {
  SplitDriver driver(as, 16);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesSplit | kEventIdx).ok());
  const std::array<Buf, 1> one = {{{buf(0), 32}}};
  driver.add(one, 0);
  driver.add(one, 1);
  // Enabling publishes the driver's current index: its next buffer needs a kick.
  ASSERT_TRUE(vq.set_notification(true).ok());
  EXPECT_EQ(driver.avail_event(), 2);
  EXPECT_TRUE(spec::virtio::vring_need_event(driver.avail_event(), 3, 2));
  EXPECT_EQ(driver.used_flags(), 0);  // EVENT_IDX: the flag is not used
  pop_one();
  EXPECT_EQ(driver.avail_event(), 1);  // each pop moves it behind what was consumed
  // Disabled: pops leave it alone, so the driver stops kicking.
  ASSERT_TRUE(vq.set_notification(false).ok());
  pop_one();
  EXPECT_EQ(driver.avail_event(), 1);
  EXPECT_FALSE(spec::virtio::vring_need_event(driver.avail_event(), 4, 3));
}

TEST_F(SplitRingTest, UnpopGivesTheChainBack) {
  SplitDriver driver(as, 8);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesSplit).ok());
  const std::array<Buf, 1> one = {{{buf(0), 1500, true}}};
  driver.add(one, 6);
  pop_one();
  vq.unpop(elem);
  EXPECT_EQ(vq.inuse(), 0u);
  EXPECT_EQ(vq.last_avail_idx(), 0);
  elem = VirtqueueElement();
  pop_one();
  EXPECT_EQ(elem.id, 6);
  EXPECT_EQ(elem.in_bytes, 1500u);
}

TEST_F(SplitRingTest, DiscardPushedGivesBackAFrameThatDidNotFit) {
  SplitDriver driver(as, 8);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesSplit).ok());
  const std::array<Buf, 1> one = {{{buf(0), 100, true}}};
  driver.add(one, 0);
  pop_one();
  ASSERT_TRUE(vq.push_and_flush(elem, 10).ok());
  // A frame spread over two buffers: the second pop finds none, so both go back.
  driver.add(one, 1);
  pop_one();
  ASSERT_TRUE(vq.push(elem, 100).ok());
  auto second = vq.pop(elem);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(*second);
  vq.discard_pushed();
  EXPECT_EQ(vq.inuse(), 0u);
  ASSERT_TRUE(vq.flush().ok());
  EXPECT_EQ(driver.used_idx(), 1);  // nothing more published
  driver.add(one, 2);
  pop_one();
  EXPECT_EQ(elem.id, 1);
  ASSERT_TRUE(vq.push(elem, 100).ok());
  pop_one();
  EXPECT_EQ(elem.id, 2);
  ASSERT_TRUE(vq.push(elem, 50).ok());
  ASSERT_TRUE(vq.flush().ok());
  EXPECT_EQ(driver.used_idx(), 3);
  EXPECT_EQ(driver.used_elem(1), std::make_pair(1u, 100u));
  EXPECT_EQ(driver.used_elem(2), std::make_pair(2u, 50u));
}

TEST_F(SplitRingTest, PushRefusesMoreBytesThanTheBufferHolds) {
  SplitDriver driver(as, 8);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesSplit).ok());
  const std::array<Buf, 1> one = {{{buf(0), 100, true}}};
  driver.add(one, 0);
  pop_one();
  Status pushed = vq.push(elem, 101);
  EXPECT_EQ(pushed.message(), "virtqueue 1: 101 bytes written to buffer 0 with 100 writable");
}

TEST_F(SplitRingTest, ConfigureRefusesABadLayout) {
  SplitDriver driver(as, 8);
  QueueLayout layout = driver.layout();
  layout.size = 12;
  Status s = vq.configure(layout, kFeaturesSplit);
  EXPECT_EQ(s.message(), "virtqueue 1: size 12 is not a power of two");
  EXPECT_TRUE(vq.broken());

  layout = driver.layout();
  layout.device += 2;
  s = vq.configure(layout, kFeaturesSplit);
  EXPECT_EQ(s.message(), fmt::format("virtqueue 1: used ring at 0x{:x} is not 4-byte aligned",
                                     layout.device));

  layout = driver.layout();
  layout.driver = dma::testing::kUnmapped;
  s = vq.configure(layout, kFeaturesSplit);
  EXPECT_EQ(s.message(), "virtqueue 1: available ring at 0x600000 length 22 is not in RAM");

  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesSplit).ok());  // configure resets
  EXPECT_FALSE(vq.broken());
  EXPECT_TRUE(vq.ready());
}

TEST_F(SplitRingTest, RestoreDerivesInuseFromTheUsedIndex) {
  SplitDriver driver(as, 8);
  driver.set_avail_idx(107);
  driver.set_used_idx(100);
  VirtqueueState saved;
  saved.last_avail_idx = 105;
  ASSERT_TRUE(vq.restore(driver.layout(), kFeaturesSplit, saved).ok());
  EXPECT_EQ(vq.inuse(), 5u);
  EXPECT_EQ(vq.used_idx(), 100);
  EXPECT_FALSE(vq.broken());
  EXPECT_EQ(vq.state().last_avail_idx, 105);
  EXPECT_EQ(vq.layout().desc, driver.desc_addr());
  EXPECT_EQ(vq.layout().size, 8);
  // Two more chains are available (105, 106).
  driver.write_desc(0, buf(0), 10, 0, 0);
  driver.set_avail_entry(105, 0);
  driver.set_avail_entry(106, 0);
  pop_one();
  pop_one();
  auto third = vq.pop(elem);
  ASSERT_TRUE(third.ok());
  EXPECT_FALSE(*third);
}

TEST_F(SplitRingTest, RestoreRefusesMoreInUseThanTheSize) {
  SplitDriver driver(as, 8);
  driver.set_avail_idx(20);
  driver.set_used_idx(10);
  VirtqueueState saved;
  saved.last_avail_idx = 20;
  Status s = vq.restore(driver.layout(), kFeaturesSplit, saved);
  EXPECT_EQ(s.message(), "VQ 1 size 0x8 < last_avail_idx 0x14 - used_idx 0xa");
}

TEST_F(SplitRingTest, RestoreWithTheGuestIndexTooFarAheadBreaksTheQueueOnly) {
  SplitDriver driver(as, 8);
  driver.set_avail_idx(30);
  driver.set_used_idx(20);
  VirtqueueState saved;
  saved.last_avail_idx = 20;
  ASSERT_TRUE(vq.restore(driver.layout(), kFeaturesSplit, saved).ok());
  EXPECT_TRUE(vq.broken());
  EXPECT_EQ(vq.error().message(),
            "VQ 1 size 0x8 Guest index 0x1e inconsistent with Host index 0x14: delta 0xa");
  auto popped = vq.pop(elem);
  ASSERT_TRUE(popped.ok());
  EXPECT_FALSE(*popped);
}

TEST_F(SplitRingTest, RestoreRefusesAnIndexWithoutRings) {
  QueueLayout layout;  // desc 0: never set up
  layout.size = 256;
  VirtqueueState saved;
  saved.last_avail_idx = 9;
  Status s = vq.restore(layout, kFeaturesSplit, saved);
  EXPECT_EQ(s.message(), "VQ 1 address 0x0 inconsistent with Host index 0x9");
  saved.last_avail_idx = 0;
  EXPECT_TRUE(vq.restore(layout, kFeaturesSplit, saved).ok());
}

}  // namespace
}  // namespace ferry::virtio
