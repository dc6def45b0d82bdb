// PRPs at the top of the address space: the driver must describe a transfer that ends
// exactly at 2^64 (tests aim there on purpose) and refuse one that would pass it, instead
// of wrapping to address 0.
#include <gtest/gtest.h>

#include "guest/nvme/data_pointer.h"
#include "guest/test_fakes.h"

namespace ferry::guest::nvme {
namespace {

using guest::testing::FakeBus;

constexpr uint64_t kTop = ~uint64_t{0};

TEST(PrpEdge, TransfersEndingAtTwoToTheSixtyFour) {
  FakeBus bus(8 << 20);
  DmaMemory memory = std::move(DmaMemory::create(6 << 20, 8 << 20).value());
  std::vector<DataSegment> last_page = {{kTop - 0xfff, 4096}};
  auto p = build_prp(bus, memory, last_page);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->dptr1, kTop - 0xfff);
  EXPECT_EQ(p->dptr2, 0u) << "one page: no PRP2";
  std::vector<DataSegment> two_pages = {{kTop - 0x17ff, 0x1800}};
  p = build_prp(bus, memory, two_pages);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->dptr1, kTop - 0x17ff);
  EXPECT_EQ(p->dptr2, kTop - 0xfff);
  std::vector<DataSegment> last_bytes = {{kTop - 511, 512}};
  p = build_prp(bus, memory, last_bytes);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->dptr1, kTop - 511);
}

TEST(PrpEdge, TransfersPassingTwoToTheSixtyFourAreRefused) {
  FakeBus bus(8 << 20);
  DmaMemory memory = std::move(DmaMemory::create(6 << 20, 8 << 20).value());
  std::vector<DataSegment> past = {{kTop - 0xfff, 8192}};
  auto p = build_prp(bus, memory, past);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("passes the end of the address space"), std::string::npos)
      << p.status().message();
  std::vector<DataSegment> two = {{0x10000, 4096}, {kTop - 0xfff, 4097}};
  EXPECT_FALSE(build_prp(bus, memory, two).ok());
}

}  // namespace
}  // namespace ferry::guest::nvme
