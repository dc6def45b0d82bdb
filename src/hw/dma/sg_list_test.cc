#include "hw/dma/sg_list.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "hw/dma/test_memory.h"
#include "memory/guest_memory.h"

namespace ferry::dma {
namespace {

using ::testing::ElementsAre;
using testing::kMmioBase;
using testing::kRamSize;
using testing::kUnmapped;
using memory::kPageSize;

using SgListTest = testing::DmaMemoryTest;

DataMap build(std::initializer_list<DataSegment> pieces, const DmaView& view) {
  DataMapBuilder builder;
  for (const DataSegment& p : pieces) {
    if (p.bit_bucket) builder.add_bit_bucket(p.len);
    else builder.add(p.addr, p.len);
  }
  Result<DataMap> map = std::move(builder).finish(view);
  EXPECT_TRUE(map.ok()) << map.status().to_string();
  return map.ok() ? std::move(map).value() : DataMap{};
}

TEST_F(SgListTest, BuilderMergesContiguousPiecesAndBuckets) {
  DataMap map = build({{0x1000, 0x800}, {0x1800, 0x800}, {0x5000, 0x10}, {0, 8, true},
                       {0, 8, true}, {0x5010, 4}, {0x7000, 0}},
                      view);
  EXPECT_THAT(map.segments, ElementsAre(DataSegment{0x1000, 0x1000, false},
                                        DataSegment{0x5000, 0x10, false},
                                        DataSegment{0, 16, true},
                                        DataSegment{0x5010, 4, false}));
  EXPECT_EQ(map.length, 0x1000u + 0x10 + 16 + 4);
}

TEST_F(SgListTest, BuilderReusesStorage) {
  DataMap old;
  old.segments.reserve(64);
  old.segments.push_back({0x9000, 1, false});
  old.length = 1;
  const DataSegment* storage = old.segments.data();
  DataMapBuilder builder(std::move(old));
  builder.add(0x2000, 16);
  Result<DataMap> map = std::move(builder).finish(view);
  ASSERT_TRUE(map.ok());
  EXPECT_EQ(map->segments.data(), storage);
  EXPECT_THAT(map->segments, ElementsAre(DataSegment{0x2000, 16, false}));
}

TEST_F(SgListTest, FinishRefusesWhatIsNotRamOrNotReachable) {
  for (uint64_t bad : {kUnmapped, kMmioBase, kRamSize - 8}) {
    DataMapBuilder builder;
    builder.add(0x1000, 16);
    builder.add(bad, 16);
    Result<DataMap> map = std::move(builder).finish(view);
    ASSERT_FALSE(map.ok()) << std::hex << bad;
    EXPECT_EQ(map.status().code(), ErrorCode::kOutOfRange);
  }
  DataMapBuilder builder;
  builder.add(0x1000, 16);
  builder.add_bit_bucket(16);  // buckets have no memory to check
  gate.open = false;
  Result<DataMap> map = std::move(builder).finish(view);
  EXPECT_EQ(map.status().code(), ErrorCode::kFailedPrecondition);
}

TEST_F(SgListTest, CopyRoundTripMarksDirty) {
  DataMap map = build({{0x1f00, 0x100}, {0x7000, kPageSize}, {0x3000, kPageSize}}, view);
  memory::PageBitmap cleared;
  block->dirty().sync(cleared);

  std::vector<uint8_t> data(map.length);
  std::iota(data.begin(), data.end(), uint8_t{1});
  ASSERT_TRUE(copy_to_guest(view, map, data).ok());
  EXPECT_TRUE(block->dirty().test(1));
  EXPECT_TRUE(block->dirty().test(7));
  EXPECT_TRUE(block->dirty().test(3));
  EXPECT_FALSE(block->dirty().test(2));
  EXPECT_EQ(block->host()[0x1f00], data[0]);
  EXPECT_EQ(block->host()[0x7000], data[0x100]);
  EXPECT_EQ(block->host()[0x3000], data[0x100 + kPageSize]);

  std::vector<uint8_t> back(map.length);
  ASSERT_TRUE(copy_from_guest(view, map, back).ok());
  EXPECT_EQ(back, data);

  // A shorter buffer moves a prefix; a longer one is the caller's bug.
  std::vector<uint8_t> prefix(10, 0xee);
  ASSERT_TRUE(copy_to_guest(view, map, prefix).ok());
  EXPECT_EQ(block->host()[0x1f09], 0xee);
  EXPECT_EQ(block->host()[0x1f0a], data[10]);
  std::vector<uint8_t> too_long(map.length + 1);
  Status st = copy_to_guest(view, map, too_long);
  EXPECT_EQ(st.code(), ErrorCode::kInternal);
  EXPECT_EQ(st.message(), "a 8449-byte buffer does not fit a 8448-byte transfer");
  EXPECT_EQ(copy_from_guest(view, map, too_long).code(), ErrorCode::kInternal);
}

TEST_F(SgListTest, CopySkipsBitBuckets) {
  DataMap map = build({{0x3000, 4}, {0, 4, true}, {0x5000, 4}}, view);
  std::vector<uint8_t> data = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  ASSERT_TRUE(copy_to_guest(view, map, data).ok());
  EXPECT_EQ(std::memcmp(block->host() + 0x3000, data.data(), 4), 0);
  EXPECT_EQ(std::memcmp(block->host() + 0x5000, data.data() + 8, 4), 0);
  std::vector<uint8_t> back(12, 0xff);
  ASSERT_TRUE(copy_from_guest(view, map, back).ok());
  EXPECT_THAT(back, ElementsAre(1, 2, 3, 4, 0, 0, 0, 0, 9, 10, 11, 12));
}

TEST_F(SgListTest, IovecsPointIntoRamAndSinkBitBuckets) {
  DataMap map = build({{0x3000, 100}, {0, 10000, true}, {0x9000, 50}}, view);
  std::vector<uint8_t> sink(4096);
  std::vector<iovec> iov = {{nullptr, 1}};  // replaced, not appended to
  ASSERT_TRUE(to_iovecs(view, map, sink, iov).ok());
  ASSERT_EQ(iov.size(), 5u);  // data, 3 sink pieces (4096 + 4096 + 1808), data
  EXPECT_EQ(iov[0].iov_base, block->host() + 0x3000);
  EXPECT_EQ(iov[0].iov_len, 100u);
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(iov[i].iov_base, sink.data());
  EXPECT_EQ(iov[1].iov_len + iov[2].iov_len + iov[3].iov_len, 10000u);
  EXPECT_EQ(iov[4].iov_base, block->host() + 0x9000);
  size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  EXPECT_EQ(total, map.length);

  // A device reading into guest RAM through the iovecs marks it afterwards, even when
  // bus mastering went off meanwhile.
  memory::PageBitmap cleared;
  block->dirty().sync(cleared);
  gate.open = false;
  mark_written(view, map);
  EXPECT_TRUE(block->dirty().test(3));
  EXPECT_TRUE(block->dirty().test(9));
  EXPECT_EQ(block->dirty().count(), 2u);

  // No sink for a bucket: the caller's bug.
  gate.open = true;
  EXPECT_EQ(to_iovecs(view, map, {}, iov).code(), ErrorCode::kInternal);
}

TEST_F(SgListTest, StaleMapsAndShutGatesFailWithStatus) {
  // A map that no longer fits the memory (hand-made here).
  DataMap stale;
  stale.segments.push_back({kUnmapped, 16, false});
  stale.length = 16;
  std::vector<uint8_t> sink(16);
  std::vector<iovec> iov;
  Status st = to_iovecs(view, stale, sink, iov);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.code(), ErrorCode::kInternal);
  EXPECT_TRUE(iov.empty());
  std::vector<uint8_t> buf(16);
  EXPECT_FALSE(copy_from_guest(view, stale, buf).ok());
  EXPECT_FALSE(copy_to_guest(view, stale, buf).ok());

  // A good map with bus mastering off: refused, nothing moved.
  DataMap map = build({{0x4000, 16}}, view);
  gate.open = false;
  std::vector<uint8_t> data(16, 0xab);
  EXPECT_EQ(copy_to_guest(view, map, data).code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(block->host()[0x4000], 0);
  EXPECT_EQ(copy_from_guest(view, map, buf).code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(to_iovecs(view, map, sink, iov).code(), ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(iov.empty());
}

}  // namespace
}  // namespace ferry::dma
