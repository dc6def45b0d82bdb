#include "vm/run_state.h"

#include <array>

namespace ferry::vm {

namespace {
constexpr std::array<std::pair<RunState, std::string_view>, 7> kNames = {{
    {RunState::kPrelaunch, "prelaunch"},
    {RunState::kRunning, "running"},
    {RunState::kPaused, "paused"},
    {RunState::kInMigrate, "inmigrate"},
    {RunState::kPostMigrate, "postmigrate"},
    {RunState::kIoError, "io-error"},
    {RunState::kShutdown, "shutdown"},
}};

// Allowed transitions, as in QEMU's table restricted to the states this machine has.
bool allowed(RunState from, RunState to) {
  using S = RunState;
  if (to == S::kShutdown) return from != S::kShutdown;
  switch (from) {
    case S::kPrelaunch: return to == S::kRunning || to == S::kPaused || to == S::kInMigrate;
    case S::kRunning: return to == S::kPaused || to == S::kIoError || to == S::kPostMigrate;
    case S::kPaused: return to == S::kRunning || to == S::kPostMigrate;
    case S::kInMigrate: return to == S::kRunning || to == S::kPaused || to == S::kIoError;
    case S::kPostMigrate: return to == S::kRunning || to == S::kPaused;
    case S::kIoError: return to == S::kRunning || to == S::kPaused || to == S::kPostMigrate;
    case S::kShutdown: return to == S::kRunning || to == S::kPaused;  // system_reset
  }
  return false;
}
}  // namespace

std::string_view run_state_name(RunState state) {
  for (const auto& [s, name] : kNames)
    if (s == state) return name;
  return "unknown";
}

std::optional<RunState> run_state_from_name(std::string_view name) {
  for (const auto& [s, n] : kNames)
    if (n == name) return s;
  return std::nullopt;
}

Status check_transition(RunState from, RunState to) {
  if (from == to || allowed(from, to)) return {};
  return Error(ErrorCode::kFailedPrecondition, "invalid runstate transition: '{}' -> '{}'",
               run_state_name(from), run_state_name(to));
}

}  // namespace ferry::vm
