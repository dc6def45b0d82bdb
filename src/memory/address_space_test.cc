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

// Ranges touching the top of the address space: the last byte is 2^64 - 1, so addr + len
// is 0. None of these may be taken for mapped, and none may crash.
TEST_F(AddressSpaceTest, RangesEndingAtTwoToTheSixtyFourAreUnmappedNotWrapped) {
  constexpr uint64_t kTop = ~uint64_t{0};
  uint8_t byte = 0xaa;
  EXPECT_FALSE(as.read(kTop, std::span(&byte, 1)).ok());
  EXPECT_EQ(byte, 0xaa) << "nothing transferred";
  EXPECT_FALSE(as.write(kTop, std::span<const uint8_t>(&byte, 1)).ok());
  EXPECT_FALSE(as.fill(kTop, 0, 1).ok());
  EXPECT_FALSE(as.load(kTop, 1).ok());
  EXPECT_FALSE(as.store(kTop, 1, 1).ok());
  std::vector<uint8_t> page(kPageSize);
  auto read = as.read(kTop - kPageSize + 1, page);  // an NVMe PRP1 of 0xfffffffffffff000
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.to_string().find("0xfffffffffffff000"), std::string::npos) << read.to_string();
  EXPECT_FALSE(as.fill(kTop - 7, 0, 8).ok());
  EXPECT_FALSE(as.load(kTop - 7, 8).ok());
  EXPECT_FALSE(as.store(kTop - 7, 0, 8).ok());
  GuestRange top[] = {{kTop - kPageSize + 1, kPageSize}};
  EXPECT_FALSE(as.translate(top, 8).ok());
  EXPECT_FALSE(as.mark_written(top[0]).ok());
  EXPECT_FALSE(as.is_ram(top[0]));
  EXPECT_FALSE(as.is_ram({kTop, 1}));
}

TEST_F(AddressSpaceTest, RangesPassingTwoToTheSixtyFourAreRefusedAsWrapping) {
  constexpr uint64_t kTop = ~uint64_t{0};
  std::vector<uint8_t> two(2);
  Status wrapped = as.read(kTop, two);
  ASSERT_FALSE(wrapped.ok());
  EXPECT_NE(wrapped.to_string().find("wraps"), std::string::npos) << wrapped.to_string();
  EXPECT_FALSE(as.write(kTop, two).ok());
  EXPECT_FALSE(as.fill(kTop - 2, 0, 4).ok());
  EXPECT_FALSE(as.fill(1, 0, kTop).ok());
  EXPECT_FALSE(as.load(kTop - 3, 8).ok());
  GuestRange wrap[] = {{kTop - 0xfff, 0x2000}};
  EXPECT_FALSE(as.translate(wrap, 8).ok());
  EXPECT_FALSE(as.mark_written(wrap[0]).ok());
  EXPECT_FALSE(as.is_ram({0x1000, kTop}));
  // RAM at 0 must not be reached by wrapping around from the top.
  EXPECT_EQ(as.find_ram_block("pc.ram")->dirty().count(), 0u);
}

// A region may occupy the very top of the address space; accesses up to its last byte
// work, and a region crossing 2^64 or overlapping it is refused.
TEST_F(AddressSpaceTest, RegionAtTheTopOfTheAddressSpace) {
  constexpr uint64_t kTop = ~uint64_t{0};
  Recorder top;
  ASSERT_TRUE(as.add_mmio("top", kTop - 0xfff, 0x1000, top).ok());
  auto v = as.load(kTop, 1);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_EQ(*v, (0x1122334455667788ull + 0xfff) & 0xff);
  ASSERT_TRUE(as.store(kTop - 7, 0x55, 8).ok());
  ASSERT_EQ(top.writes.size(), 1u);
  EXPECT_EQ(top.writes[0].offset, 0xff8u);
  std::vector<uint8_t> all(0x1000);
  EXPECT_TRUE(as.read(kTop - 0xfff, all).ok());
  Recorder other;
  Status overlap = as.add_mmio("other", kTop - 0x1fff, 0x2000, other);
  EXPECT_FALSE(overlap.ok()) << "overlaps 'top' in its last page";
  EXPECT_NE(overlap.to_string().find("top"), std::string::npos) << overlap.to_string();
  EXPECT_FALSE(as.add_mmio("past", kTop - 0xfff, 0x2000, other).ok());
  EXPECT_FALSE(as.move_mmio("msi", kTop - 0xfff).ok());
  EXPECT_FALSE(as.move_mmio("msi", kTop).ok()) << "would pass 2^64";
  // The map is unchanged by the refusals.
  EXPECT_TRUE(as.load(0xfee00000, 4).ok());
}

TEST_F(AddressSpaceTest, MappedRunsStopAtRegionBoundariesAndTheTop) {
  bool mapped = false;
  EXPECT_EQ(as.mapped_run(0x100, 0x100, mapped), 0x100u);
  EXPECT_TRUE(mapped);
  EXPECT_EQ(as.mapped_run(20 * kPageSize - 8, 0x100, mapped), 8u);  // end of ram1
  EXPECT_TRUE(mapped);
  EXPECT_EQ(as.mapped_run(20 * kPageSize, ~uint64_t{0}, mapped), 0xfee00000 - 20 * kPageSize);
  EXPECT_FALSE(mapped);
  EXPECT_EQ(as.mapped_run(0xfef00000, ~uint64_t{0}, mapped), ~uint64_t{0} - 0xfef00000 + 1);
  EXPECT_FALSE(mapped) << "the run ends with the address space";
  EXPECT_EQ(as.mapped_run(~uint64_t{0}, 2, mapped), 1u);
  EXPECT_FALSE(mapped);
  EXPECT_EQ(as.mapped_run(0x100, 0, mapped), 0u);
}

TEST_F(AddressSpaceTest, EmptyRangesTouchNothing) {
  EXPECT_TRUE(as.read(~uint64_t{0}, {}).ok());
  EXPECT_TRUE(as.fill(0x5000000000, 0, 0).ok());
  EXPECT_TRUE(as.mark_written({~uint64_t{0}, 0}).ok());
  EXPECT_EQ(as.find_ram_block("pc.ram")->dirty().count(), 0u);
}

}  // namespace
}  // namespace ferry::memory

namespace ferry::memory {
namespace {

// q35's split of one block: the first part below a hole, the rest at 4 GiB. Accesses,
// translation and dirty marks reach the right offset of the one block.
TEST(RamAliasTest, OneBlockMappedTwiceReachesTheRightOffsets) {
  constexpr uint64_t kLow = 8 * kPageSize;
  constexpr uint64_t kHigh = uint64_t{1} << 32;
  auto block = RamBlock::anonymous("pc.ram", 12 * kPageSize);
  ASSERT_TRUE(block.ok());
  AddressSpace as;
  RamAlias aliases[] = {{"ram-below-4g", 0, 0, kLow},
                        {"ram-above-4g", kHigh, kLow, 4 * kPageSize}};
  auto added = as.add_ram(std::move(*block), aliases);
  ASSERT_TRUE(added.ok()) << added.status().to_string();
  RamBlock& ram = **added;
  ASSERT_EQ(as.ram_blocks().size(), 1u);

  ASSERT_TRUE(as.store(kHigh + 0x10, 0x1122334455667788ull, 8).ok());
  uint64_t raw = 0;
  std::memcpy(&raw, ram.host() + kLow + 0x10, 8);
  EXPECT_EQ(raw, 0x1122334455667788ull);
  EXPECT_TRUE(ram.dirty().test(8));  // page 8 of the block, not page 0
  EXPECT_FALSE(ram.dirty().test(0));

  std::memcpy(ram.host() + 3 * kPageSize, "low", 3);
  auto v = as.load(3 * kPageSize, 2);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 0x6f6cu);

  // The hole between the aliases is not RAM; each alias is.
  EXPECT_FALSE(as.is_ram({kLow, 1}));
  EXPECT_TRUE(as.is_ram({kHigh, 4 * kPageSize}));
  EXPECT_FALSE(as.is_ram({kHigh, 4 * kPageSize + 1}));

  GuestRange range{kHigh + kPageSize, 2 * kPageSize};
  auto iov = as.translate(std::span(&range, 1), 4);
  ASSERT_TRUE(iov.ok());
  ASSERT_EQ(iov->size(), 1u);
  EXPECT_EQ((*iov)[0].iov_base, ram.host() + kLow + kPageSize);
  ASSERT_TRUE(as.mark_written(range).ok());
  EXPECT_TRUE(ram.dirty().test(9));
  EXPECT_TRUE(ram.dirty().test(10));

  ASSERT_TRUE(as.fill(kHigh + 3 * kPageSize, 0xab, kPageSize).ok());
  EXPECT_EQ(ram.host()[11 * kPageSize + 5], 0xab);
  EXPECT_TRUE(ram.dirty().test(11));
}

TEST(RamAliasTest, BadAliasesLeaveTheMapAsItWas) {
  AddressSpace as;
  auto block = RamBlock::anonymous("pc.ram", 4 * kPageSize);
  ASSERT_TRUE(block.ok());
  RamAlias outside[] = {{"a", 0, 0, 2 * kPageSize}, {"b", 0x100000, 2 * kPageSize, 3 * kPageSize}};
  auto added = as.add_ram(std::move(*block), outside);
  ASSERT_FALSE(added.ok());
  EXPECT_NE(added.status().message().find("not inside block 'pc.ram'"), std::string::npos)
      << added.status().to_string();
  bool mapped = true;
  as.mapped_run(0, kPageSize, mapped);
  EXPECT_FALSE(mapped);  // alias "a" was taken back

  auto again = RamBlock::anonymous("pc.ram", 4 * kPageSize);
  ASSERT_TRUE(again.ok());
  RamAlias overlapping[] = {{"a", 0, 0, 2 * kPageSize},
                            {"b", kPageSize, 2 * kPageSize, 2 * kPageSize}};
  auto overlap = as.add_ram(std::move(*again), overlapping);
  ASSERT_FALSE(overlap.ok());
  EXPECT_NE(overlap.status().message().find("overlaps 'a'"), std::string::npos)
      << overlap.status().to_string();
  EXPECT_TRUE(as.ram_blocks().empty());
}

}  // namespace
}  // namespace ferry::memory
