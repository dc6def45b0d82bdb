#include "base/status.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

TEST(Status, OkHasNoMessageOrPath) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.to_string(), "OK");
  EXPECT_EQ(s.code(), ErrorCode::kOk);
}

TEST(Status, PathIsBuiltOutermostFirstWhileUnwinding) {
  Status s = Error(ErrorCode::kOutOfRange, "expected <= {}, found {}", 4096, 65535);
  s.prepend_path("size").prepend_path("[3]").prepend_path("sq").prepend_path("nvme");
  EXPECT_EQ(s.path(), "nvme/sq[3]/size");
  EXPECT_EQ(s.to_string(), "nvme/sq[3]/size: expected <= 4096, found 65535");
  EXPECT_EQ(s.code(), ErrorCode::kOutOfRange);
}

TEST(Status, CopyIsDeep) {
  Status a = Error(ErrorCode::kCorrupt, "bad");
  Status b = a;
  b.prepend_path("x");
  EXPECT_EQ(a.to_string(), "bad");
  EXPECT_EQ(b.to_string(), "x: bad");
}

TEST(Status, PrependMessageKeepsPath) {
  Status s = Error(ErrorCode::kCorrupt, "bad marker");
  s.prepend_path("q");
  s.prepend_message("section 3");
  EXPECT_EQ(s.to_string(), "q: section 3: bad marker");
}

Status fails_at_second(int n) {
  FERRY_RETURN_IF_ERROR(Status());
  if (n == 2) return Error(ErrorCode::kInvalidArgument, "two");
  return Status();
}

TEST(Status, ReturnIfErrorPropagates) {
  EXPECT_TRUE(fails_at_second(1).ok());
  EXPECT_EQ(fails_at_second(2).message(), "two");
}

TEST(Result, HoldsValueOrError) {
  Result<int> good = 5;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 5);
  Result<int> bad = Error(ErrorCode::kIo, "nope");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "nope");
}

}  // namespace
}  // namespace ferry
