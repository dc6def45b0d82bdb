#include "guest/nvme/queue_pair.h"

#include <gtest/gtest.h>

#include "guest/test_fakes.h"

namespace ferry::guest::nvme {
namespace {

using guest::testing::FakeBus;

void put_cqe(FakeBus& bus, uint64_t at, uint16_t cid, uint16_t sq_head, bool phase,
             uint16_t status = 0) {
  std::array<uint8_t, 16> e{};
  e[8] = static_cast<uint8_t>(sq_head);
  e[9] = static_cast<uint8_t>(sq_head >> 8);
  e[10] = 1;  // SQ 1
  e[12] = static_cast<uint8_t>(cid);
  e[13] = static_cast<uint8_t>(cid >> 8);
  uint16_t word = static_cast<uint16_t>(status << 1 | (phase ? 1 : 0));
  e[14] = static_cast<uint8_t>(word);
  e[15] = static_cast<uint8_t>(word >> 8);
  ASSERT_TRUE(bus.memory_write(at, e).ok());
}

TEST(QueuePair, SubmitsWrapsAndRefusesWhenFull) {
  FakeBus bus(0x10000);
  QueuePair q({1, 0x1000, 4, 0x2000, 4, 0xe0001008, 0xe000100c});
  EXPECT_EQ(q.sq_space(), 3u);
  Sqe s;
  for (uint16_t i = 0; i < 3; ++i) {
    s.set_cid(i);
    ASSERT_TRUE(q.push(bus, s).ok());
  }
  EXPECT_EQ(bus.ram[0x1000 + 2 * 64 + 2], 2);
  auto full = q.push(bus, s);
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.message().find("full"), std::string::npos);
  ASSERT_TRUE(q.ring_sq(bus).ok());
  ASSERT_EQ(bus.mmio_writes.size(), 1u);
  EXPECT_EQ(bus.mmio_writes[0].addr, 0xe0001008u);
  EXPECT_EQ(bus.mmio_writes[0].value, 3u);

  // The controller consumed two entries.
  put_cqe(bus, 0x2000, 0, 2, true);
  std::vector<Completion> out;
  auto n = q.reap(bus, 8, out);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(q.sq_head(), 2u);
  EXPECT_EQ(q.sq_space(), 2u);
  // A completion for another SQ sharing this CQ leaves our SQ head alone.
  std::array<uint8_t, 16> other{};
  other[8] = 3;
  other[10] = 2;
  other[14] = 1;
  ASSERT_TRUE(bus.memory_write(0x2010, other).ok());
  n = q.reap(bus, 8, out);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(q.sq_head(), 2u);
  ASSERT_TRUE(q.push(bus, s).ok());
  EXPECT_EQ(q.sq_tail(), 0u);  // wrapped
}

TEST(QueuePair, ReapFollowsThePhaseAcrossTheWrap) {
  FakeBus bus(0x10000);
  QueuePair q({1, 0x1000, 4, 0x2000, 4, 0xe0001008, 0xe000100c});
  for (uint16_t i = 0; i < 4; ++i) put_cqe(bus, 0x2000 + 16 * i, i, i, true);
  std::vector<Completion> out;
  auto n = q.reap(bus, 3, out);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3u);
  n = q.reap(bus, 8, out);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);  // the stale entry at slot 0 still has phase 1: not new
  EXPECT_EQ(q.cq_head(), 0u);
  EXPECT_FALSE(q.expected_phase());
  put_cqe(bus, 0x2000, 9, 1, false, 0x0101);
  n = q.reap(bus, 8, out);
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(*n, 1u);
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[4].cid, 9);
  EXPECT_EQ(out[4].status, 0x0101);
  ASSERT_TRUE(q.ring_cq(bus).ok());
  EXPECT_EQ(bus.mmio_writes.back().addr, 0xe000100cu);
  EXPECT_EQ(bus.mmio_writes.back().value, 1u);
}

}  // namespace
}  // namespace ferry::guest::nvme
