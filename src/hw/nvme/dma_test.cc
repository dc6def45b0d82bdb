#include "hw/nvme/dma.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <numeric>
#include <vector>

#include "spec/nvme.h"

namespace ferry::nvme {
namespace {

namespace sn = spec::nvme;
using memory::kPageSize;

constexpr uint16_t kDnr = sn::kStatusDnr;
constexpr uint64_t kRamSize = 4 << 20;      // RAM at [0, 4 MiB)
constexpr uint64_t kMmioBase = 0x800000;    // an MMIO region after a hole
constexpr uint64_t kUnmapped = 0x600000;    // nothing here

struct NullMmio : memory::MmioHandler {
  uint64_t read(uint64_t, unsigned) override { return 0; }
  void write(uint64_t, uint64_t, unsigned) override {}
};

class DmaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ram = memory::RamBlock::anonymous("pc.ram", kRamSize);
    ASSERT_TRUE(ram.ok());
    auto added = as.add_ram(0, std::move(*ram));
    ASSERT_TRUE(added.ok());
    block = *added;
    ASSERT_TRUE(as.add_mmio("bar", kMmioBase, 0x10000, mmio).ok());
  }

  void put64(uint64_t addr, uint64_t value) { ASSERT_TRUE(as.store(addr, value, 8).ok()); }

  // Writes a PRP list at `addr`.
  void put_list(uint64_t addr, const std::vector<uint64_t>& entries) {
    for (size_t i = 0; i < entries.size(); ++i) put64(addr + 8 * i, entries[i]);
  }

  static std::array<uint8_t, 16> sgl(uint64_t addr, uint32_t len, uint8_t type,
                                     uint8_t subtype = 0) {
    std::array<uint8_t, 16> d{};
    for (int i = 0; i < 8; ++i) d[i] = static_cast<uint8_t>(addr >> (8 * i));
    for (int i = 0; i < 4; ++i) d[8 + i] = static_cast<uint8_t>(len >> (8 * i));
    d[15] = static_cast<uint8_t>(type << 4 | subtype);
    return d;
  }
  static std::array<uint8_t, 16> data_block(uint64_t addr, uint32_t len) {
    return sgl(addr, len, sn::kSglDataBlock);
  }
  static std::array<uint8_t, 16> bit_bucket(uint32_t len) {
    return sgl(0, len, sn::kSglBitBucket);
  }
  static std::array<uint8_t, 16> segment(uint64_t addr, uint32_t count) {
    return sgl(addr, count * 16, sn::kSglSegment);
  }
  static std::array<uint8_t, 16> last_segment(uint64_t addr, uint32_t count) {
    return sgl(addr, count * 16, sn::kSglLastSegment);
  }
  // Writes a list of SGL descriptors at `addr`.
  void put_segment(uint64_t addr, const std::vector<std::array<uint8_t, 16>>& descriptors) {
    for (size_t i = 0; i < descriptors.size(); ++i)
      ASSERT_TRUE(as.write(addr + 16 * i, descriptors[i]).ok());
  }

  MapResult prp(uint64_t prp1, uint64_t prp2, uint64_t length) {
    return map_prp(view, prp1, prp2, length, limits);
  }
  MapResult sgl_read(const std::array<uint8_t, 16>& d, uint64_t length) {
    return map_sgl(view, d, length, /*to_device=*/false, limits);
  }
  MapResult sgl_write(const std::array<uint8_t, 16>& d, uint64_t length) {
    return map_sgl(view, d, length, /*to_device=*/true, limits);
  }

  // The controller's DMA view, bus mastering on unless a test turns it off.
  struct Gate : dma::DmaGate {
    bool open = true;
    bool dma_allowed() const override { return open; }
  };

  memory::AddressSpace as;
  memory::RamBlock* block = nullptr;
  NullMmio mmio;
  Gate gate;
  dma::DmaView view{as, gate, "nvme"};
  DmaLimits limits;
};

MATCHER_P3(Seg, addr, len, bucket, "") {
  return arg.addr == static_cast<uint64_t>(addr) && arg.len == static_cast<uint64_t>(len) &&
         arg.bit_bucket == bucket;
}
#define EXPECT_SEGMENTS(result, ...) \
  EXPECT_THAT((result).map.segments, ::testing::ElementsAre(__VA_ARGS__))

// ---- PRP ---------------------------------------------------------------------------------

TEST_F(DmaTest, PrpSinglePage) {
  auto r = prp(0x1000, 0xdead000, kPageSize);  // PRP2 unused: not even looked at
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(r.map.length, kPageSize);
  EXPECT_SEGMENTS(r, Seg(0x1000, 4096, false));
}

TEST_F(DmaTest, PrpZeroLengthIsEmpty) {
  auto r = prp(kUnmapped, 0, 0);
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(r.map.segments.empty());
}

TEST_F(DmaTest, PrpOffsetFirstPageCrossesIntoPrp2) {
  auto r = prp(0x1800, 0x5000, kPageSize);
  ASSERT_EQ(r.status, 0);
  EXPECT_SEGMENTS(r, Seg(0x1800, 0x800, false), Seg(0x5000, 0x800, false));
  // A short transfer inside PRP1's page needs no PRP2.
  auto inside = prp(0x1800, 0x1234, 0x100);
  ASSERT_EQ(inside.status, 0);
  EXPECT_SEGMENTS(inside, Seg(0x1800, 0x100, false));
}

TEST_F(DmaTest, PrpContiguousPagesMerge) {
  auto r = prp(0x1800, 0x2000, kPageSize);
  ASSERT_EQ(r.status, 0);
  EXPECT_SEGMENTS(r, Seg(0x1800, 0x1000, false));
}

TEST_F(DmaTest, PrpOffsetsAreChecked) {
  EXPECT_EQ(prp(0x1002, 0, 16).status, sn::kPrpOffsetInvalid | kDnr);  // not dword aligned
  EXPECT_EQ(prp(0x1000, 0x5008, 2 * kPageSize).status, sn::kPrpOffsetInvalid | kDnr);
  // A PRP list pointer must be qword aligned.
  EXPECT_EQ(prp(0x1000, 0x10004, 3 * kPageSize).status, sn::kPrpOffsetInvalid | kDnr);
}

TEST_F(DmaTest, PrpList) {
  put_list(0x10000, {0x3000, 0x7000, 0x8000});
  auto r = prp(0x1000, 0x10000, 4 * kPageSize);
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(r.map.length, 4 * kPageSize);
  EXPECT_SEGMENTS(r, Seg(0x1000, 4096, false), Seg(0x3000, 4096, false),
                  Seg(0x7000, 8192, false));
}

TEST_F(DmaTest, PrpListPartialLastPage) {
  put_list(0x10000, {0x3000, 0x5000});
  auto r = prp(0x1f00, 0x10000, 0x100 + kPageSize + 0x10);
  ASSERT_EQ(r.status, 0);
  EXPECT_SEGMENTS(r, Seg(0x1f00, 0x100, false), Seg(0x3000, 4096, false),
                  Seg(0x5000, 0x10, false));
}

TEST_F(DmaTest, PrpListEntryWithOffsetIsRefused) {
  put_list(0x10000, {0x3000, 0x7010});
  EXPECT_EQ(prp(0x1000, 0x10000, 3 * kPageSize).status, sn::kPrpOffsetInvalid | kDnr);
}

TEST_F(DmaTest, PrpListStartingInsideItsPage) {
  // The list starts 16 bytes before its page ends: room for two entries. Two pages fit.
  put_list(0x10ff0, {0x3000, 0x5000});
  auto fits = prp(0x1000, 0x10ff0, 3 * kPageSize);
  ASSERT_EQ(fits.status, 0);
  EXPECT_SEGMENTS(fits, Seg(0x1000, 4096, false), Seg(0x3000, 4096, false),
                  Seg(0x5000, 4096, false));
  // Three pages do not: the second entry points to the next list, which holds the rest.
  put_list(0x10ff0, {0x3000, 0x20000});
  put_list(0x20000, {0x5000, 0x9000});
  auto chained = prp(0x1000, 0x10ff0, 4 * kPageSize);
  ASSERT_EQ(chained.status, 0);
  EXPECT_SEGMENTS(chained, Seg(0x1000, 4096, false), Seg(0x3000, 4096, false),
                  Seg(0x5000, 4096, false), Seg(0x9000, 4096, false));
}

TEST_F(DmaTest, PrpListChainsAcrossListPages) {
  // 1 page in PRP1, 600 in lists: 511 in the first list page, 89 in the next.
  std::vector<uint64_t> first, second;
  auto data_page = [](size_t i) { return 0x100000 + (i % 64) * 2 * kPageSize; };  // gaps
  for (size_t i = 0; i < 511; ++i) first.push_back(data_page(i));
  first.push_back(0x40000);  // next list
  for (size_t i = 511; i < 600; ++i) second.push_back(data_page(i));
  put_list(0x30000, first);
  put_list(0x40000, second);
  auto r = prp(0x1000, 0x30000, 601 * kPageSize);
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(r.map.length, 601 * kPageSize);
  ASSERT_EQ(r.map.segments.size(), 601u);
  EXPECT_EQ(r.map.segments[511].addr, data_page(510));
  EXPECT_EQ(r.map.segments[512].addr, data_page(511));
  EXPECT_EQ(r.map.segments[600].addr, data_page(599));

  // The next-list pointer must be page aligned.
  put64(0x30000 + 511 * 8, 0x40008);
  EXPECT_EQ(prp(0x1000, 0x30000, 601 * kPageSize).status, sn::kPrpOffsetInvalid | kDnr);
  // And its list must be RAM (an unreadable list is final: DNR, as QEMU 7.2 reports).
  put64(0x30000 + 511 * 8, kUnmapped);
  EXPECT_EQ(prp(0x1000, 0x30000, 601 * kPageSize).status, sn::kDataTransferError | kDnr);
}

TEST_F(DmaTest, PrpLargerPageSize) {
  limits.page_size = 16384;
  // PRP1 at offset 0x3000 in its 16 KiB page: 4 KiB there, then 16 KiB at PRP2.
  auto r = prp(0x7000, 0x20000, 0x1000 + 0x4000);
  ASSERT_EQ(r.status, 0);
  EXPECT_SEGMENTS(r, Seg(0x7000, 0x1000, false), Seg(0x20000, 0x4000, false));
  // 4 KiB aligned is not 16 KiB aligned.
  EXPECT_EQ(prp(0x7000, 0x21000, 0x5000).status, sn::kPrpOffsetInvalid | kDnr);
  // A list: entries are 16 KiB pages.
  put_list(0x30000, {0x40000, 0x80000});
  auto list = prp(0x4000, 0x30000, 3 * 0x4000);
  ASSERT_EQ(list.status, 0);
  EXPECT_SEGMENTS(list, Seg(0x4000, 0x4000, false), Seg(0x40000, 0x4000, false),
                  Seg(0x80000, 0x4000, false));
  // A page size CC.MPS cannot express is the controller's bug.
  limits.page_size = 6000;
  EXPECT_EQ(prp(0x1000, 0, 16).status, sn::kInternalError | kDnr);
}

TEST_F(DmaTest, PrpDataMustBeRam) {
  EXPECT_EQ(prp(kUnmapped, 0, 512).status, sn::kDataTransferError);
  EXPECT_EQ(prp(kMmioBase, 0, 512).status, sn::kDataTransferError);
  EXPECT_EQ(prp(0x1000, kMmioBase, 2 * kPageSize).status, sn::kDataTransferError);
  // The last RAM page, then beyond the end of RAM.
  EXPECT_EQ(prp(kRamSize - kPageSize, kRamSize, 2 * kPageSize).status,
            sn::kDataTransferError);
  // A list entry pointing outside RAM.
  put_list(0x10000, {0x3000, kUnmapped});
  EXPECT_EQ(prp(0x1000, 0x10000, 3 * kPageSize).status, sn::kDataTransferError);
  // The list itself outside RAM, or in MMIO.
  EXPECT_EQ(prp(0x1000, kUnmapped, 3 * kPageSize).status, sn::kDataTransferError | kDnr);
  EXPECT_EQ(prp(0x1000, kMmioBase, 3 * kPageSize).status, sn::kDataTransferError | kDnr);
}

TEST_F(DmaTest, MaxTransferSize) {
  limits.max_transfer = 4 * kPageSize;
  put_list(0x10000, {0x3000, 0x4000, 0x5000, 0x6000});
  EXPECT_EQ(prp(0x1000, 0x10000, 4 * kPageSize).status, 0);
  EXPECT_EQ(prp(0x1000, 0x10000, 4 * kPageSize + 1).status, sn::kInvalidField | kDnr);
  EXPECT_EQ(sgl_read(data_block(0x1000, 1 << 20), 4 * kPageSize + 1).status,
            sn::kInvalidField | kDnr);
}

TEST_F(DmaTest, CommandPsdtSelectsTheForm) {
  std::array<uint8_t, 64> sqe{};
  auto put_sqe64 = [&](unsigned at, uint64_t v) {
    for (int i = 0; i < 8; ++i) sqe[at + i] = static_cast<uint8_t>(v >> (8 * i));
  };
  put_sqe64(sn::kSqePrp1, 0x1800);
  put_sqe64(sn::kSqePrp2, 0x5000);
  auto r = map_command_data(view, sqe, kPageSize, false, limits);
  ASSERT_EQ(r.status, 0);
  EXPECT_SEGMENTS(r, Seg(0x1800, 0x800, false), Seg(0x5000, 0x800, false));

  auto d = data_block(0x9000, 4096);
  std::copy(d.begin(), d.end(), sqe.begin() + sn::kSqePrp1);
  sqe[sn::kSqeFlags] = sn::kPsdtSglMptrContiguous << sn::kPsdtShift;
  r = map_command_data(view, sqe, kPageSize, false, limits);
  ASSERT_EQ(r.status, 0);
  EXPECT_SEGMENTS(r, Seg(0x9000, 4096, false));

  sqe[sn::kSqeFlags] = sn::kPsdtSglMptrSgl << sn::kPsdtShift;  // metadata SGL: unsupported
  EXPECT_EQ(map_command_data(view, sqe, kPageSize, false, limits).status,
            sn::kInvalidField | kDnr);
  sqe[sn::kSqeFlags] = 3 << sn::kPsdtShift;  // reserved
  EXPECT_EQ(map_command_data(view, sqe, kPageSize, false, limits).status,
            sn::kInvalidField | kDnr);
  // FUSE bits do not disturb PSDT.
  sqe[sn::kSqeFlags] = sn::kPsdtSglMptrContiguous << sn::kPsdtShift | 0x3;
  EXPECT_EQ(map_command_data(view, sqe, kPageSize, false, limits).status, 0);
  limits.sgl_supported = false;
  EXPECT_EQ(map_command_data(view, sqe, kPageSize, false, limits).status,
            sn::kInvalidField | kDnr);
}

// ---- SGL ---------------------------------------------------------------------------------

TEST_F(DmaTest, SglDataBlockInCommand) {
  auto r = sgl_read(data_block(0x2004, 1000), 1000);
  ASSERT_EQ(r.status, 0);
  EXPECT_SEGMENTS(r, Seg(0x2004, 1000, false));
}

TEST_F(DmaTest, SglLongerThanTransfer) {
  auto r = sgl_read(data_block(0x2000, 8192), 4096);  // excess ignored
  ASSERT_EQ(r.status, 0);
  EXPECT_SEGMENTS(r, Seg(0x2000, 4096, false));
  limits.sgl_excess_length = false;
  EXPECT_EQ(sgl_read(data_block(0x2000, 8192), 4096).status, 0);  // one block: clipped
  put_segment(0x20000, {data_block(0x3000, 4096), data_block(0x5000, 16)});
  EXPECT_EQ(sgl_read(last_segment(0x20000, 2), 4096).status,
            sn::kDataSglLengthInvalid | kDnr);
}

TEST_F(DmaTest, SglTooShort) {
  EXPECT_EQ(sgl_read(data_block(0x2000, 100), 4096).status, sn::kDataSglLengthInvalid | kDnr);
  put_segment(0x20000, {data_block(0x3000, 100), data_block(0x5000, 100)});
  EXPECT_EQ(sgl_read(last_segment(0x20000, 2), 300).status, sn::kDataSglLengthInvalid | kDnr);
}

TEST_F(DmaTest, SglSegmentChain) {
  // Segment -> [A, empty, Segment] -> [B, Last Segment] -> [C]
  put_segment(0x20000, {data_block(0x3000, 1000), data_block(0x9000, 0), segment(0x21000, 2)});
  put_segment(0x21000, {data_block(0x5000, 500), last_segment(0x22000, 1)});
  put_segment(0x22000, {data_block(0x7000, 596)});
  auto r = sgl_read(segment(0x20000, 3), 2096);
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(r.map.length, 2096u);
  EXPECT_SEGMENTS(r, Seg(0x3000, 1000, false), Seg(0x5000, 500, false),
                  Seg(0x7000, 596, false));
}

TEST_F(DmaTest, SglAdjacentDataBlocksMerge) {
  put_segment(0x20000, {data_block(0x3000, 100), data_block(0x3064, 200)});
  auto r = sgl_read(last_segment(0x20000, 2), 300);
  ASSERT_EQ(r.status, 0);
  EXPECT_SEGMENTS(r, Seg(0x3000, 300, false));
}

TEST_F(DmaTest, SglSegmentEndingWithDataEndsTheList) {
  put_segment(0x20000, {data_block(0x3000, 100), data_block(0x5000, 100)});
  auto r = sgl_read(segment(0x20000, 2), 200);
  ASSERT_EQ(r.status, 0);
  EXPECT_SEGMENTS(r, Seg(0x3000, 100, false), Seg(0x5000, 100, false));
}

TEST_F(DmaTest, SglLastSegmentMayNotChain) {
  put_segment(0x20000, {data_block(0x3000, 100), segment(0x21000, 1)});
  put_segment(0x21000, {data_block(0x5000, 100)});
  EXPECT_EQ(sgl_read(last_segment(0x20000, 2), 200).status,
            sn::kInvalidSglSegmentDescriptor | kDnr);
  // Under a Segment the same list is fine.
  EXPECT_EQ(sgl_read(segment(0x20000, 2), 200).status, 0);
}

TEST_F(DmaTest, SglSegmentDescriptorOnlyLast) {
  put_segment(0x20000, {segment(0x21000, 1), data_block(0x3000, 100)});
  put_segment(0x21000, {data_block(0x5000, 100)});
  EXPECT_EQ(sgl_read(segment(0x20000, 2), 200).status, sn::kInvalidSglSegmentDescriptor | kDnr);
}

TEST_F(DmaTest, SglSegmentLengthMustBeWholeDescriptors) {
  put_segment(0x20000, {data_block(0x3000, 100)});
  EXPECT_EQ(sgl_read(sgl(0x20000, 24, sn::kSglLastSegment), 100).status,
            sn::kInvalidSglSegmentDescriptor | kDnr);
  EXPECT_EQ(sgl_read(sgl(0x20000, 0, sn::kSglSegment), 100).status,
            sn::kInvalidSglSegmentDescriptor | kDnr);
  EXPECT_EQ(sgl_read(sgl(0x20000, 16, sn::kSglLastSegment), 100).status, 0);
}

TEST_F(DmaTest, SglBitBucketOnReads) {
  put_segment(0x20000, {data_block(0x3000, 512), bit_bucket(512), data_block(0x5000, 512)});
  auto r = sgl_read(last_segment(0x20000, 3), 1536);
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(r.map.length, 1536u);
  EXPECT_SEGMENTS(r, Seg(0x3000, 512, false), Seg(0, 512, true), Seg(0x5000, 512, false));
  // Refused on writes, and when the controller does not offer bit buckets.
  EXPECT_EQ(sgl_write(last_segment(0x20000, 3), 1536).status,
            sn::kSglDescriptorTypeInvalid | kDnr);
  limits.bit_bucket_supported = false;
  EXPECT_EQ(sgl_read(last_segment(0x20000, 3), 1536).status,
            sn::kSglDescriptorTypeInvalid | kDnr);
}

TEST_F(DmaTest, SglInvalidTypes) {
  for (uint8_t type : {0x4, 0x5, 0x6, 0xe, 0xf}) {  // keyed, transport, reserved, vendor
    EXPECT_EQ(sgl_read(sgl(0x3000, 512, type), 512).status, sn::kSglDescriptorTypeInvalid | kDnr)
        << int{type};
    put_segment(0x20000, {data_block(0x3000, 256), sgl(0x5000, 256, type)});
    EXPECT_EQ(sgl_read(last_segment(0x20000, 2), 512).status,
              sn::kSglDescriptorTypeInvalid | kDnr)
        << int{type};
  }
  // Data Block with an offset subtype (fabrics only).
  EXPECT_EQ(sgl_read(sgl(0x3000, 512, sn::kSglDataBlock, 1), 512).status,
            sn::kSglDescriptorTypeInvalid | kDnr);
  EXPECT_EQ(sgl_read(sgl(0x20000, 32, sn::kSglLastSegment, 1), 512).status,
            sn::kSglDescriptorTypeInvalid | kDnr);
}

TEST_F(DmaTest, SglRunawayChainsAreBounded) {
  // A segment whose only descriptor points back to itself.
  put_segment(0x20000, {segment(0x20000, 1)});
  EXPECT_EQ(sgl_read(segment(0x20000, 1), 512).status, sn::kInvalidSglDescriptorCount | kDnr);
  // The same with a zero-length data block in each round.
  put_segment(0x21000, {data_block(0x3000, 0), segment(0x21000, 2)});
  EXPECT_EQ(sgl_read(segment(0x21000, 2), 512).status, sn::kInvalidSglDescriptorCount | kDnr);
  // A long chain within the bound is fine.
  limits.max_sgl_segments = 8;
  for (uint64_t i = 0; i < 7; ++i)
    put_segment(0x30000 + i * 0x100, {data_block(0x3000 + i * 0x1000, 10),
                                      segment(0x30000 + (i + 1) * 0x100, 2)});
  put_segment(0x30700, {data_block(0xa000, 10)});
  EXPECT_EQ(sgl_read(segment(0x30000, 2), 80).status, 0);
  limits.max_sgl_segments = 7;
  EXPECT_EQ(sgl_read(segment(0x30000, 2), 80).status, sn::kInvalidSglDescriptorCount | kDnr);
}

TEST_F(DmaTest, SglDescriptorCountIsBounded) {
  std::vector<std::array<uint8_t, 16>> empties(300, data_block(0x3000, 0));
  empties.push_back(data_block(0x3000, 64));
  put_segment(0x20000, empties);
  EXPECT_EQ(sgl_read(last_segment(0x20000, 301), 64).status, 0);  // spans two read chunks
  limits.max_sgl_descriptors = 100;
  EXPECT_EQ(sgl_read(last_segment(0x20000, 301), 64).status,
            sn::kInvalidSglDescriptorCount | kDnr);
}

TEST_F(DmaTest, SglMemoryMustBeRam) {
  EXPECT_EQ(sgl_read(data_block(kUnmapped, 512), 512).status, sn::kDataTransferError);
  EXPECT_EQ(sgl_read(data_block(kMmioBase, 512), 512).status, sn::kDataTransferError);
  EXPECT_EQ(sgl_read(last_segment(kUnmapped, 1), 512).status, sn::kDataTransferError | kDnr);
  EXPECT_EQ(sgl_read(last_segment(kMmioBase, 1), 512).status, sn::kDataTransferError | kDnr);
  put_segment(0x20000, {data_block(0x3000, 256), data_block(kRamSize - 128, 256)});
  EXPECT_EQ(sgl_read(last_segment(0x20000, 2), 512).status, sn::kDataTransferError);
}

TEST_F(DmaTest, SglAddressWrapIsALengthError) {
  EXPECT_EQ(sgl_read(data_block(~uint64_t{0} - 0xfff, 0x2000), 0x2000).status,
            sn::kDataSglLengthInvalid | kDnr);
  EXPECT_EQ(sgl_read(sgl(~uint64_t{0} - 0xf, 32, sn::kSglSegment), 512).status,
            sn::kDataSglLengthInvalid | kDnr);
}

TEST_F(DmaTest, SglNotSupported) {
  limits.sgl_supported = false;
  EXPECT_EQ(sgl_read(data_block(0x3000, 512), 512).status, sn::kInvalidField | kDnr);
}

// ---- bus mastering ------------------------------------------------------------------------

// With bus mastering off every command's data is a Data Transfer Error (no DNR), before
// the pointer is decoded: the status QEMU 7.2 gives, whatever the pointer holds.
TEST_F(DmaTest, BusMasteringOffIsDataTransferErrorWhateverThePointer) {
  std::array<uint8_t, 64> sqe{};
  sqe[sn::kSqePrp1] = 0x01;  // misaligned PRP1: PRP Offset Invalid were bus mastering on
  EXPECT_EQ(map_command_data(view, sqe, kPageSize, false, limits).status,
            sn::kPrpOffsetInvalid | kDnr);
  gate.open = false;
  EXPECT_EQ(map_command_data(view, sqe, kPageSize, false, limits).status,
            sn::kDataTransferError);
  sqe[sn::kSqePrp1] = 0x00;
  sqe[sn::kSqePrp1 + 1] = 0x10;  // a good one
  EXPECT_EQ(map_command_data(view, sqe, kPageSize, false, limits).status,
            sn::kDataTransferError);
  gate.open = true;
  auto r = map_command_data(view, sqe, kPageSize, false, limits);
  ASSERT_EQ(r.status, 0);
  // Turned off after the map was made: moving the bytes is refused too.
  gate.open = false;
  std::vector<uint8_t> data(kPageSize, 0xab);
  EXPECT_EQ(transfer_status(dma::copy_to_guest(view, r.map, data)), sn::kDataTransferError);
  EXPECT_EQ(block->host()[0x1000], 0);
}

// ---- moving bytes ------------------------------------------------------------------------

TEST_F(DmaTest, CopyRoundTripMarksDirty) {
  put_list(0x10000, {0x7000, 0x3000});
  auto r = prp(0x1f00, 0x10000, 0x100 + 2 * kPageSize);
  ASSERT_EQ(r.status, 0);
  memory::PageBitmap cleared;
  block->dirty().sync(cleared);

  std::vector<uint8_t> data(r.map.length);
  std::iota(data.begin(), data.end(), uint8_t{1});
  ASSERT_EQ(transfer_status(dma::copy_to_guest(view, r.map, data)), 0);
  EXPECT_TRUE(block->dirty().test(1));
  EXPECT_TRUE(block->dirty().test(7));
  EXPECT_TRUE(block->dirty().test(3));
  EXPECT_FALSE(block->dirty().test(2));
  EXPECT_EQ(block->host()[0x1f00], data[0]);
  EXPECT_EQ(block->host()[0x7000], data[0x100]);
  EXPECT_EQ(block->host()[0x3000], data[0x100 + kPageSize]);

  std::vector<uint8_t> back(r.map.length);
  ASSERT_EQ(transfer_status(dma::copy_from_guest(view, r.map, back)), 0);
  EXPECT_EQ(back, data);

  // A shorter buffer moves a prefix; a longer one is refused.
  std::vector<uint8_t> prefix(10, 0xee);
  ASSERT_EQ(transfer_status(dma::copy_to_guest(view, r.map, prefix)), 0);
  EXPECT_EQ(block->host()[0x1f09], 0xee);
  EXPECT_EQ(block->host()[0x1f0a], data[10]);
  std::vector<uint8_t> too_long(r.map.length + 1);
  EXPECT_EQ(transfer_status(dma::copy_to_guest(view, r.map, too_long)), sn::kInternalError | kDnr);
  EXPECT_EQ(transfer_status(dma::copy_from_guest(view, r.map, too_long)), sn::kInternalError | kDnr);
}

TEST_F(DmaTest, CopySkipsBitBuckets) {
  put_segment(0x20000, {data_block(0x3000, 4), bit_bucket(4), data_block(0x5000, 4)});
  auto r = sgl_read(last_segment(0x20000, 3), 12);
  ASSERT_EQ(r.status, 0);
  std::vector<uint8_t> data = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  ASSERT_EQ(transfer_status(dma::copy_to_guest(view, r.map, data)), 0);
  EXPECT_EQ(std::memcmp(block->host() + 0x3000, data.data(), 4), 0);
  EXPECT_EQ(std::memcmp(block->host() + 0x5000, data.data() + 8, 4), 0);
}

TEST_F(DmaTest, IovecsPointIntoRamAndSinkBitBuckets) {
  put_segment(0x20000, {data_block(0x3000, 100), bit_bucket(10000), data_block(0x9000, 50)});
  auto r = sgl_read(last_segment(0x20000, 3), 10150);
  ASSERT_EQ(r.status, 0);
  std::vector<uint8_t> sink(4096);
  std::vector<iovec> iov = {{nullptr, 1}};  // replaced, not appended to
  ASSERT_EQ(transfer_status(dma::to_iovecs(view, r.map, sink, iov)), 0);
  ASSERT_EQ(iov.size(), 5u);  // data, 3 sink pieces (4096 + 4096 + 1808), data
  EXPECT_EQ(iov[0].iov_base, block->host() + 0x3000);
  EXPECT_EQ(iov[0].iov_len, 100u);
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(iov[i].iov_base, sink.data());
  EXPECT_EQ(iov[1].iov_len + iov[2].iov_len + iov[3].iov_len, 10000u);
  EXPECT_EQ(iov[4].iov_base, block->host() + 0x9000);
  size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  EXPECT_EQ(total, r.map.length);

  // A device reading into guest RAM through the iovecs marks it afterwards.
  memory::PageBitmap cleared;
  block->dirty().sync(cleared);
  dma::mark_written(view, r.map);
  EXPECT_TRUE(block->dirty().test(3));
  EXPECT_TRUE(block->dirty().test(9));
  EXPECT_EQ(block->dirty().count(), 2u);

  // A map that no longer fits the memory (hand-made here) gives a transfer error.
  DataMap stale;
  stale.segments.push_back({kUnmapped, 16, false});
  stale.length = 16;
  EXPECT_EQ(transfer_status(dma::to_iovecs(view, stale, sink, iov)), sn::kDataTransferError);
  EXPECT_TRUE(iov.empty());
  std::vector<uint8_t> buf(16);
  EXPECT_EQ(transfer_status(dma::copy_from_guest(view, stale, buf)), sn::kDataTransferError);
  EXPECT_EQ(transfer_status(dma::copy_to_guest(view, stale, buf)), sn::kDataTransferError);
}

}  // namespace
}  // namespace ferry::nvme
