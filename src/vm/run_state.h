// The VM's run state, with QEMU's names and the transitions this machine allows.
#pragma once

#include <optional>
#include <string_view>

#include "base/status.h"

namespace ferry::vm {

enum class RunState {
  kPrelaunch,    // -S: devices realized, nothing runs until `cont`
  kRunning,
  kPaused,       // `stop`
  kInMigrate,    // destination waiting for or loading an incoming stream
  kPostMigrate,  // source after a completed migration
  kIoError,      // stopped by a block error policy
  kShutdown,
};

std::string_view run_state_name(RunState state);
std::optional<RunState> run_state_from_name(std::string_view name);

// Whether guest code and device processing run in `state`.
constexpr bool is_running(RunState state) { return state == RunState::kRunning; }

// OK when `from -> to` is a transition the machine allows; otherwise an error naming both.
Status check_transition(RunState from, RunState to);

}  // namespace ferry::vm
