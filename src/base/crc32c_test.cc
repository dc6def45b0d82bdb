#include "base/crc32c.h"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

namespace ferry {
namespace {

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c(bytes_of("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c(bytes_of("")), 0u);
  // RFC 3720 B.4: 32 bytes of zeros and of 0xff.
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xff);
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
}

TEST(Crc32c, ContinuesAcrossPieces) {
  std::string_view all = "The quick brown fox jumps over the lazy dog";
  uint32_t whole = crc32c(bytes_of(all));
  uint32_t part = crc32c(bytes_of(all.substr(0, 10)));
  part = crc32c(bytes_of(all.substr(10)), part);
  EXPECT_EQ(part, whole);
}

}  // namespace
}  // namespace ferry
