#include "hw/dma/dma_view.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "hw/dma/test_memory.h"

namespace ferry::dma {
namespace {

using testing::DmaMemoryTest;
using testing::kMmioBase;
using testing::kRamSize;
using testing::kUnmapped;

using DmaViewTest = DmaMemoryTest;

TEST_F(DmaViewTest, AllowsEveryAccessWhileBusMasteringIsOn) {
  std::array<uint8_t, 4> data = {1, 2, 3, 4};
  ASSERT_TRUE(view.write(0x1000, data).ok());
  EXPECT_EQ(block->host()[0x1003], 4);
  EXPECT_TRUE(block->dirty().test(1));
  std::array<uint8_t, 4> back{};
  ASSERT_TRUE(view.read(0x1000, back).ok());
  EXPECT_EQ(back, data);
  ASSERT_TRUE(view.read_ram(0x1000, back).ok());
  EXPECT_EQ(back, data);
  EXPECT_TRUE(view.check_ram({0x1000, 4}).ok());
  memory::GuestRange range{0x1000, 4};
  std::vector<iovec> iov;
  ASSERT_TRUE(view.translate_into(std::span(&range, 1), 16, iov).ok());
  ASSERT_EQ(iov.size(), 1u);
  EXPECT_EQ(iov[0].iov_base, block->host() + 0x1000);
  // MMIO is reachable by plain reads (a device may read another's registers)...
  std::array<uint8_t, 8> reg{};
  ASSERT_TRUE(view.read(kMmioBase, reg).ok());
  EXPECT_EQ(reg[0], 0x5a);
  EXPECT_TRUE(view.enabled());
}

TEST_F(DmaViewTest, RefusesEveryAccessWhileBusMasteringIsOff) {
  block->host()[0x2000] = 0x77;
  gate.open = false;
  EXPECT_FALSE(view.enabled());
  std::array<uint8_t, 4> data = {1, 2, 3, 4};
  Status write = view.write(0x2000, data);
  EXPECT_EQ(write.code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(write.message(), "testdev: DMA at 0x2000 refused: bus mastering is disabled");
  EXPECT_EQ(block->host()[0x2000], 0x77);  // nothing stored
  EXPECT_FALSE(block->dirty().test(2));

  std::array<uint8_t, 4> out = {9, 9, 9, 9};
  EXPECT_EQ(view.read(0x2000, out).code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(out[0], 9);  // nothing read
  EXPECT_EQ(view.read_ram(0x2000, out).code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(view.check_ram({0x2000, 4}).code(), ErrorCode::kFailedPrecondition);
  memory::GuestRange range{0x2000, 4};
  std::vector<iovec> iov;
  EXPECT_EQ(view.translate_into(std::span(&range, 1), 16, iov).code(),
            ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(iov.empty());

  // Turned back on, the same accesses go through: the gate is asked every time.
  gate.open = true;
  EXPECT_TRUE(view.write(0x2000, data).ok());
  EXPECT_EQ(block->host()[0x2000], 1);
}

TEST_F(DmaViewTest, MarkingWrittenBytesIsNotGated) {
  // Bytes a backend stored through iovecs handed out while bus mastering was on must
  // still reach the dirty bitmap after the guest turned it off.
  gate.open = false;
  EXPECT_TRUE(view.mark_written({0x3000, 16}).ok());
  EXPECT_TRUE(block->dirty().test(3));
}

TEST_F(DmaViewTest, RefusesMemoryOutsideRam) {
  std::array<uint8_t, 8> buf{};
  // Unmapped: named in the error, nothing moved.
  Status unmapped = view.read(kUnmapped, buf);
  EXPECT_FALSE(unmapped.ok());
  EXPECT_NE(unmapped.code(), ErrorCode::kFailedPrecondition);
  EXPECT_FALSE(view.write(kUnmapped, buf).ok());
  // Straddling the end of RAM.
  EXPECT_FALSE(view.write(kRamSize - 4, buf).ok());
  Status past_end = view.check_ram({kRamSize - 4, 8});
  EXPECT_EQ(past_end.code(), ErrorCode::kOutOfRange);
  EXPECT_EQ(past_end.message(),
            "testdev: DMA range [0x3ffffc, +0x8) is not guest RAM");
  // MMIO is not RAM: no descriptor fetch from registers, no iovecs into them.
  EXPECT_EQ(view.read_ram(kMmioBase, buf).code(), ErrorCode::kOutOfRange);
  EXPECT_FALSE(view.check_ram({kMmioBase, 8}).ok());
  memory::GuestRange range{kMmioBase, 8};
  std::vector<iovec> iov;
  EXPECT_FALSE(view.translate_into(std::span(&range, 1), 16, iov).ok());
  // A range wrapping past 2^64.
  EXPECT_FALSE(view.check_ram({~uint64_t{0} - 3, 8}).ok());
}

TEST(DmaViewDetached, RefusesEverythingNamingWhy) {
  DmaView view;
  EXPECT_FALSE(view.attached());
  EXPECT_FALSE(view.enabled());
  std::array<uint8_t, 4> buf{};
  Status st = view.read(0x1000, buf);
  EXPECT_EQ(st.code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            "device: DMA at 0x1000 refused: the device has no guest memory attached");
  EXPECT_FALSE(view.write(0x1000, buf).ok());
  EXPECT_FALSE(view.mark_written({0x1000, 4}).ok());
}

}  // namespace
}  // namespace ferry::dma
