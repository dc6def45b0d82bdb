#include "vm/run_state.h"

#include <gtest/gtest.h>

namespace ferry::vm {
namespace {

TEST(RunState, NamesRoundTrip) {
  for (auto s : {RunState::kPrelaunch, RunState::kRunning, RunState::kPaused, RunState::kInMigrate,
                 RunState::kPostMigrate, RunState::kIoError, RunState::kShutdown}) {
    EXPECT_EQ(run_state_from_name(run_state_name(s)), s);
  }
  EXPECT_EQ(run_state_name(RunState::kIoError), "io-error");
  EXPECT_FALSE(run_state_from_name("flying").has_value());
}

TEST(RunState, TransitionsFollowTheTable) {
  EXPECT_TRUE(check_transition(RunState::kPrelaunch, RunState::kRunning).ok());
  EXPECT_TRUE(check_transition(RunState::kRunning, RunState::kPaused).ok());
  EXPECT_TRUE(check_transition(RunState::kInMigrate, RunState::kRunning).ok());
  EXPECT_TRUE(check_transition(RunState::kRunning, RunState::kShutdown).ok());
  Status bad = check_transition(RunState::kInMigrate, RunState::kPostMigrate);
  EXPECT_EQ(bad.message(), "invalid runstate transition: 'inmigrate' -> 'postmigrate'");
  EXPECT_FALSE(check_transition(RunState::kRunning, RunState::kInMigrate).ok());
}

}  // namespace
}  // namespace ferry::vm
