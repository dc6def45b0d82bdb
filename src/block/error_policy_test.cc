#include "block/error_policy.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace ferry::block {
namespace {

TEST(ErrorPolicy, EachPolicyPicksQemusActionForEioAndEnospc) {
  EXPECT_EQ(decide_error_action(ErrorPolicy::kReport, EIO), ErrorAction::kReport);
  EXPECT_EQ(decide_error_action(ErrorPolicy::kReport, ENOSPC), ErrorAction::kReport);
  EXPECT_EQ(decide_error_action(ErrorPolicy::kIgnore, EIO), ErrorAction::kIgnore);
  EXPECT_EQ(decide_error_action(ErrorPolicy::kIgnore, ENOSPC), ErrorAction::kIgnore);
  EXPECT_EQ(decide_error_action(ErrorPolicy::kStop, EIO), ErrorAction::kStop);
  EXPECT_EQ(decide_error_action(ErrorPolicy::kStop, ENOSPC), ErrorAction::kStop);
  EXPECT_EQ(decide_error_action(ErrorPolicy::kEnospc, EIO), ErrorAction::kReport);
  EXPECT_EQ(decide_error_action(ErrorPolicy::kEnospc, ENOSPC), ErrorAction::kStop);
}

TEST(ErrorPolicy, NamesRoundTrip) {
  for (ErrorPolicy p : {ErrorPolicy::kReport, ErrorPolicy::kIgnore, ErrorPolicy::kStop,
                        ErrorPolicy::kEnospc})
    EXPECT_EQ(error_policy_from_name(error_policy_name(p)), p);
  EXPECT_EQ(error_policy_from_name("retry"), std::nullopt);
  EXPECT_EQ(io_status_name(IoStatus::kNoSpace), "nospace");
  EXPECT_EQ(error_action_name(ErrorAction::kStop), "stop");
}

}  // namespace
}  // namespace ferry::block
