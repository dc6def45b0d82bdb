#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "memory/address_space.h"

namespace ferry::memory {
namespace {

struct Recorder : MmioHandler {
  struct Access {
    uint64_t offset;
    uint64_t value;
    unsigned size;
  };
  std::vector<Access> writes;
  uint64_t read(uint64_t offset, unsigned size) override {
    return (0x1122334455667788ull + offset) & (size == 8 ? ~0ull : ((1ull << (8 * size)) - 1));
  }
  void write(uint64_t offset, uint64_t value, unsigned size) override {
    writes.push_back({offset, value, size});
  }
};

class AddressSpaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto low = RamBlock::anonymous("pc.ram", 16 * kPageSize);
    auto high = RamBlock::anonymous("ram1", 4 * kPageSize);
    ASSERT_TRUE(low.ok() && high.ok());
    ASSERT_TRUE(as.add_ram(0, std::move(*low)).ok());
    ASSERT_TRUE(as.add_ram(16 * kPageSize, std::move(*high)).ok());  // adjacent
    ASSERT_TRUE(as.add_mmio("msi", 0xfee00000, 0x100000, msi).ok());
  }
  AddressSpace as;
  Recorder msi;
};

TEST_F(AddressSpaceTest, RamWritesMarkDirtyAndCrossBlocks) {
  std::vector<uint8_t> data(100, 0xcd);
  uint64_t addr = 16 * kPageSize - 50;
  ASSERT_TRUE(as.write(addr, data).ok());
  EXPECT_TRUE(as.find_ram_block("pc.ram")->dirty().test(15));
  EXPECT_TRUE(as.find_ram_block("ram1")->dirty().test(0));
  std::vector<uint8_t> back(100);
  ASSERT_TRUE(as.read(addr, back).ok());
  EXPECT_EQ(back, data);
  EXPECT_EQ(as.find_ram_block("ram1")->host()[49], 0xcd);
}

TEST_F(AddressSpaceTest, LoadsAndStoresAreLittleEndian) {
  ASSERT_TRUE(as.store(0x100, 0x0102030405060708ull, 8).ok());
  EXPECT_EQ(as.find_ram_block("pc.ram")->host()[0x100], 0x08);
  auto v = as.load(0x100, 4);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 0x05060708u);
  EXPECT_FALSE(as.load(0x100, 3).ok());
}

TEST_F(AddressSpaceTest, MmioWritesAreDispatched) {
  ASSERT_TRUE(as.store(0xfee00004, 0x4021, 4).ok());
  ASSERT_EQ(msi.writes.size(), 1u);
  EXPECT_EQ(msi.writes[0].offset, 4u);
  EXPECT_EQ(msi.writes[0].value, 0x4021u);
  EXPECT_EQ(msi.writes[0].size, 4u);
  // A DMA write into MMIO splits into natural accesses.
  uint8_t bytes[6] = {1, 2, 3, 4, 5, 6};
  ASSERT_TRUE(as.write(0xfee00010, bytes).ok());
  ASSERT_EQ(msi.writes.size(), 3u);
  EXPECT_EQ(msi.writes[1].size, 4u);
  EXPECT_EQ(msi.writes[1].value, 0x04030201u);
  EXPECT_EQ(msi.writes[2].size, 2u);
  auto v = as.load(0xfee00000, 2);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 0x7788u);
}

TEST_F(AddressSpaceTest, UnmappedAccessesNameTheAddress) {
  uint8_t b[4] = {};
  Status st = as.write(20 * kPageSize - 2, b);  // runs off the end of ram1
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("0x14000"), std::string::npos) << st.to_string();
  EXPECT_EQ(as.find_ram_block("ram1")->host()[4 * kPageSize - 1], 0);  // nothing written
  auto r = as.load(0x90000000, 4);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().to_string().find("0x90000000"), std::string::npos);
  EXPECT_FALSE(as.store(~0ull - 1, 0, 8).ok());  // wraps
}

TEST_F(AddressSpaceTest, MmioRegionsMoveAndRefuseOverlap) {
  Recorder bar;
  ASSERT_TRUE(as.add_mmio("bar0", 0xe0000000, 0x4000, bar).ok());
  EXPECT_FALSE(as.add_mmio("bar1", 0xe0002000, 0x4000, bar).ok());
  EXPECT_FALSE(as.add_mmio("bar0", 0xd0000000, 0x4000, bar).ok());  // duplicate name
  EXPECT_FALSE(as.move_mmio("bar0", 0x1000).ok());                   // onto RAM
  ASSERT_TRUE(as.store(0xe0000008, 1, 4).ok());
  ASSERT_TRUE(as.move_mmio("bar0", 0xe1000000).ok());
  EXPECT_FALSE(as.store(0xe0000008, 1, 4).ok());
  ASSERT_TRUE(as.store(0xe1000008, 2, 4).ok());
  EXPECT_EQ(bar.writes.size(), 2u);
  ASSERT_TRUE(as.remove_mmio("bar0").ok());
  EXPECT_FALSE(as.store(0xe1000008, 2, 4).ok());
  EXPECT_FALSE(as.remove_mmio("bar0").ok());
}

TEST_F(AddressSpaceTest, TranslateGivesHostSegmentsForRamOnly) {
  GuestRange ranges[] = {{0x1000, 0x200}, {16 * kPageSize - 0x10, 0x20}};
  auto iov = as.translate(ranges, 8);
  ASSERT_TRUE(iov.ok()) << iov.status().to_string();
  ASSERT_EQ(iov->size(), 3u);  // the second range splits across the two blocks
  EXPECT_EQ((*iov)[0].iov_base, as.find_ram_block("pc.ram")->host() + 0x1000);
  EXPECT_EQ((*iov)[1].iov_len, 0x10u);
  EXPECT_EQ((*iov)[2].iov_base, as.find_ram_block("ram1")->host());
  EXPECT_FALSE(as.translate(ranges, 2).ok());  // bounded
  GuestRange mmio[] = {{0xfee00000, 4}};
  auto refused = as.translate(mmio, 8);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().to_string().find("msi"), std::string::npos);
  ASSERT_TRUE(as.mark_written({0x3000, 1}).ok());
  EXPECT_TRUE(as.find_ram_block("pc.ram")->dirty().test(3));
}

}  // namespace
}  // namespace ferry::memory
