#include "base/base64.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

TEST(Base64, MatchesTheRfcVectors) {
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    std::vector<uint8_t> bytes(plain.begin(), plain.end());
    EXPECT_EQ(base64_encode(bytes), encoded);
    auto decoded = base64_decode(encoded);
    ASSERT_TRUE(decoded.ok()) << decoded.status().to_string();
    EXPECT_EQ(*decoded, bytes);
  }
}

TEST(Base64, RoundTripsEveryByteAndLength) {
  std::vector<uint8_t> bytes;
  for (int i = 0; i < 300; ++i) {
    auto decoded = base64_decode(base64_encode(bytes));
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, bytes);
    bytes.push_back(static_cast<uint8_t>(i * 37 + 200));
  }
}

TEST(Base64, RefusesGarbageNamingTheOffset) {
  for (std::string_view bad : {"Zm9", "Zm9*", "Z===", "Zg==Zm9v", "Zm=9", "Zm9vYg===", "Zm9v Yg=="})
    EXPECT_FALSE(base64_decode(bad).ok()) << bad;
  auto bang = base64_decode("!abc");
  ASSERT_FALSE(bang.ok());
  EXPECT_EQ(bang.status().message(), "invalid base64 character '!' at offset 0");
}

}  // namespace
}  // namespace ferry
