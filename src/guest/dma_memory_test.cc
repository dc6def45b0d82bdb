#include "guest/dma_memory.h"

#include <gtest/gtest.h>

namespace ferry::guest {
namespace {

TEST(DmaMemory, AllocatesAlignedPagesAndReusesFreedOnes) {
  auto memory = DmaMemory::create(0x1000000, 0x1100000);
  ASSERT_TRUE(memory.ok());
  auto a = memory->allocate(100);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, 0x1000000u);
  EXPECT_EQ(memory->allocation_size(*a), 4096u);
  auto b = memory->allocate(0x10000, 0x10000);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, 0x1010000u);
  auto c = memory->allocate(4096);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, 0x1001000u);  // first fit, in the gap left by the alignment
  EXPECT_EQ(memory->bytes_in_use(), 0x12000u);
  ASSERT_TRUE(memory->free(*a).ok());
  ASSERT_TRUE(memory->free(*c).ok());
  auto d = memory->allocate(0x2000);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, 0x1000000u);  // the two freed pages merged
  ASSERT_TRUE(memory->free(*d).ok());
  ASSERT_TRUE(memory->free(*b).ok());
  EXPECT_EQ(memory->bytes_in_use(), 0u);
  auto all = memory->allocate(0x100000);
  ASSERT_TRUE(all.ok());  // everything merged back into one block
}

TEST(DmaMemory, ReportsBadRequests) {
  EXPECT_FALSE(DmaMemory::create(0x1000, 0x1000).ok());
  EXPECT_FALSE(DmaMemory::create(0x1001, 0x3000).ok());
  auto memory = DmaMemory::create(0, 0x4000);
  ASSERT_TRUE(memory.ok());
  EXPECT_FALSE(memory->allocate(0).ok());
  EXPECT_FALSE(memory->allocate(4096, 3000).ok());
  auto full = memory->allocate(0x5000);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), ErrorCode::kOutOfRange);
  ASSERT_TRUE(memory->allocate(0x4000).ok());
  auto none = memory->allocate(1);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no free block"), std::string::npos);
  auto bad_free = memory->free(0x1000);
  ASSERT_FALSE(bad_free.ok());
  EXPECT_NE(bad_free.message().find("0x1000"), std::string::npos);
}

}  // namespace
}  // namespace ferry::guest
