#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "memory/guest_memory.h"
#include "memory/zero_page.h"

namespace ferry::memory {
namespace {

bool naive_is_zero(const uint8_t* p) {
  for (size_t i = 0; i < kPageSize; ++i)
    if (p[i] != 0) return false;
  return true;
}

TEST(ZeroPage, AgreesWithNaiveOnEverySingleNonZeroByte) {
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(kPageSize + 1);
  // Both aligned and unaligned pages.
  for (size_t shift : {0, 1}) {
    uint8_t* page = buf.data() + shift;
    std::fill(buf.begin(), buf.end(), 0);
    ASSERT_TRUE(is_zero_page(page));
    for (size_t pos = 0; pos < kPageSize; ++pos) {
      uint8_t value = static_cast<uint8_t>(1 + rng() % 255);
      page[pos] = value;
      ASSERT_EQ(is_zero_page(page), naive_is_zero(page)) << "byte " << pos;
      ASSERT_FALSE(is_zero_page(page)) << "byte " << pos;
      page[pos] = 0;
    }
  }
}

TEST(ZeroPage, RandomPagesAgree) {
  std::mt19937 rng(11);
  std::vector<uint8_t> page(kPageSize);
  for (int i = 0; i < 200; ++i) {
    for (auto& b : page) b = (rng() % 512 == 0) ? static_cast<uint8_t>(rng()) : 0;
    EXPECT_EQ(is_zero_page(page.data()), naive_is_zero(page.data()));
  }
}

TEST(GuestMemory, CopyPageTestsZeroAndCopies) {
  alignas(8) uint8_t page[kPageSize] = {};
  uint8_t out[kPageSize];
  EXPECT_TRUE(guest_copy_page_test_zero(out, page));
  page[4095] = 9;
  EXPECT_FALSE(guest_copy_page_test_zero(out, page));
  EXPECT_EQ(out[4095], 9);
}

TEST(GuestMemory, UnalignedReadWriteFill) {
  alignas(8) uint8_t ram[64] = {};
  uint8_t src[29];
  for (size_t i = 0; i < sizeof src; ++i) src[i] = static_cast<uint8_t>(i + 1);
  guest_write(ram + 3, src, sizeof src);
  uint8_t back[29];
  guest_read(back, ram + 3, sizeof back);
  EXPECT_EQ(0, std::memcmp(back, src, sizeof src));
  EXPECT_EQ(ram[2], 0);
  EXPECT_EQ(ram[32], 0);
  guest_fill(ram + 5, 0xab, 13);
  EXPECT_EQ(ram[4], 2);  // untouched (src[1])
  EXPECT_EQ(ram[5], 0xab);
  EXPECT_EQ(ram[17], 0xab);
  EXPECT_EQ(ram[18], 16);
}

}  // namespace
}  // namespace ferry::memory
