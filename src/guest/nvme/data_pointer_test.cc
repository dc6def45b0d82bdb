#include "guest/nvme/data_pointer.h"

#include <gtest/gtest.h>

#include "guest/test_fakes.h"

namespace ferry::guest::nvme {
namespace {

namespace sn = spec::nvme;
using guest::testing::FakeBus;

constexpr uint64_t kRam = 8 << 20;
constexpr uint64_t kPool = 6 << 20;  // list pages come from [6 MiB, 8 MiB)

class DataPointerTest : public ::testing::Test {
 protected:
  FakeBus bus{kRam};
  DmaMemory memory = std::move(DmaMemory::create(kPool, kRam).value());
};

TEST_F(DataPointerTest, PrpWithinOneOrTwoPagesNeedsNoList) {
  std::vector<DataSegment> one = {{0x10200, 512}};
  auto p = build_prp(bus, memory, one);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->dptr1, 0x10200u);
  EXPECT_EQ(p->dptr2, 0u);
  EXPECT_TRUE(p->list_pages.empty());
  std::vector<DataSegment> two = {{0x10800, 4096}};
  p = build_prp(bus, memory, two);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->dptr1, 0x10800u);
  EXPECT_EQ(p->dptr2, 0x11000u);
  Sqe s;
  p->apply(s);
  EXPECT_EQ(s.prp2(), 0x11000u);
  EXPECT_EQ(s.psdt(), 0);
}

TEST_F(DataPointerTest, PrpListCoversScatteredPages) {
  // 3 pages: an offset first page, then two pages elsewhere.
  std::vector<DataSegment> segs = {{0x20f00, 0x100}, {0x40000, 0x1000}, {0x80000, 0x800}};
  auto p = build_prp(bus, memory, segs);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->dptr1, 0x20f00u);
  ASSERT_EQ(p->list_pages.size(), 1u);
  EXPECT_EQ(p->dptr2, p->list_pages[0]);
  EXPECT_EQ(bus.ram_u64(p->dptr2), 0x40000u);
  EXPECT_EQ(bus.ram_u64(p->dptr2 + 8), 0x80000u);
  EXPECT_EQ(memory.bytes_in_use(), 4096u);
  ASSERT_TRUE(release(memory, *p).ok());
  EXPECT_EQ(memory.bytes_in_use(), 0u);
}

TEST_F(DataPointerTest, PrpListChainsAcrossListPages) {
  // 1 + 600 pages: the first list page holds 511 entries and a link.
  uint64_t base = 0x100000;
  std::vector<DataSegment> segs = {{base, 601 * 4096ull}};
  auto p = build_prp(bus, memory, segs);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  ASSERT_EQ(p->list_pages.size(), 2u);
  EXPECT_EQ(bus.ram_u64(p->dptr2), base + 4096);
  EXPECT_EQ(bus.ram_u64(p->dptr2 + 510 * 8), base + 511 * 4096);
  EXPECT_EQ(bus.ram_u64(p->dptr2 + 511 * 8), p->list_pages[1]);
  EXPECT_EQ(bus.ram_u64(p->list_pages[1]), base + 512 * 4096);
  EXPECT_EQ(bus.ram_u64(p->list_pages[1] + 88 * 8), base + 600 * 4096);
}

TEST_F(DataPointerTest, PrpExactlyOneFullListPageDoesNotChain) {
  std::vector<DataSegment> segs = {{0x100000, 513 * 4096ull}};
  auto p = build_prp(bus, memory, segs);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->list_pages.size(), 1u);
  EXPECT_EQ(bus.ram_u64(p->dptr2 + 511 * 8), 0x100000u + 512 * 4096);
}

TEST_F(DataPointerTest, PrpRulesAreEnforced) {
  std::vector<DataSegment> unaligned_middle = {{0x10000, 0x1000}, {0x20200, 0x1000}};
  auto p = build_prp(bus, memory, unaligned_middle);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("not on a page boundary"), std::string::npos);
  std::vector<DataSegment> short_first = {{0x10000, 0x800}, {0x20000, 0x1000}};
  EXPECT_FALSE(build_prp(bus, memory, short_first).ok());
  std::vector<DataSegment> odd_start = {{0x10002, 0x100}};
  EXPECT_FALSE(build_prp(bus, memory, odd_start).ok());
  std::vector<DataSegment> bucket = {{0, 0x100, true}};
  EXPECT_FALSE(build_prp(bus, memory, bucket).ok());
  EXPECT_EQ(memory.bytes_in_use(), 0u);
}

TEST_F(DataPointerTest, SglSingleBlockSitsInTheSqe) {
  std::vector<DataSegment> segs = {{0x30000, 0x1234}};
  auto p = build_sgl(bus, memory, segs);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->psdt, sn::kPsdtSglMptrContiguous);
  Sqe s;
  p->apply(s);
  EXPECT_EQ(s.psdt(), sn::kPsdtSglMptrContiguous);
  EXPECT_EQ(s.prp1(), 0x30000u);
  EXPECT_EQ(s.u32(32), 0x1234u);
  EXPECT_EQ(s.bytes[39], sn::kSglDataBlock << 4);
  EXPECT_TRUE(p->list_pages.empty());
}

TEST_F(DataPointerTest, SglSegmentsChainWithBitBuckets) {
  std::vector<DataSegment> segs = {
      {0x30000, 0x200}, {0, 0x200, true}, {0x50000, 0x400},
      {0x60000, 0x10},  {0x70000, 0x20},  {0x78000, 0x40}};
  SglOptions options;
  options.max_descriptors_per_segment = 3;
  auto p = build_sgl(bus, memory, segs, options);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  // SQE: Segment descriptor to segment 1 (2 data + 1 link), then segment 2 (2 data + a Last
  // Segment link), then the last segment with the final two data blocks.
  ASSERT_EQ(p->list_pages.size(), 3u);
  Sqe s;
  p->apply(s);
  EXPECT_EQ(s.prp1(), p->list_pages[0]);
  EXPECT_EQ(s.u32(32), 48u);
  EXPECT_EQ(s.bytes[39], sn::kSglSegment << 4);
  uint64_t seg1 = p->list_pages[0];
  EXPECT_EQ(bus.ram_u64(seg1), 0x30000u);
  EXPECT_EQ(bus.ram[seg1 + 15], sn::kSglDataBlock << 4);
  EXPECT_EQ(bus.ram[seg1 + 16 + 15], sn::kSglBitBucket << 4);
  EXPECT_EQ(bus.ram_u64(seg1 + 16 + 8) & 0xffffffff, 0x200u);
  EXPECT_EQ(bus.ram_u64(seg1 + 32), p->list_pages[1]);
  EXPECT_EQ(bus.ram[seg1 + 32 + 15], sn::kSglSegment << 4);
  uint64_t seg2 = p->list_pages[1];
  EXPECT_EQ(bus.ram_u64(seg2), 0x50000u);
  EXPECT_EQ(bus.ram_u64(seg2 + 16), 0x60000u);
  EXPECT_EQ(bus.ram_u64(seg2 + 32), p->list_pages[2]);
  EXPECT_EQ(bus.ram_u64(seg2 + 40) & 0xffffffff, 32u);
  EXPECT_EQ(bus.ram[seg2 + 47], sn::kSglLastSegment << 4);
  EXPECT_EQ(bus.ram_u64(p->list_pages[2]), 0x70000u);
  EXPECT_EQ(bus.ram_u64(p->list_pages[2] + 16), 0x78000u);
  ASSERT_TRUE(release(memory, *p).ok());
  EXPECT_EQ(memory.bytes_in_use(), 0u);
}

TEST_F(DataPointerTest, SglCanForceALastSegmentList) {
  std::vector<DataSegment> segs = {{0x30000, 0x200}};
  SglOptions options;
  options.always_use_segment_list = true;
  auto p = build_sgl(bus, memory, segs, options);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->list_pages.size(), 1u);
  Sqe s;
  p->apply(s);
  EXPECT_EQ(s.bytes[39], sn::kSglLastSegment << 4);
  EXPECT_EQ(s.u32(32), 16u);
  options.max_descriptors_per_segment = 1;
  EXPECT_FALSE(build_sgl(bus, memory, segs, options).ok());
}

TEST_F(DataPointerTest, ListMemoryExhaustionIsAnErrorAndLeaksNothing) {
  auto small = DmaMemory::create(kPool, kPool + 4096);
  ASSERT_TRUE(small.ok());
  std::vector<DataSegment> segs = {{0x100000, 601 * 4096ull}};
  auto p = build_prp(bus, *small, segs);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(small->bytes_in_use(), 0u);
}

}  // namespace
}  // namespace ferry::guest::nvme
