// Hostile rings: every malformed chain is refused with a message naming the queue, the
// reason and the value, without reading outside RAM or looping, and the queue stays
// broken (nothing more popped or published) until it is configured again.
#include <gtest/gtest.h>

#include <array>

#include "hw/virtio/test_driver.h"

namespace ferry::virtio {
namespace {

using testing::Buf;
using testing::kFeaturesPacked;
using testing::kFeaturesSplit;
using testing::PackedDriver;
using testing::SplitDriver;
namespace vr = spec::virtio;

constexpr uint16_t kNext = vr::kDescFNext;
constexpr uint16_t kWrite = vr::kDescFWrite;
constexpr uint16_t kIndirect = vr::kDescFIndirect;
constexpr uint64_t kTable = 0x50000;

class HostileChainTest : public testing::VirtqueueTest {
 protected:
  void SetUp() override {
    VirtqueueTest::SetUp();
    ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesSplit).ok());
  }
  SplitDriver driver{as, 8};
};

TEST_F(HostileChainTest, LoopingChain) {
  driver.write_desc(0, buf(0), 10, kNext, 1);
  driver.write_desc(1, buf(1), 10, kNext, 0);
  driver.publish(0);
  EXPECT_EQ(pop_error(), "virtqueue 1: descriptor chain from head 0 longer than the queue size 8 (a loop)");
}

TEST_F(HostileChainTest, NextOutOfRange) {
  driver.write_desc(0, buf(0), 10, kNext, 300);
  driver.publish(0);
  EXPECT_EQ(pop_error(), "virtqueue 1: descriptor 0 links to 300, out of range for the queue size 8");
}

TEST_F(HostileChainTest, BufferNotInRam) {
  driver.write_desc(7, dma::testing::kUnmapped, 4096, 0, 0);
  driver.publish(7);
  EXPECT_EQ(pop_error(), "virtqueue 1: descriptor 7 address 0x600000 length 4096 is not in RAM");
}

TEST_F(HostileChainTest, BufferOnDeviceRegisters) {
  driver.write_desc(3, dma::testing::kMmioBase, 16, kWrite, 0);
  driver.publish(3);
  EXPECT_EQ(pop_error(), "virtqueue 1: descriptor 3 address 0x800000 length 16 is not in RAM");
}

TEST_F(HostileChainTest, BufferRunningPastTheAddressSpace) {
  driver.write_desc(1, 0xfffffffffffff000, 0x2000, 0, 0);
  driver.publish(1);
  EXPECT_EQ(pop_error(),
            "virtqueue 1: descriptor 1 address 0xfffffffffffff000 length 8192 is not in RAM");
}

TEST_F(HostileChainTest, RingRunsPastTheEndOfRam) {
  // The descriptor points at the last bytes of RAM and runs one byte beyond.
  driver.write_desc(0, dma::testing::kRamSize - 8, 9, 0, 0);
  driver.publish(0);
  EXPECT_EQ(pop_error(), "virtqueue 1: descriptor 0 address 0x3ffff8 length 9 is not in RAM");
}

TEST_F(HostileChainTest, IndirectTableLengthNotAMultipleOf16) {
  driver.write_desc(2, kTable, 12, kIndirect, 0);
  driver.publish(2);
  EXPECT_EQ(pop_error(), "virtqueue 1: indirect table length 12 at descriptor 2 not a multiple of 16");
}

TEST_F(HostileChainTest, EmptyIndirectTable) {
  driver.write_desc(2, kTable, 0, kIndirect, 0);
  driver.publish(2);
  EXPECT_EQ(pop_error(), "virtqueue 1: indirect table length 0 at descriptor 2 not a multiple of 16");
}

TEST_F(HostileChainTest, IndirectTableNotInRam) {
  driver.write_desc(2, dma::testing::kUnmapped, 32, kIndirect, 0);
  driver.publish(2);
  EXPECT_EQ(pop_error(),
            "virtqueue 1: indirect table of descriptor 2 address 0x600000 length 32 is not in RAM");
}

TEST_F(HostileChainTest, NestedIndirectDescriptor) {
  driver.write_desc_at(kTable, buf(0), 10, kNext, 1);
  driver.write_desc_at(kTable + 16, kTable, 32, kIndirect, 0);
  driver.write_desc(2, kTable, 32, kIndirect, 0);
  driver.publish(2);
  EXPECT_EQ(pop_error(), "virtqueue 1: nested indirect descriptor 1 in the table at descriptor 2");
}

TEST_F(HostileChainTest, LoopingIndirectTable) {
  driver.write_desc_at(kTable, buf(0), 10, kNext, 1);
  driver.write_desc_at(kTable + 16, buf(1), 10, kNext, 0);
  driver.write_desc(2, kTable, 32, kIndirect, 0);
  driver.publish(2);
  EXPECT_EQ(pop_error(),
            "virtqueue 1: indirect table at descriptor 2 chains more than its 2 entries (a loop)");
}

TEST_F(HostileChainTest, IndirectNextPastTheTable) {
  driver.write_desc_at(kTable, buf(0), 10, kNext, 5);
  driver.write_desc(2, kTable, 32, kIndirect, 0);
  driver.publish(2);
  EXPECT_EQ(pop_error(),
            "virtqueue 1: indirect descriptor 0 of the table at descriptor 2 links to 5, past the "
            "table's 2 entries");
}

TEST_F(HostileChainTest, IndirectWithoutTheFeature) {
  ASSERT_TRUE(vq.configure(driver.layout(), vr::feature(vr::kFVersion1)).ok());
  const std::array<Buf, 1> table = {{{buf(0), 10}}};
  driver.add_indirect(table, 2, kTable);
  EXPECT_EQ(pop_error(),
            "virtqueue 1: descriptor 2 is indirect but INDIRECT_DESC was not negotiated");
}

TEST_F(HostileChainTest, IndirectDescriptorInsideAChain) {
  driver.write_desc(0, buf(0), 10, kNext, 1);
  driver.write_desc(1, kTable, 32, kIndirect, 0);
  driver.publish(0);
  EXPECT_EQ(pop_error(), "virtqueue 1: descriptor 1 is indirect but not the head of its chain");
}

TEST_F(HostileChainTest, TooManySegments) {
  constexpr unsigned kEntries = Virtqueue::kMaxSegments + 1;
  for (unsigned k = 0; k < kEntries; ++k)
    driver.write_desc_at(kTable + 16 * k, buf(0), 8, kNext, static_cast<uint16_t>(k + 1));
  driver.write_desc(2, kTable, 16 * kEntries, kIndirect, 0);
  driver.publish(2);
  EXPECT_EQ(pop_error(), "virtqueue 1: descriptor chain of buffer 2 has more than 1024 segments");
}

TEST_F(HostileChainTest, ReadableDescriptorAfterAWritableOne) {
  driver.write_desc(0, buf(0), 10, kWrite | kNext, 1);
  driver.write_desc(1, buf(1), 10, 0, 0);
  driver.publish(0);
  EXPECT_EQ(pop_error(), "virtqueue 1: readable descriptor 1 after a writable one");
}

TEST_F(HostileChainTest, ZeroLengthDescriptor) {
  driver.write_desc(0, buf(0), 0, 0, 0);
  driver.publish(0);
  EXPECT_EQ(pop_error(), "virtqueue 1: zero-length descriptor 0");
}

TEST_F(HostileChainTest, AvailIndexRunsAheadOfTheQueue) {
  driver.set_avail_idx(9);
  EXPECT_EQ(pop_error(),
            "virtqueue 1: guest moved avail index from 0 to 9, 9 entries ahead in a queue of 8");
}

TEST_F(HostileChainTest, HeadOutOfRange) {
  driver.publish(300);
  EXPECT_EQ(pop_error(),
            "virtqueue 1: head 300 out of range for the queue size 8 (available ring entry 0)");
}

TEST_F(HostileChainTest, BusMasteringOff) {
  driver.write_desc(0, buf(0), 10, 0, 0);
  driver.publish(0);
  gate.open = false;
  EXPECT_EQ(pop_error(),
            "virtqueue 1: reading the available index: testdev: DMA at 0x18002 refused: bus "
            "mastering is disabled");
}

TEST_F(HostileChainTest, BrokenQueuePopsAndPublishesNothingUntilConfigured) {
  const std::array<Buf, 1> good = {{{buf(0), 10, true}}};
  driver.add(good, 0);
  pop_one();
  VirtqueueElement in_flight = elem;
  driver.write_desc(1, buf(1), 0, 0, 0);
  driver.publish(1);
  EXPECT_EQ(pop_error(), "virtqueue 1: zero-length descriptor 1");
  // The guest repairs the descriptor: still nothing, and nothing is published.
  driver.write_desc(1, buf(1), 10, 0, 0);
  auto popped = vq.pop(elem);
  ASSERT_TRUE(popped.ok());
  EXPECT_FALSE(*popped);
  ASSERT_TRUE(vq.push_and_flush(in_flight, 10).ok());
  EXPECT_EQ(driver.used_idx(), 0);
  auto notify = vq.should_notify();
  ASSERT_TRUE(notify.ok());
  EXPECT_FALSE(*notify);
  EXPECT_EQ(vq.error().message(), "virtqueue 1: zero-length descriptor 1");
  // A reset (here: configure after the driver's reset) starts afresh.
  driver.set_avail_idx(0);
  ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesSplit).ok());
  EXPECT_FALSE(vq.broken());
  driver.publish(1);
  pop_one();
  EXPECT_EQ(elem.id, 1);
}

class HostilePackedTest : public testing::VirtqueueTest {
 protected:
  void SetUp() override {
    VirtqueueTest::SetUp();
    ASSERT_TRUE(vq.configure(driver.layout(), kFeaturesPacked).ok());
  }
  PackedDriver driver{as, 4};
};

TEST_F(HostilePackedTest, ChainLongerThanTheQueue) {
  // Every descriptor of the ring says NEXT: the chain never ends.
  const uint16_t avail = PackedDriver::avail_flags(true);
  for (uint16_t pos = 1; pos < 4; ++pos) driver.write_desc(pos, buf(pos), 10, 0, kNext | avail);
  driver.write_desc(0, buf(0), 10, 0, kNext | avail);
  EXPECT_EQ(pop_error(), "virtqueue 1: descriptor chain from 0 longer than the queue size 4");
}

TEST_F(HostilePackedTest, ZeroLengthDescriptor) {
  const std::array<Buf, 2> chain = {{{buf(0), 10}, {buf(1), 0, true}}};
  driver.add(chain, 9);
  EXPECT_EQ(pop_error(), "virtqueue 1: zero-length descriptor 1");
}

TEST_F(HostilePackedTest, NestedIndirectDescriptor) {
  driver.write_desc_at(kTable, buf(0), 10, 0, 0);
  driver.write_desc_at(kTable + 16, kTable, 32, 0, kIndirect);
  driver.write_desc(0, kTable, 32, 5, kIndirect | PackedDriver::avail_flags(true));
  EXPECT_EQ(pop_error(), "virtqueue 1: nested indirect descriptor 1 in the table at descriptor 0");
}

TEST_F(HostilePackedTest, ReadableDescriptorAfterAWritableOne) {
  const std::array<Buf, 2> chain = {{{buf(0), 10, true}, {buf(1), 10}}};
  driver.add(chain, 9);
  EXPECT_EQ(pop_error(), "virtqueue 1: readable descriptor 1 after a writable one");
}

TEST_F(HostilePackedTest, BufferNotInRam) {
  const std::array<Buf, 1> one = {{{dma::testing::kUnmapped, 64}}};
  driver.add(one, 9);
  EXPECT_EQ(pop_error(), "virtqueue 1: descriptor 0 address 0x600000 length 64 is not in RAM");
}

}  // namespace
}  // namespace ferry::virtio
