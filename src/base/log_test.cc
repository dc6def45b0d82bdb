#include "base/log.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace ferry {
namespace {

TEST(Log, WritesOneTaggedLinePerMessage) {
  ::testing::internal::CaptureStderr();
  log(LogLevel::kError, "device {} failed: {}", "nvme0", 5);
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(out, "ferry error: device nvme0 failed: 5\n");
}

TEST(Log, MessagesAboveTheLevelAreDropped) {
  if (std::getenv("FERRY_LOG")) GTEST_SKIP() << "FERRY_LOG is set in this environment";
  EXPECT_EQ(log_level(), LogLevel::kWarn);
  ::testing::internal::CaptureStderr();
  log(LogLevel::kDebug, "noise {}", 1);
  log(LogLevel::kInfo, "noise {}", 2);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

}  // namespace
}  // namespace ferry
